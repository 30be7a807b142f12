package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
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

// TestRealNomadAndConsul runs the platform against real Nomad and Consul dev
// agents (`make test-nomad`): `qufop builder` and `qufop gateway` on the
// host, UFOPs as Nomad jobs. A Qiniu v1 program (examples/ufop-v1-fetch, no
// health path: a TCP check) is deployed and called, then the handler demo
// goes through resize, logs, an upgrade under load and an upgrade that
// cannot be placed. Nomad v1.6.5 and Consul v1.16.3 cannot be installed
// from a package here: the test is skipped, saying so, unless both binaries
// are on PATH.
func TestRealNomadAndConsul(t *testing.T) {
	requireNomadConsul(t)
	p := startPlatformDeps(t)
	suffix := time.Now().UnixNano() % 1e6
	name := fmt.Sprintf("nomad-e2e-%d", suffix)
	v1 := fmt.Sprintf("nomad-v1-%d", suffix)
	// Registered before the agents start, so that it runs once their
	// containers are gone.
	removeUFOPsAtEnd(t, dockertest.Client(t), dockertest.RegistryAddr, name, v1)
	startNomadEnv(t)

	// The gateway listens on Docker's bridge: /uop programs fetch their
	// input from its advertised address, from inside their containers.
	builderAddr := freePort(t)
	gatewayAddr := net.JoinHostPort(dockerBridgeIP(t), strconv.Itoa(freeTCPPort(t)))
	run := func(args ...string) {
		cmd := exec.Command(p.bin, args...)
		cmd.Env = append(os.Environ(), "QUFOP_ACCESS_KEY="+ak, "QUFOP_SECRET_KEY="+sk) // the admin keys: never on a command line
		logf, err := os.Create(filepath.Join(p.work, args[0]+".log"))
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = logf, logf
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGINT)
			cmd.Wait()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("qufop %s log:\n%s", args[0], tail(string(b), 30))
			}
		})
	}
	run("builder", "--listen", builderAddr, "--data", filepath.Join(p.work, "builder"),
		"--nomad-addr", nomadAddr, "--consul-addr", consulAddr,
		"--base-image", "ubuntu="+dockertest.BusyboxRef) // Qiniu's "ubuntu" is busybox here
	bucket := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bucket, "note.txt"), []byte("hello nomad"), 0o644))
	jpeg, err := os.ReadFile("../testdata/images/storm-1920x1080.jpg")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(bucket, "storm.jpg"), jpeg, 0o644))
	run("gateway", "--listen", gatewayAddr, "--advertise-addr", gatewayAddr, "--bucket", "files="+bucket, "--consul-addr", consulAddr)
	p.base = "http://" + gatewayAddr
	p.env = append(os.Environ(), "QUFOP_ADDR=http://"+builderAddr, "QUFOP_ACCESS_KEY="+ak, "QUFOP_SECRET_KEY="+sk,
		"QUFOP_CONFIG="+filepath.Join(p.work, "cli.json"))
	require.Eventually(t, func() bool { _, err := p.qufop("list"); return err == nil }, 30*time.Second, 200*time.Millisecond)
	require.Eventually(t, func() bool {
		r, err := http.Get(p.base + "/health")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	}, 30*time.Second, 200*time.Millisecond, "the gateway did not come up")

	checkV1Program(t, p, v1)

	demoBin := filepath.Join(p.work, "ufop-demo")
	goBuild(t, demoBin, "./examples/ufop-demo", false)
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

// checkV1Program deploys examples/ufop-v1-fetch as its author packed it
// (`make tar`: ufop.yaml with Qiniu's three keys and the binary, a tarball)
// through the CLI, and calls it through the gateway on an object and after
// imageView2. The program has no health endpoint: its instance is healthy
// in Consul through the TCP check, and Nomad's deployment (which resize
// waits for) through that check. Its ufop.yaml says image: ubuntu, which
// the builder maps to local/busybox:1 (--base-image).
func checkV1Program(t *testing.T, p *platform, name string) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "ufop-v1-fetch")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./examples/ufop-v1-fetch")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ufop-v1-fetch: %s", out)
	spec, err := os.ReadFile("../examples/ufop-v1-fetch/ufop.yaml")
	require.NoError(t, err)
	require.Contains(t, string(spec), "image: ubuntu\n")
	tarball := filepath.Join(dir, "ufop-v1-fetch.tar")
	writeTar(t, tarball, map[string][]byte{"ufop.yaml": spec, "ufop-v1-fetch": mustRead(t, bin)})

	p.must("reg", name)
	defer p.qufop("unreg", name)
	p.must("build", name, "-f", tarball)
	p.must("chver", name, "-c", "1")
	start := time.Now()
	p.must("resize", name, "-n", "1", "--timeout", "5m")
	t.Logf("v1 program: resize -n 1 to healthy: %s", time.Since(start).Round(100*time.Millisecond))

	// In Consul: one passing instance, through the TCP check.
	var entries []struct {
		Checks []struct{ Name, Type, Status, ServiceName, Output string }
	}
	getJSON(t, "http://"+consulAddr+"/v1/health/service/ufop-"+name+"?passing", &entries)
	require.Len(t, entries, 1, "passing instances of ufop-%s", name)
	var checks []string
	for _, c := range entries[0].Checks {
		if c.ServiceName == "ufop-"+name {
			checks = append(checks, c.Name+" "+c.Type+" "+c.Status)
			t.Logf("Consul check %s (%s): %s: %s", c.Name, c.Type, c.Status, strings.TrimSpace(c.Output))
		}
	}
	require.Equal(t, []string{"tcp-alive tcp passing"}, checks)

	hello := md5.Sum([]byte("hello nomad"))
	var code int
	var body string
	require.Eventually(t, func() bool {
		code, _, body = p.get("/files/note.txt?" + name)
		return code == 200
	}, 60*time.Second, 200*time.Millisecond, "?%s: %d %s", name, &code, &body)
	require.JSONEq(t, fmt.Sprintf(`{"md5":%q,"size":11}`, hex.EncodeToString(hello[:])), body)
	code, _, body = p.get("/files/note.txt?" + name + "/sha1")
	require.Equal(t, 200, code, body)
	require.Contains(t, body, `"sha1":"`)

	// After imageView2 the program fetches the step's output: its md5 is
	// that of what imageView2 alone answers.
	code, ctype, thumb := p.get("/files/storm.jpg?imageView2/2/w/200")
	require.Equal(t, 200, code, thumb)
	require.Equal(t, "image/jpeg", ctype)
	sum := md5.Sum([]byte(thumb))
	code, _, body = p.get("/files/storm.jpg?imageView2/2/w/200|" + name)
	require.Equal(t, 200, code, body)
	require.JSONEq(t, fmt.Sprintf(`{"md5":%q,"size":%d}`, hex.EncodeToString(sum[:]), len(thumb)), body)

	p.must("resize", name, "-n", "0")
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// writeTar writes files (executable) at the root of a tarball at path.
func writeTar(t *testing.T, path string, files map[string][]byte) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: n, Mode: 0o755, Size: int64(len(files[n])), Typeflag: tar.TypeReg, ModTime: time.Now()}))
		_, err := tw.Write(files[n])
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
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
	getJSON(t, nomadAddr+"/v1/nodes", &nodes)
	require.NotEmpty(t, nodes)
	var node struct {
		NodeResources struct{ Cpu struct{ CpuShares int } }
	}
	getJSON(t, nomadAddr+"/v1/node/"+nodes[0].ID, &node)
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
