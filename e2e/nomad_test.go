package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/internal/dockertest"
	"github.com/qufop/qufop/internal/testutil"
	"github.com/qufop/qufop/ufop"
)

// agent is a real `nomad agent -dev` or `consul agent -dev` on loopback.
type agent struct {
	cmd  *exec.Cmd
	addr string
}

// startAgent runs bin with args, waiting until GET addr+ready answers 200.
func startAgent(t *testing.T, bin string, ready string, args ...string) *agent {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), filepath.Base(bin)+".log"))
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", bin, tail(string(b), 40))
		}
	})
	require.Eventually(t, func() bool {
		r, err := http.Get(ready)
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	}, 90*time.Second, 250*time.Millisecond, "%s did not come up", bin)
	return &agent{cmd: cmd}
}

// TestRealNomadAndConsul runs the platform against real Nomad and Consul dev
// agents (`make test-nomad`). Nomad v1.6.5 and Consul v1.16.3 cannot be
// installed from a package here: the test is skipped, saying so, unless both
// binaries are on PATH.
func TestRealNomadAndConsul(t *testing.T) {
	nomadBin, err1 := exec.LookPath("nomad")
	consulBin, err2 := exec.LookPath("consul")
	if err1 != nil || err2 != nil {
		t.Skip("skipping: needs `nomad` (v1.6.5) and `consul` (v1.16.3) on PATH; they cannot be installed from a package here")
	}
	p := startPlatformDeps(t)
	startAgent(t, consulBin, "http://127.0.0.1:8500/v1/status/leader",
		"agent", "-dev", "-client", "127.0.0.1", "-bind", "127.0.0.1")
	startAgent(t, nomadBin, "http://127.0.0.1:4646/v1/status/leader",
		"agent", "-dev", "-bind", "127.0.0.1", "-consul-address", "127.0.0.1:8500",
		"-data-dir", t.TempDir())

	builderAddr, gatewayAddr := freePort(t), freePort(t)
	run := func(args ...string) {
		cmd := exec.Command(p.bin, args...)
		logf, err := os.Create(filepath.Join(p.work, args[0]+".log"))
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = logf, logf
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { cmd.Process.Signal(syscall.SIGINT); cmd.Wait() })
	}
	run("builder", "--listen", builderAddr, "--data", filepath.Join(p.work, "builder"),
		"--nomad-addr", "http://127.0.0.1:4646", "--consul-addr", "127.0.0.1:8500",
		"--access-key", ak, "--secret-key", sk)
	bucket := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bucket, "note.txt"), []byte("hello nomad"), 0o644))
	run("gateway", "--listen", gatewayAddr, "--bucket", "files="+bucket, "--consul-addr", "127.0.0.1:8500")
	p.base = "http://" + gatewayAddr
	p.env = append(os.Environ(), "QUFOP_ADDR=http://"+builderAddr, "QUFOP_ACCESS_KEY="+ak, "QUFOP_SECRET_KEY="+sk,
		"QUFOP_CONFIG="+filepath.Join(p.work, "cli.json"))
	require.Eventually(t, func() bool { _, err := p.qufop("list"); return err == nil }, 30*time.Second, 200*time.Millisecond)

	demoBin := filepath.Join(p.work, "ufop-demo")
	goBuild(t, demoBin, "./examples/ufop-demo", false)
	name := fmt.Sprintf("nomad-e2e-%d", time.Now().UnixNano()%1e6)
	p.must("reg", name)
	defer p.qufop("unreg", name)
	p.must("build", name, "-f", demoSource(t, demoBin, "handler", ""))
	p.must("chver", name, "-c", "1")
	start := time.Now()
	p.must("resize", name, "-n", "3", "--timeout", "5m")
	require.Eventually(t, func() bool {
		code, _, _ := p.get("/files/note.txt?" + name + "/md5")
		return code == 200
	}, 60*time.Second, 200*time.Millisecond)
	t.Logf("resize -n 3 to routed by the gateway: %s", time.Since(start).Round(100*time.Millisecond))
	checkNomadLogs(t, p, name)

	p.must("build", name, "-f", demoSource(t, demoBin, "handler", `BUILD: "2"`))
	p.must("chver", name, "-c", "2")
	ctx, cancel := context.WithCancel(context.Background())
	var failed, total atomic.Int32
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for ctx.Err() == nil {
			total.Add(1)
			r, err := http.Get(p.base + "/files/note.txt?" + name + "/md5")
			if err != nil {
				failed.Add(1)
				continue
			}
			r.Body.Close()
			if r.StatusCode != 200 {
				failed.Add(1)
			}
		}
	}()
	p.must("upgrade", name, "--timeout", "5m")
	cancel()
	<-loadDone
	t.Logf("upgrade under load: %d requests, %d failed", total.Load(), failed.Load())
	require.Zero(t, failed.Load())

	checkUnplaceable(t, p, name, demoBin)
	// The roll-back of the failed upgrade is a deployment of its own, and
	// Nomad refuses to scale until it is over (min_healthy_time).
	require.Eventually(t, func() bool { _, err := p.qufop("resize", name, "-n", "0"); return err == nil },
		90*time.Second, 2*time.Second, "resize -n 0 after the failed upgrade")
}

// checkNomadLogs reads the logs of an instance through Nomad (`qufop
// logs`), then follows them until an interrupt: Consul's health checks
// add a line every few seconds.
func checkNomadLogs(t *testing.T, p *platform, name string) {
	out := p.must("logs", name, "-index", "1")
	require.Contains(t, out, "ufop-demo listening on", "logs of instance 1")

	var buf testutil.SyncBuffer
	cmd := exec.Command(p.bin, "logs", name, "-index", "1", "-f")
	cmd.Env, cmd.Stdout, cmd.Stderr = p.env, &buf, &buf
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { return strings.Contains(buf.String(), "listening on") }, 30*time.Second, 100*time.Millisecond)
	history := strings.Count(buf.String(), "GET /health")
	require.Eventually(t, func() bool { return strings.Count(buf.String(), "GET /health") > history },
		60*time.Second, 200*time.Millisecond, "no new line while following:\n%s", buf.String())
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	require.NoError(t, cmd.Wait(), "logs -f ends with Ctrl-C:\n%s", buf.String())
}

// checkUnplaceable upgrades to a version whose flavor asks for more CPU
// than the node has: the upgrade fails at once with Nomad's reason, and
// the running version keeps serving.
func checkUnplaceable(t *testing.T, p *platform, name, demoBin string) {
	cpus := nodeCPUMHz(t)/1000 + 1
	if cpus > ufop.MaxFlavorCPUs {
		t.Logf("skipping the placement failure: the node has more than %d cores", ufop.MaxFlavorCPUs)
		return
	}
	src := demoSource(t, demoBin, "handler", `BUILD: "3"`)
	spec, err := os.ReadFile(filepath.Join(src, "ufop.yaml"))
	require.NoError(t, err)
	flavor := fmt.Sprintf("flavor: C%dM1", cpus)
	require.NoError(t, os.WriteFile(filepath.Join(src, "ufop.yaml"), []byte(strings.Replace(string(spec), "flavor: C1M1", flavor, 1)), 0o644))
	p.must("build", name, "-f", src)
	p.must("chver", name, "-c", "3")
	start := time.Now()
	out := p.fails("upgrade", name, "--timeout", "5m")
	t.Logf("upgrade to %s failed after %s: %s", flavor, time.Since(start).Round(100*time.Millisecond), out)
	require.Less(t, time.Since(start), time.Minute, "the placement failure took its time")
	require.Contains(t, out, fmt.Sprintf("no node could place 1 instance of ufop-%s v3: cpu exhausted on 1 node", name))
	require.Contains(t, out, "version 2 keeps serving")
	st := p.state(name)
	require.Equal(t, 2, st.Deployed)
	for _, in := range st.Instances {
		require.Equal(t, 2, in.Version, "instances after the failed upgrade: %+v", st.Instances)
	}
	code, _, _ := p.get("/files/note.txt?" + name + "/md5")
	require.Equal(t, 200, code)
}

// nodeCPUMHz is the CPU the dev agent's node offers to allocations.
func nodeCPUMHz(t *testing.T) int {
	var nodes []struct{ ID string }
	getJSON(t, "http://127.0.0.1:4646/v1/nodes", &nodes)
	require.NotEmpty(t, nodes)
	var node struct {
		NodeResources struct{ Cpu struct{ CpuShares int } }
	}
	getJSON(t, "http://127.0.0.1:4646/v1/node/"+nodes[0].ID, &node)
	require.Positive(t, node.NodeResources.Cpu.CpuShares)
	return node.NodeResources.Cpu.CpuShares
}

func getJSON(t *testing.T, url string, v any) {
	r, err := http.Get(url)
	require.NoError(t, err)
	defer r.Body.Close()
	require.Equal(t, 200, r.StatusCode, url)
	require.NoError(t, json.NewDecoder(r.Body).Decode(v), url)
}

// startPlatformDeps builds the qufop binary and checks Docker and the
// registry, without starting `qufop dev`.
func startPlatformDeps(t *testing.T) *platform {
	c := dockertest.Client(t)
	dockertest.Busybox(t, c)
	dockertest.Registry(t)
	work := t.TempDir()
	bin := filepath.Join(work, "qufop")
	goBuild(t, bin, "./cmd/qufop", true)
	return &platform{t: t, bin: bin, work: work}
}

// TestJobspecsValidate: every platform jobspec passes `nomad job validate`
// with its default variables (part of `make test-nomad`; skipped without
// `nomad` on PATH). Without an agent Nomad checks everything but the
// driver configuration.
func TestJobspecsValidate(t *testing.T) {
	nomadBin, err := exec.LookPath("nomad")
	if err != nil {
		t.Skip("skipping: needs `nomad` (v1.6.5) on PATH; it cannot be installed from a package here")
	}
	files, err := filepath.Glob("../jobspecs/*.nomad.hcl")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		cmd := exec.Command(nomadBin, "job", "validate", f)
		cmd.Env = append(os.Environ(), "NOMAD_ADDR=http://127.0.0.1:1") // no agent: offline checks only
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "nomad job validate %s:\n%s", f, out)
		require.Contains(t, string(out), "Job validation successful", f)
	}
}
