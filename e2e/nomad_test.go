package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/internal/dockertest"
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
	p.must("resize", name, "-n", "0")
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
