// Package ufopsh tests the ufop-sh example (serve.sh and handle.sh) for
// real: on the host's busybox, on a loopback port, called by ufop.Caller.
package ufopsh

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"github.com/qufop/qufop/internal/testutil"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

const busybox = "/bin/busybox"

// applets returns a directory of busybox applet links, to be the whole
// PATH: the scripts get busybox tools and nothing else.
func applets(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(busybox); err != nil {
		t.Skipf("%s is missing (install busybox-static): %v", busybox, err)
	}
	out, err := exec.Command(busybox, "--list").Output()
	require.NoError(t, err)
	dir := t.TempDir()
	for _, name := range strings.Fields(string(out)) {
		require.NoError(t, os.Symlink(busybox, filepath.Join(dir, name)))
	}
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type instance struct {
	addr string
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer
	done chan struct{} // closed when serve.sh has exited
	err  error         // its exit, once done is closed
}

// start runs serve.sh with busybox sh on a free loopback port and waits
// until /health answers.
func start(t *testing.T) *instance {
	t.Helper()
	bin := applets(t)
	dir, err := os.Getwd()
	require.NoError(t, err)
	port := freePort(t)
	in := &instance{addr: fmt.Sprintf("127.0.0.1:%d", port), out: &testutil.SyncBuffer{}, done: make(chan struct{})}
	in.cmd = exec.Command(filepath.Join(bin, "sh"), filepath.Join(dir, "serve.sh"))
	in.cmd.Env = []string{
		"PATH=" + bin,
		fmt.Sprintf("PORT_HTTP=%d", port),
		"BIND_ADDR=127.0.0.1", // busybox nc binds its optional address argument
		"TMPDIR=" + t.TempDir(),
		"FETCH_TIMEOUT=5",
		"MAX_BODY=65536",
	}
	in.cmd.Stdout, in.cmd.Stderr = in.out, in.out
	in.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in.cmd.WaitDelay = 2 * time.Second
	require.NoError(t, in.cmd.Start())
	go func() { in.err = in.cmd.Wait(); close(in.done) }()
	t.Cleanup(func() {
		select {
		case <-in.done:
			return
		default:
		}
		in.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-in.done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL) // our own process group
			<-in.done
		}
		if t.Failed() {
			t.Logf("ufop-sh output:\n%s", in.out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + in.addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return in
			}
		}
		select {
		case <-in.done:
			t.Fatalf("serve.sh exited: %v\n%s", in.err, in.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve.sh is not healthy: %v\n%s", err, in.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// origin serves inputs for url mode on 127.0.0.1.
func origin(t *testing.T, h http.HandlerFunc) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestHealthAndLoopback(t *testing.T) {
	in := start(t)
	resp, err := http.Get("http://" + in.addr + "/health")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok\n", string(body))
	assert.Equal(t, "close", resp.Header.Get("Connection"))
	assert.Equal(t, "HTTP/1.0", resp.Proto)

	resp, err = http.Post("http://"+in.addr+"/health", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	resp, err = http.Get("http://" + in.addr + "/handler?cmd=x/upper")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestCommands(t *testing.T) {
	in := start(t)
	binary := []byte("a\x00b\r\n\xff\xfe\nend")
	sum := md5.Sum(binary)
	tests := []struct {
		cmd      string
		input    []byte
		wantMIME string
		want     string
	}{
		{"ufop-sh/upper", []byte("Hello, world!\nsecond line"), "text/plain; charset=utf-8", "HELLO, WORLD!\nSECOND LINE"},
		{"any-name/rev", []byte("abc\ndef\n"), "text/plain; charset=utf-8", "cba\nfed\n"},
		{"ufop-sh/md5", binary, "application/json", `{"hash":"` + hex.EncodeToString(sum[:]) + `"}` + "\n"},
		{"ufop-sh/md5", nil, "application/json", `{"hash":"d41d8cd98f00b204e9800998ecf8427e"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			src := origin(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.RawQuery != "e=1&token=a+b%2F" {
					http.Error(w, "bad query "+r.URL.RawQuery, http.StatusForbidden)
					return
				}
				w.Write(tt.input)
			})
			var c ufop.Caller
			for _, mode := range []string{"body", "url"} {
				input := ufop.Input{Data: tt.input, MIME: "text/plain", Key: "dir/a b.txt", Bucket: "b", ReqID: "r1"}
				if mode == "url" {
					input = ufop.Input{URL: src + "/get/x?e=1&token=a+b%2F", MIME: "text/plain", Size: int64(len(tt.input))}
				}
				out, err := c.Call(context.Background(), in.addr, ufop.ProtocolHandler, tt.cmd, input)
				require.NoError(t, err, mode)
				assert.Equal(t, tt.wantMIME, out.MIME, mode)
				assert.Equal(t, tt.want, string(out.Data), mode)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	in := start(t)
	src := origin(t, http.NotFound)
	tests := []struct {
		name string
		cmd  string
		in   ufop.Input
		want string
	}{
		{"unknown sub-command", "ufop-sh/nope", ufop.Input{Data: []byte("x")},
			`ufop-sh: bad command "ufop-sh/nope": unknown sub-command "nope" (status 400)`},
		// Quotes and backslashes are escaped in the JSON, so they come back.
		{"quotes in the command", `ufop-sh/a"b\c`, ufop.Input{Data: []byte("x")},
			`ufop-sh: bad command "ufop-sh/a"b\c": unknown sub-command "a"b\c" (status 400)`},
		{"no sub-command", "ufop-sh", ufop.Input{},
			`ufop-sh: no sub-command in "ufop-sh" (want <name>/rev|upper|md5) (status 400)`},
		{"fetch 404", "ufop-sh/upper", ufop.Input{URL: src + "/missing"},
			"ufop-sh: cannot fetch the input: wget: server returned error: HTTP/1.1 404 Not Found (status 502)"},
		{"url not http", "ufop-sh/upper", ufop.Input{URL: "file:///etc/passwd"},
			"ufop-sh: url is not an http(s) URL (status 400)"},
		{"body too large", "ufop-sh/md5", ufop.Input{Data: make([]byte, 65537)},
			"ufop-sh: input is over 65536 bytes (status 413)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c ufop.Caller
			_, err := c.Call(context.Background(), in.addr, ufop.ProtocolHandler, tt.cmd, tt.in)
			require.Error(t, err)
			assert.Equal(t, errs.StatusProcessingFailed, errs.Status(err))
			assert.Equal(t, tt.want, errs.Public(err))
			assert.NotErrorIs(t, err, ufop.ErrInstanceDied)
		})
	}
}

func TestConcurrentCalls(t *testing.T) {
	in := start(t)
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			var c ufop.Caller
			word := fmt.Sprintf("call number %d", i)
			out, err := c.Call(context.Background(), in.addr, ufop.ProtocolHandler, "s/upper", ufop.Input{Data: []byte(word)})
			if err == nil && string(out.Data) != strings.ToUpper(word) {
				err = fmt.Errorf("got %q for %q", out.Data, word)
			}
			errc <- err
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		assert.NoError(t, err)
	}
	// One log line per request (written after the answer).
	assert.Eventually(t, func() bool {
		return strings.Count(in.out.String(), "cmd=s/upper status=200") == 8
	}, 5*time.Second, 10*time.Millisecond)
}

// TestGracefulShutdown sends SIGTERM while a request is in flight: the
// request completes, then serve.sh exits 0.
func TestGracefulShutdown(t *testing.T) {
	in := start(t)
	inFlight := make(chan struct{})
	release := make(chan struct{})
	src := origin(t, func(w http.ResponseWriter, r *http.Request) {
		close(inFlight)
		<-release
		io.WriteString(w, "late")
	})
	res := make(chan error, 1)
	var out ufop.Output
	go func() {
		var c ufop.Caller
		var err error
		out, err = c.Call(context.Background(), in.addr, ufop.ProtocolHandler, "s/upper", ufop.Input{URL: src + "/x"})
		res <- err
	}()
	<-inFlight
	require.NoError(t, in.cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool { return strings.Contains(in.out.String(), "shutting down") }, 5*time.Second, 10*time.Millisecond)
	select {
	case <-in.done:
		t.Fatalf("serve.sh exited before the request finished: %v", in.err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-res)
	assert.Equal(t, "LATE", string(out.Data))
	select {
	case <-in.done:
		assert.NoError(t, in.err) // exit status 0
	case <-time.After(10 * time.Second):
		t.Fatal("serve.sh did not exit")
	}
}

func TestSpecFile(t *testing.T) {
	data, err := os.ReadFile("ufop.yaml")
	require.NoError(t, err)
	s, err := ufop.ParseSpec(data)
	require.NoError(t, err)
	assert.Equal(t, "local/busybox:1", s.Image)
	assert.Equal(t, "./serve.sh", s.Run)
	assert.Equal(t, ufop.ProtocolHandler, s.Protocol)
	assert.Equal(t, "/health", s.Health)
	for _, f := range []string{"serve.sh", "handle.sh"} {
		fi, err := os.Stat(f)
		require.NoError(t, err)
		assert.NotZero(t, fi.Mode()&0o111, "%s is not executable", f)
	}
}
