// Package e2e drives the real qufop binary: `qufop dev` on loopback with the
// real Docker daemon and Debian's docker-registry, and the CLI as a user
// types it. Skipped, with a message, where no daemon or registry answers
// (.ci/run starts both).
package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/internal/dockertest"
	"github.com/qufop/qufop/internal/platformtest"
)

const (
	ak = "AK_E2E_TEST"
	sk = "SK_E2E_TEST_SECRET"
)

// platform is a running `qufop dev`.
type platform struct {
	t    *testing.T
	bin  string
	base string
	env  []string
	work string
	data string
	id   string // platform id (test-...)
	cmd  *exec.Cmd
	done chan error
	logf *os.File
}

func goBuild(t *testing.T, out string, pkg string, cgo bool) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if cgo {
		cmd.Env = os.Environ()
	}
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build %s: %s", pkg, b)
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// startPlatform runs a `qufop dev` of its own (a test platform id, a new
// data folder) on the real daemon and registry. Everything it makes there
// is removed when the test ends (internal/platformtest).
func startPlatform(t *testing.T) *platform {
	c := dockertest.Client(t)
	dockertest.Busybox(t, c)
	dockertest.Registry(t)
	data, id := platformtest.Data(t)
	work := t.TempDir()
	bin := filepath.Join(work, "qufop")
	goBuild(t, bin, "./cmd/qufop", true)
	p := &platform{t: t, bin: bin, work: work, data: data, id: id}
	p.start()
	return p
}

// start runs qufop dev on the platform's data folder, on a new address,
// until the test ends or stop is called.
func (p *platform) start(extra ...string) {
	t := p.t
	addr := freePort(t)
	logf, err := os.CreateTemp(p.work, "dev-*.log")
	require.NoError(t, err)
	args := append([]string{"dev", "--data", p.data, "--listen", addr,
		"--registry", dockertest.RegistryAddr,
		// Qiniu's "ubuntu" base stands for the busybox image here, where
		// nothing can be pulled.
		"--base-image", "ubuntu=" + dockertest.BusyboxRef}, extra...)
	cmd := exec.Command(p.bin, args...)
	cmd.Env = append(os.Environ(), "QUFOP_ACCESS_KEY="+ak, "QUFOP_SECRET_KEY="+sk) // the admin keys: never on a command line
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	p.cmd, p.logf, p.done = cmd, logf, make(chan error, 1)
	go func(done chan error) { done <- cmd.Wait() }(p.done)
	t.Cleanup(p.stop)
	p.base = "http://" + addr
	p.env = append(os.Environ(), "QUFOP_ADDR=http://"+addr, "QUFOP_ACCESS_KEY="+ak, "QUFOP_SECRET_KEY="+sk,
		"QUFOP_CONFIG="+filepath.Join(p.work, "cli.json"))
	require.Eventually(t, func() bool {
		r, err := http.Get(p.base + "/health")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	}, 2*time.Minute, 100*time.Millisecond, "qufop dev did not come up")
}

// stop stops qufop dev with Ctrl-C (it must stop cleanly); its instances
// keep running, as for a user.
func (p *platform) stop() {
	t := p.t
	if p.cmd == nil {
		return
	}
	cmd, done := p.cmd, p.done
	p.cmd = nil
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		assert.NoError(t, err, "qufop dev exit")
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Error("qufop dev did not stop on SIGINT")
	}
	p.logf.Close()
	if t.Failed() {
		b, _ := os.ReadFile(p.logf.Name())
		t.Logf("qufop dev output:\n%s", tail(string(b), 60))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// qufop runs the CLI; it returns the output and the error of the exit.
func (p *platform) qufop(args ...string) (string, error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Env = p.env
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// must runs the CLI and fails the test on a non-zero exit.
func (p *platform) must(args ...string) string {
	p.t.Helper()
	out, err := p.qufop(args...)
	require.NoError(p.t, err, "qufop %s:\n%s", strings.Join(args, " "), out)
	return out
}

// fails runs the CLI, wants a non-zero exit, and returns the output.
func (p *platform) fails(args ...string) string {
	p.t.Helper()
	out, err := p.qufop(args...)
	require.Error(p.t, err, "qufop %s should fail:\n%s", strings.Join(args, " "), out)
	return out
}

func (p *platform) get(path string) (int, string, string) {
	p.t.Helper()
	r, err := http.Get(p.base + path)
	require.NoError(p.t, err)
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, r.Header.Get("Content-Type"), string(b)
}

// folder writes files into a new folder (a UFOP source tree).
func folder(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for name, body := range files {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(body), 0o755))
	}
	return dir
}

// demoSource is examples/ufop-demo with its binary built, protocol and env
// changed as asked.
func demoSource(t *testing.T, bin string, protocol string, env string) string {
	spec, err := os.ReadFile("../examples/ufop-demo/ufop.yaml")
	require.NoError(t, err)
	y := strings.Replace(string(spec), "protocol: handler", "protocol: "+protocol, 1)
	if env != "" {
		y += "env:\n  " + env + "\n"
	}
	dir := folder(t, map[string]string{"ufop.yaml": y})
	b, err := os.ReadFile(bin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ufop-demo"), b, 0o755))
	return dir
}

type stateJSON struct {
	Deployed  int `json:"deployed"`
	Instances []struct {
		Index      int    `json:"index"` // from 1
		Version    int    `json:"version"`
		Healthy    bool   `json:"healthy"`
		Restarts   int    `json:"restarts"`
		State      string `json:"state"`
		BridgeAddr string `json:"bridge_addr"`
		HostAddr   string `json:"host_addr"`
	} `json:"instances"`
}

// etag GETs path with If-None-Match ifNoneMatch (none if ""), and returns
// the ETag of a 200, or "" for a 304; anything else fails the test.
func (p *platform) etag(t *testing.T, path, ifNoneMatch string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.base+path, nil)
	require.NoError(t, err)
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return ""
	case http.StatusOK:
		return resp.Header.Get("ETag")
	}
	t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	return ""
}

func (p *platform) state(name string) stateJSON {
	var s stateJSON
	out := p.must("state", name, "--json")
	require.NoError(p.t, json.Unmarshal([]byte(out), &s), out)
	return s
}

func TestUFOPLifecycle(t *testing.T) {
	p := startPlatform(t)
	demoBin := filepath.Join(p.work, "ufop-demo")
	goBuild(t, demoBin, "./examples/ufop-demo", false)
	name := fmt.Sprintf("e2e-demo-%d", time.Now().UnixNano()%1e6)
	sample, err := os.ReadFile("../platform/sample/sample.jpg")
	require.NoError(t, err)
	sum := md5.Sum(sample)

	out := p.must("reg", name, "-m", "2", "-d", "e2e demo")
	assert.Contains(t, out, "Access mode:\t PRIVATE")
	assert.Contains(t, p.must("list"), name)

	// v1 speaks the handler protocol.
	out = p.must("build", name, "-f", demoSource(t, demoBin, "handler", ""), "-d", "v1")
	assert.Contains(t, out, "build_script line 1")
	assert.Contains(t, out, "build success")
	assert.Contains(t, p.must("version", name), "state: build success")
	p.must("chver", name, "-c", "1")
	out = p.must("resize", name, "-n", "2")
	assert.Contains(t, out, "Resize instance num from 0 to 2.")
	s := p.state(name)
	require.Len(t, s.Instances, 2)
	for _, in := range s.Instances {
		assert.True(t, in.Healthy)
	}

	code, ctype, body := p.get("/demo/sample.jpg?" + name + "/md5")
	require.Equal(t, 200, code, body)
	assert.Contains(t, ctype, "application/json")
	assert.JSONEq(t, fmt.Sprintf(`{"hash":%q}`, hex.EncodeToString(sum[:])), body)

	// Pipelines mix built-in and UFOP steps in any order.
	code, _, body = p.get("/demo/sample.jpg?imageView2/2/w/200|" + name + "/wc")
	require.Equal(t, 200, code, body)
	assert.Contains(t, body, `"bytes":`)
	code, ctype, body = p.get("/demo/sample.jpg?" + name + "/echo|imageView2/2/w/100")
	require.Equal(t, 200, code, body)
	assert.Equal(t, "image/jpeg", ctype)

	// The UFOP's own error comes back as a 599 with its message.
	code, _, body = p.get("/demo/sample.jpg?" + name + "/bogus")
	assert.Equal(t, 599, code)
	assert.Contains(t, body, "unknown sub-command")

	// Results carry an ETag that revalidates while nothing changes.
	etag1 := p.etag(t, "/demo/sample.jpg?"+name+"/md5", "")
	require.NotEmpty(t, etag1)
	assert.Equal(t, "", p.etag(t, "/demo/sample.jpg?"+name+"/md5", etag1), "unchanged: 304")

	// v2 speaks /uop: the input comes through a signed blob URL.
	p.must("build", name, "-f", demoSource(t, demoBin, "uop", ""), "-d", "v2")
	p.must("chver", name, "-c", "2")

	// A steady load during the gray upgrade: no request may fail.
	var ok, failed atomic.Int32
	var failures sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := http.Get(p.base + "/demo/sample.jpg?" + name + "/md5")
				if err != nil {
					failed.Add(1)
					failures.Store(err.Error(), true)
					continue
				}
				b, _ := io.ReadAll(r.Body)
				r.Body.Close()
				if r.StatusCode == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
					failures.Store(string(b), true)
				}
			}
		}()
	}
	out = p.must("upgrade", name)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	assert.Zero(t, failed.Load(), "requests failed during the upgrade")
	failures.Range(func(k, _ any) bool { t.Logf("failure: %v", k); return true })
	t.Logf("upgrade under load: %d ok, %d failed", ok.Load(), failed.Load())
	s = p.state(name)
	assert.Equal(t, 2, s.Deployed)
	for _, in := range s.Instances {
		assert.Equal(t, 2, in.Version, "only v2 runs after the upgrade")
	}
	code, _, body = p.get("/demo/sample.jpg?" + name + "/md5")
	require.Equal(t, 200, code, body)
	assert.Contains(t, body, hex.EncodeToString(sum[:]))

	// A result of v1 is not revalidated as v2's (the gateway may hold the
	// old record for its cache's second).
	var etag2 string
	require.Eventually(t, func() bool {
		etag2 = p.etag(t, "/demo/sample.jpg?"+name+"/md5", etag1)
		return etag2 != ""
	}, 10*time.Second, 100*time.Millisecond, "after the upgrade, If-None-Match with v1's ETag still gets 304")
	assert.NotEqual(t, etag1, etag2)
	assert.Equal(t, "", p.etag(t, "/demo/sample.jpg?"+name+"/md5", etag2), "v2's result revalidates")

	// Logs of an instance.
	assert.Contains(t, p.must("logs", name, "-index", "1"), "uop")

	p.must("resize", name, "-n", "0")
	code, _, body = p.get("/demo/sample.jpg?" + name + "/md5")
	assert.Equal(t, 503, code)
	assert.Contains(t, body, "no healthy instance")

	p.must("unreg", name)
	// The gateway caches records for a second.
	assert.Eventually(t, func() bool {
		code, _, body = p.get("/demo/sample.jpg?" + name + "/md5")
		return code == 400 && strings.Contains(body, "unknown command")
	}, 5*time.Second, 100*time.Millisecond, "after unreg: %d %s", code, body)
}

func TestShellUFOPAndCrash(t *testing.T) {
	p := startPlatform(t)
	suffix := time.Now().UnixNano() % 1e6

	// The shell UFOP of examples/ on busybox.
	sh := fmt.Sprintf("e2e-sh-%d", suffix)
	p.must("reg", sh, "-m", "public")
	files := map[string]string{}
	for _, f := range []string{"ufop.yaml", "serve.sh", "handle.sh"} {
		b, err := os.ReadFile("../examples/ufop-sh/" + f)
		require.NoError(t, err)
		files[f] = string(b)
	}
	p.must("build", sh, "-f", folder(t, files))
	p.must("chver", sh, "-c", "1")
	p.must("resize", sh, "-n", "1")
	code, _, body := p.get("/demo/sample.jpg?imageInfo|" + sh + "/upper")
	require.Equal(t, 200, code, body)
	assert.Contains(t, body, `"FORMAT":"JPEG"`)
	p.must("unreg", sh)

	// A UFOP that dies mid-request: 599, and the instance is restarted.
	demoBin := filepath.Join(p.work, "ufop-demo")
	goBuild(t, demoBin, "./examples/ufop-demo", false)
	crash := fmt.Sprintf("e2e-crash-%d", suffix)
	p.must("reg", crash)
	p.must("build", crash, "-f", demoSource(t, demoBin, "handler", `UFOP_DEMO_CRASH: "1"`))
	p.must("chver", crash, "-c", "1")
	p.must("resize", crash, "-n", "1")
	code, _, body = p.get("/demo/sample.jpg?" + crash + "/crash")
	assert.Equal(t, 599, code)
	// The runtime's reason when it has seen the exit within a few seconds
	// (dispatch's autopsy), the transport's otherwise.
	assert.True(t, strings.Contains(body, "the instance running the step stopped: exited with code 3") ||
		strings.Contains(body, "died mid-request"), body)
	require.Eventually(t, func() bool {
		s := p.state(crash)
		return len(s.Instances) == 1 && s.Instances[0].Restarts >= 1 && s.Instances[0].Healthy
	}, 60*time.Second, 500*time.Millisecond, "the crashed instance was not restarted")
	code, _, body = p.get("/demo/sample.jpg?" + crash + "/md5")
	assert.Equal(t, 200, code, body)
	p.must("unreg", crash)
}

func TestBadInput(t *testing.T) {
	p := startPlatform(t)
	name := fmt.Sprintf("e2e-bad-%d", time.Now().UnixNano()%1e6)
	p.must("reg", name)
	defer p.qufop("unreg", name)

	// A malformed ufop.yaml: refused at upload, naming the line and key.
	out := p.fails("build", name, "-f", folder(t, map[string]string{
		"ufop.yaml": "image: local/busybox:1\nrun: ./x\nconcurrency: many\n",
	}))
	assert.Contains(t, out, "ufop.yaml:3: concurrency")

	// A tarball with a ../ entry.
	tarPath := filepath.Join(t.TempDir(), "evil.tar")
	require.NoError(t, os.WriteFile(tarPath, evilTar(t), 0o644))
	out = p.fails("build", name, "-f", tarPath)
	assert.Contains(t, out, `"../escape"`)

	// A failing build script names its line.
	out = p.fails("build", name, "-f", folder(t, map[string]string{
		"ufop.yaml": "image: local/busybox:1\nbuild_script:\n  - echo ok\n  - exit 7\nrun: ./x\n",
	}))
	assert.Contains(t, out, "build_script line 2")
	assert.Contains(t, p.must("version", name), "state: build failed")

	// chver to the failed version is refused; resize without a version too.
	assert.Contains(t, p.fails("chver", name, "-c", "1"), "only a successful build")
	assert.Contains(t, p.fails("resize", name, "-n", "1"), "no current version")

	// Bad credentials.
	bad := append([]string{}, p.env...)
	bad = append(bad, "QUFOP_SECRET_KEY=wrong")
	cmd := exec.Command(p.bin, "list")
	cmd.Env = bad
	b, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(b), "bad access key or signature")
}

func evilTar(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range map[string]string{"ufop.yaml": "image: local/busybox:1\nrun: ./x\n", "../escape": "x"} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}
