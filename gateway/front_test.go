package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/storage/local"
)

// smallBucket is bucket "files" holding small.txt.
func smallBucket(t *testing.T) storage.Buckets {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "small.txt"), []byte("hello"), 0o644))
	bk, err := local.New("files", dir)
	require.NoError(t, err)
	set, err := storage.NewSet(bk)
	require.NoError(t, err)
	return set
}

// serving starts a gateway with the echo UFOP on a loopback listener.
func serving(t *testing.T, fastFront bool) (addr string, srv *Server) {
	t.Helper()
	cfg := NewDefaultConfig()
	cfg.FastFront = fastFront
	srv, err := New(cfg, smallBucket(t), fop.Registry{"upper": upper()}, nil, WithUFOPs(echoUFOP{}, func(string) string { return "admin" }))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cancel, done := start(srv, ln)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return ln.Addr().String(), srv
}

// start serves srv on ln until cancel; done receives Serve's result.
func start(srv *Server, ln net.Listener) (cancel context.CancelFunc, done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	c := make(chan error, 1)
	go func() { c <- srv.Serve(ctx, ln) }()
	return cancel, c
}

// rawExchange sends requests on one connection and reads the answers.
func rawExchange(t *testing.T, addr string, reqs ...string) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var out []*http.Response
	for _, r := range reqs {
		// Written beside the read: a server may answer (413) and close
		// before it has read all of a large request, and then the write
		// fails with a broken pipe while the answer is there to read.
		wrote := make(chan error, 1)
		go func() { _, err := io.WriteString(c, r); wrote <- err }()
		method, _, _ := strings.Cut(r, " ")
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if werr := <-wrote; err != nil {
			require.NoError(t, werr, "sending %.40q", r)
		}
		require.NoError(t, err, "answer to %.40q", r)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		out = append(out, resp)
	}
	return out
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	require.NoError(t, err)
	return string(b)
}

func get(target string) string {
	return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target)
}

// Both fronts answer the same requests the same way, on one connection
// whatever its first request was.
func TestFrontsAnswerAlike(t *testing.T) {
	reqs := []struct {
		name, req    string
		status       int
		body, header string // body: exact for 200, substring otherwise
	}{
		{"ufop step", get("/files/small.txt?demo/md5"), 200, `{"hash":"aadc2d89de06297b577b2af074073de1"}`, "application/json"},
		{"ufop step, escaped key", get("/files/sm%61ll.txt?demo/md5"), 200, `{"hash":"aadc2d89de06297b577b2af074073de1"}`, "application/json"},
		{"ufop, missing object", get("/files/nope.txt?demo/md5"), 404, "nope.txt", "application/json; charset=utf-8"},
		{"ufop, missing bucket", get("/nobucket/small.txt?demo/md5"), 631, "bucket", "application/json; charset=utf-8"},
		{"built-in step", get("/files/small.txt?upper"), 200, "HELLO", "text/plain"},
		{"mixed chain", get("/files/small.txt?upper|demo/md5"), 200, `{"hash":"aadc2d89de06297b577b2af074073de1"}`, "application/json"},
		{"unknown command", get("/files/small.txt?nosuch"), 400, "nosuch", "application/json; charset=utf-8"},
		{"download", get("/files/small.txt"), 200, "hello", "text/plain; charset=utf-8"},
		{"health", get("/health"), 200, `"status":"ok"`, "application/json; charset=utf-8"},
		{"post", "POST /files/small.txt?demo/md5 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", 405, "not allowed", "application/json; charset=utf-8"},
	}
	for _, fast := range []bool{false, true} {
		addr, srv := serving(t, fast)
		for _, first := range reqs {
			t.Run(fmt.Sprintf("fast=%v/first=%s", fast, first.name), func(t *testing.T) {
				all := []string{first.req}
				for _, r := range reqs {
					all = append(all, r.req)
				}
				before := conns(t, srv)
				answers := rawExchange(t, addr, all...)
				// The connection went to the front its first request asks for.
				after := conns(t, srv)
				front := "std"
				if fast && (first.name == "ufop step" || first.name == "ufop step, escaped key" || first.name == "ufop, missing object") {
					front = "fast"
				}
				if fast {
					assert.Equal(t, before[front]+1, after[front], "connections on the %s front", front)
				} else {
					assert.Equal(t, before, after, "no routing without the fast front")
				}
				for i, a := range answers {
					want := first
					if i > 0 {
						want = reqs[i-1]
					}
					got := body(t, a)
					assert.Equal(t, want.status, a.StatusCode, "%s: %s", want.name, got)
					if want.status == 200 {
						if want.name == "health" {
							assert.Contains(t, got, want.body)
						} else {
							assert.Equal(t, want.body, got, want.name)
						}
					} else {
						assert.Contains(t, got, want.body, want.name)
						assert.Contains(t, got, fmt.Sprintf(`"code":%d`, want.status), want.name)
						assert.Equal(t, "no-store", a.Header.Get("Cache-Control"), want.name)
					}
					assert.Equal(t, want.header, a.Header.Get("Content-Type"), want.name)
					assert.NotEmpty(t, a.Header.Get("X-Reqid"), want.name)
					assert.Empty(t, a.Header.Get("Server"), want.name)
				}
			})
		}
	}
}

// conns reads qufop_gateway_connections_total by front.
func conns(t *testing.T, srv *Server) map[string]float64 {
	t.Helper()
	mfs, err := srv.m.reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "qufop_gateway_connections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// Requests pipelined in one write survive the hand-over to net/http, and
// HEAD on the fast front answers headers only.
func TestFastFrontPipelinedAndHead(t *testing.T) {
	addr, srv := serving(t, true)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.WriteString(c, get("/files/small.txt?demo/md5")+
		"HEAD /files/small.txt?demo/md5 HTTP/1.1\r\nHost: x\r\n\r\n"+
		get("/health")+
		get("/files/small.txt?demo/md5"))
	require.NoError(t, err)
	br := bufio.NewReader(c)
	for i, method := range []string{"GET", "HEAD", "GET", "GET"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		require.NoError(t, err, "answer %d", i)
		b := body(t, resp)
		assert.Equal(t, 200, resp.StatusCode, "answer %d: %s", i, b)
		switch i {
		case 1:
			assert.Empty(t, b, "HEAD has no body")
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		case 2:
			assert.Contains(t, b, `"status":"ok"`)
		default:
			assert.Contains(t, b, `"hash"`)
		}
	}
	assert.Equal(t, map[string]float64{"fast": 1}, conns(t, srv))
}

// A body over fastMaxBody on a fast connection is refused, the gateway
// keeps serving.
func TestFastFrontBodyCap(t *testing.T) {
	addr, _ := serving(t, true)
	big := strings.Repeat("x", fastMaxBody+1)
	answers := rawExchange(t, addr, get("/files/small.txt?demo/md5"),
		fmt.Sprintf("POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(big), big))
	assert.Equal(t, 200, answers[0].StatusCode)
	assert.Equal(t, http.StatusRequestEntityTooLarge, answers[1].StatusCode)
	answers = rawExchange(t, addr, get("/files/small.txt?demo/md5"))
	assert.Equal(t, 200, answers[0].StatusCode)
}

// slowUFOP answers once released.
type slowUFOP struct{ entered, release chan struct{} }

func (u slowUFOP) Resolve(_ context.Context, cmd fop.Cmd, _ string) (fop.Processor, error) {
	return fop.ProcessorFunc(func(_ context.Context, _ fop.Cmd, in fop.Blob) (fop.Blob, error) {
		u.entered <- struct{}{}
		<-u.release
		return fop.Blob{Data: []byte("done"), MIME: "text/plain"}, nil
	}), nil
}

// On stop, a request in flight on the fast front finishes; Serve returns.
func TestFastFrontGracefulStop(t *testing.T) {
	u := slowUFOP{entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv, err := New(NewDefaultConfig(), smallBucket(t), fop.Registry{}, nil, WithUFOPs(u, func(string) string { return "admin" }))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cancel, done := start(srv, ln)

	type answered struct {
		resp *http.Response
		err  error
	}
	answer := make(chan answered, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/files/small.txt?slow")
		answer <- answered{resp, err}
	}()
	<-u.entered
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Serve returned with a request in flight: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(u.release)
	a := <-answer
	require.NoError(t, a.err)
	assert.Equal(t, 200, a.resp.StatusCode)
	assert.Equal(t, "done", body(t, a.resp))
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	_, err = net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	assert.Error(t, err, "the listener is closed")
}

// flakyListener fails its first Accept the way a connection reset in the
// accept queue does.
type flakyListener struct {
	net.Listener
	failed atomic.Bool
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if !l.failed.Swap(true) {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ECONNRESET)}
	}
	return l.Listener.Accept()
}

// A failed accept does not stop the gateway: Linux passes a queued
// connection's network errors on from accept.
func TestFastFrontAcceptRetry(t *testing.T) {
	srv, err := New(NewDefaultConfig(), smallBucket(t), fop.Registry{}, nil, WithUFOPs(echoUFOP{}, func(string) string { return "admin" }))
	require.NoError(t, err)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := &flakyListener{Listener: inner}
	cancel, done := start(srv, ln)
	answers := rawExchange(t, inner.Addr().String(), get("/files/small.txt?demo/md5"), get("/health"))
	assert.Equal(t, 200, answers[0].StatusCode)
	assert.Equal(t, 200, answers[1].StatusCode)
	assert.True(t, ln.failed.Load())
	select {
	case err := <-done:
		t.Fatalf("Serve returned: %v", err)
	default:
	}
	cancel()
	assert.NoError(t, <-done)
}
