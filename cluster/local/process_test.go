package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/qufop/qufop/internal/testutil"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qufop/qufop/cluster"
)

var (
	serverOnce sync.Once
	serverBin  string
	serverErr  error
)

// testServer builds testdata/server once per test binary.
func testServer(t *testing.T) string {
	t.Helper()
	serverOnce.Do(func() {
		dir, err := os.MkdirTemp("", "qufop-local-test")
		if err != nil {
			serverErr = err
			return
		}
		serverBin = filepath.Join(dir, "server")
		out, err := exec.Command("go", "build", "-o", serverBin, "./testdata/server").CombinedOutput()
		if err != nil {
			serverErr = errors.New(string(out))
		}
	})
	if serverErr != nil {
		t.Fatalf("go build testdata/server: %v", serverErr)
	}
	return serverBin
}

// patience bounds the waits of the tests for things that do happen: it is
// reached only when a test fails, so it is long enough for a loaded
// machine. Tests never wait for something not to happen.
const patience = 2 * time.Minute

// testOptions: quick probes and restarts; a deployment that should succeed
// has all the patience it needs (one that should fail is given a short
// context).
func testOptions() Options {
	return Options{
		HealthInterval: 100 * time.Millisecond,
		HealthTimeout:  time.Second,
		DeployTimeout:  patience,
		RestartBackoff: 100 * time.Millisecond,
		KillTimeout:    2 * time.Second,
	}
}

// failingDeploy deploys w, which must not become healthy, for at most d.
func failingDeploy(o cluster.Orchestrator, w cluster.Workload, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return o.Deploy(ctx, w)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func instances(t *testing.T, o cluster.Orchestrator, name string) []cluster.Instance {
	t.Helper()
	ins, err := o.Instances(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ins
}

func httpGet(addr, path string) (string, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	r, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	return string(b), err
}

func versions(eps []cluster.Endpoint) map[int]int {
	out := map[int]int{}
	for _, e := range eps {
		out[e.Version]++
	}
	return out
}

// processWorkload runs testdata/server. Its kill timeout is long: a stop
// that takes less was graceful.
func processWorkload(t *testing.T, bin string, version, count int, env map[string]string) cluster.Workload {
	return cluster.Workload{
		Name: "demo", Owner: "admin", Version: version, Dir: t.TempDir(),
		Run: "exec " + bin, Env: env, HealthPath: "/health", Count: count,
		KillTimeout: time.Minute,
	}
}

func TestProcessLifecycle(t *testing.T) {
	bin := testServer(t)
	ctx := context.Background()
	p := NewProcess(ProcessConfig{Options: testOptions(), LogDir: t.TempDir()})
	defer p.Close()
	if p.Mode() != "process" || p.HostIP() != "127.0.0.1" || !strings.Contains(p.Warning(), "isolates nothing") {
		t.Fatalf("mode %q host %q warning %q", p.Mode(), p.HostIP(), p.Warning())
	}
	if err := p.Scale(ctx, "demo", 1, "test", nil); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("scale before deploy: %v", err)
	}

	// Deploy 2: both healthy, both in the catalog.
	if err := p.Deploy(ctx, processWorkload(t, bin, 1, 2, map[string]string{"VERSION": "1"})); err != nil {
		t.Fatal(err)
	}
	eps := p.Healthy("demo")
	if len(eps) != 2 || versions(eps)[1] != 2 {
		t.Fatalf("healthy: %+v", eps)
	}
	for _, e := range eps {
		if !strings.HasPrefix(e.Addr, "127.0.0.1:") {
			t.Fatalf("addr %s", e.Addr)
		}
		if v, err := httpGet(e.Addr, "/version"); err != nil || v != "1" {
			t.Fatalf("GET /version: %q %v", v, err)
		}
	}
	ins := instances(t, p, "demo")
	if len(ins) != 2 || ins[0].Index != 0 || ins[1].Index != 1 || ins[0].State != StateRunning || !ins[0].Healthy {
		t.Fatalf("instances: %+v", ins)
	}
	for _, in := range ins {
		if in.AddrKind != "host" || in.PublishedAddr != "" || !strings.HasPrefix(in.Addr, "127.0.0.1:") {
			t.Fatalf("process instance addresses: %+v", in)
		}
	}

	// Crash one: restarted, healthy again.
	_, _ = httpGet(ins[1].Addr, "/crash")
	waitFor(t, patience, "instance 1 restarted and healthy", func() bool {
		in := instances(t, p, "demo")[1]
		return in.Restarts == 1 && in.Healthy && len(p.Healthy("demo")) == 2
	})
	if in := instances(t, p, "demo")[1]; !strings.Contains(in.Message, "exited with code 3") {
		t.Fatalf("message after crash: %q", in.Message)
	}

	// Scale to 1: the highest index goes, out of the catalog at once,
	// stopped in the background.
	if err := p.Scale(ctx, "demo", 1, "test", nil); err != nil {
		t.Fatal(err)
	}
	if eps := p.Healthy("demo"); len(eps) != 1 || eps[0].ID != ins[0].ID {
		t.Fatalf("catalog after scale: %+v", eps)
	}
	waitFor(t, patience, "instance 1 gone", func() bool { return len(instances(t, p, "demo")) == 1 })
	if ins := instances(t, p, "demo"); len(ins) != 1 || ins[0].Index != 0 || len(p.Healthy("demo")) != 1 {
		t.Fatalf("after scale: %+v", ins)
	}

	// Deploy v2 while v1 serves: v1 stays in the catalog until v2 is
	// healthy, which it is once the test makes the ready file.
	ready := filepath.Join(t.TempDir(), "ready")
	done := make(chan error, 1)
	go func() {
		done <- p.Deploy(ctx, processWorkload(t, bin, 2, 1, map[string]string{"VERSION": "2", "HEALTH_FAIL": "1", "READY_FILE": ready}))
	}()
	waitFor(t, patience, "the v2 instance", func() bool { return len(instances(t, p, "demo")) == 2 })
	if err := p.Scale(ctx, "demo", 3, "test", nil); !errors.Is(err, cluster.ErrSkipped) {
		t.Fatalf("scale during a deployment: %v, want ErrSkipped", err)
	}
	waitFor(t, patience, "v2 probed and not healthy yet", func() bool {
		return strings.Contains(instances(t, p, "demo")[1].Message, "not healthy yet")
	})
	if v := versions(p.Healthy("demo")); v[1] != 1 || v[2] != 0 {
		t.Fatalf("while v2 is not ready: %v", v)
	}
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sawBoth := false
	for deploying := true; deploying; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			deploying = false
		case <-time.After(20 * time.Millisecond):
			v := versions(p.Healthy("demo"))
			if v[1] == 0 && v[2] == 0 {
				t.Fatal("no healthy instance while deploying v2")
			}
			if v[1] == 0 {
				// v1 may leave only once v2 is healthy
				if v[2] == 0 {
					t.Fatal("v1 left the catalog before v2 was healthy")
				}
			}
			if v[1] > 0 && v[2] > 0 {
				sawBoth = true
			}
		}
	}
	t.Logf("saw v1 and v2 serving together: %v", sawBoth)
	if v := versions(p.Healthy("demo")); v[1] != 0 || v[2] != 1 {
		t.Fatalf("after deploy v2: %v", v)
	}
	if ins := instances(t, p, "demo"); len(ins) != 1 || ins[0].Version != 2 {
		t.Fatalf("after deploy v2: %+v", ins)
	}

	// A version whose health never passes: Deploy fails, v2 keeps serving.
	bad := processWorkload(t, bin, 3, 1, map[string]string{"VERSION": "3", "HEALTH_FAIL": "1"})
	start := time.Now()
	err := failingDeploy(p, bad, 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "v2 keeps serving") {
		t.Fatalf("deploy of an unhealthy version: %v", err)
	}
	t.Logf("failed deploy after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if ins := instances(t, p, "demo"); len(ins) != 1 || ins[0].Version != 2 || !ins[0].Healthy {
		t.Fatalf("after failed deploy: %+v", ins)
	}
	if v := versions(p.Healthy("demo")); v[2] != 1 || len(v) != 1 {
		t.Fatalf("catalog after failed deploy: %v", v)
	}

	// Logs, then a graceful stop seen by a following reader.
	var logs bytes.Buffer
	if err := p.Logs(ctx, "demo", 0, false, &logs); err != nil || !strings.Contains(logs.String(), "listening on") {
		t.Fatalf("logs: %q %v", logs.String(), err)
	}
	if err := p.Logs(ctx, "demo", 7, false, io.Discard); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("logs of a missing instance: %v", err)
	}
	fctx, cancel := context.WithCancel(ctx)
	var follow testutil.SyncBuffer
	fdone := make(chan error, 1)
	go func() { fdone <- p.Logs(fctx, "demo", 0, true, &follow) }()
	start = time.Now()
	if err := p.Stop(ctx, "demo", false); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= time.Minute { // processWorkload's kill timeout
		t.Fatalf("graceful stop took %s: the instance was killed", d)
	}
	waitFor(t, patience, "SIGTERM in the logs", func() bool { return strings.Contains(follow.String(), "got SIGTERM") })
	cancel()
	if err := <-fdone; err != nil {
		t.Fatal(err)
	}
	if ins := instances(t, p, "demo"); len(ins) != 0 || len(p.Healthy("demo")) != 0 {
		t.Fatalf("after stop: %+v", ins)
	}
	// Stopped, not purged: Scale brings the deployed version back.
	if err := p.Scale(ctx, "demo", 1, "test", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, patience, "scaled back up", func() bool { return versions(p.Healthy("demo"))[2] == 1 })
	if err := p.Stop(ctx, "demo", true); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Instances(ctx, "demo"); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("instances after purge: %v", err)
	}
}

func TestProcessKillTimeout(t *testing.T) {
	bin := testServer(t)
	ctx := context.Background()
	p := NewProcess(ProcessConfig{Options: testOptions(), LogDir: t.TempDir()})
	defer p.Close()
	w := processWorkload(t, bin, 1, 1, map[string]string{"IGNORE_TERM": "1"})
	w.Name = "stubborn"
	w.KillTimeout = time.Second
	if err := p.Deploy(ctx, w); err != nil {
		t.Fatal(err)
	}
	ins := instances(t, p, "stubborn")
	var pid int
	if _, err := fmtSscan(ins[0].ID, &pid); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Stop(ctx, "stubborn", true); err != nil {
		t.Fatal(err)
	}
	// At least the kill timeout; the upper bound only catches a stop that
	// does not kill at all.
	d := time.Since(start)
	if d < time.Second || d > 30*time.Second {
		t.Fatalf("stop of a SIGTERM-ignoring instance took %s, want about the kill timeout (1s)", d)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d still there: %v", pid, err)
	}
}

func TestProcessUnhealthyRestart(t *testing.T) {
	bin := testServer(t)
	ctx := context.Background()
	opts := testOptions()
	opts.UnhealthyGrace = 500 * time.Millisecond
	p := NewProcess(ProcessConfig{Options: opts, LogDir: t.TempDir()})
	defer p.Close()
	w := processWorkload(t, bin, 1, 1, nil)
	w.Name = "sickly"
	if err := p.Deploy(ctx, w); err != nil {
		t.Fatal(err)
	}
	defer p.Stop(ctx, "sickly", true)
	_, _ = httpGet(instances(t, p, "sickly")[0].Addr, "/sick")
	// Restarted because it was unhealthy for longer than the grace (so out
	// of the catalog meanwhile), and healthy again.
	waitFor(t, patience, "restarted and healthy", func() bool {
		in := instances(t, p, "sickly")[0]
		return in.Restarts == 1 && in.Healthy && len(p.Healthy("sickly")) == 1 &&
			strings.Contains(in.Message, "last restart: unhealthy for more than")
	})
}

func TestProcessFirstDeployFails(t *testing.T) {
	bin := testServer(t)
	ctx := context.Background()
	opts := testOptions()
	opts.DeployTimeout = time.Second
	p := NewProcess(ProcessConfig{Options: opts, LogDir: t.TempDir()})
	defer p.Close()
	w := processWorkload(t, bin, 1, 1, map[string]string{"HEALTH_FAIL": "1"})
	w.Name = "never"
	if err := p.Deploy(ctx, w); err == nil || !strings.Contains(err.Error(), "0 of 1 instances healthy") {
		t.Fatalf("deploy: %v", err)
	}
	if ins := instances(t, p, "never"); len(ins) != 1 || ins[0].Healthy {
		t.Fatalf("instances: %+v", ins)
	}
	if err := p.Stop(ctx, "never", true); err != nil {
		t.Fatal(err)
	}
}

func fmtSscan(s string, pid *int) (int, error) { return fmt.Sscan(s, pid) }

func TestMain(m *testing.M) {
	code := m.Run()
	if serverBin != "" {
		os.RemoveAll(filepath.Dir(serverBin))
	}
	os.Exit(code)
}
