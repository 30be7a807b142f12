package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/qufop/qufop/internal/testutil"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/storage/local"
)

// upper is a fake built-in command: it upper-cases text, or fails with the
// status given as its first argument.
func upper() fop.Processor {
	return fop.ProcessorFunc(func(_ context.Context, cmd fop.Cmd, in fop.Blob) (fop.Blob, error) {
		if len(cmd.Args) > 0 && cmd.Args[0] == "fail" {
			return fop.Blob{}, errs.Failed(errors.New("boom"), "upper failed")
		}
		return fop.Blob{Data: bytes.ToUpper(in.Data), MIME: "text/plain"}, nil
	})
}

type validated struct{ fop.Processor }

func (validated) Validate(cmd fop.Cmd) error {
	if len(cmd.Args) > 0 && cmd.Args[0] == "bad" {
		return cmd.Errorf("bad parameter %q", cmd.Args[0])
	}
	return nil
}

// gate blocks every call until released, counting calls.
type gate struct {
	calls   atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func newGate() *gate { return &gate{entered: make(chan struct{}, 16), release: make(chan struct{})} }

func (g *gate) Process(ctx context.Context, _ fop.Cmd, in fop.Blob) (fop.Blob, error) {
	g.calls.Add(1)
	g.entered <- struct{}{}
	<-g.release
	return fop.Blob{Data: in.Data, MIME: "text/plain"}, nil
}

type fixture struct {
	srv  *Server
	dir  string
	gate *gate
	logs *testutil.SyncBuffer
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "docs", "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello world"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "docs", "sub", "a.txt"), []byte("nested"), 0o644))
	b, err := local.New("files", dir)
	require.NoError(t, err)
	set, err := storage.NewSet(b)
	require.NoError(t, err)
	cfg := NewDefaultConfig()
	cfg.Workers, cfg.QueueSize = 2, 2
	if mod != nil {
		mod(&cfg)
	}
	g := newGate()
	reg := fop.Registry{"upper": upper(), "checked": validated{upper()}, "block": g}
	logs := &testutil.SyncBuffer{}
	srv, err := New(cfg, set, reg, slog.New(slog.NewTextHandler(logs, nil)))
	require.NoError(t, err)
	return &fixture{srv: srv, dir: dir, gate: g, logs: logs}
}

func (f *fixture) get(t *testing.T, target string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	return f.do(t, httptest.NewRequest(http.MethodGet, target, nil), hdr...)
}

func (f *fixture) do(t *testing.T, r *http.Request, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, r)
	return w
}

type apiError struct {
	Code  int    `json:"code"`
	Error string `json:"error"`
}

func decodeError(t *testing.T, w *httptest.ResponseRecorder) apiError {
	t.Helper()
	var e apiError
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e), "body %q", w.Body.String())
	assert.Equal(t, w.Code, e.Code)
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
	assert.Contains(t, w.Header().Get("Content-Type"), "application/json")
	return e
}

func TestProcessing(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name   string
		target string
		status int
		body   string // exact body for 200, substring of the error otherwise
	}{
		{"plain download", "/files/hello.txt", 200, "hello world"},
		{"nested key", "/files/docs/sub/a.txt", 200, "nested"},
		{"one step", "/files/hello.txt?upper", 200, "HELLO WORLD"},
		{"pipeline", "/files/hello.txt?upper|upper", 200, "HELLO WORLD"},
		{"escaped pipe", "/files/hello.txt?upper%7Cchecked", 200, "HELLO WORLD"},
		{"download params after chain", "/files/hello.txt?upper&e=1&token=a:b", 200, "HELLO WORLD"},
		{"download params only", "/files/hello.txt?e=1&token=a:b", 200, "hello world"},
		{"missing object", "/files/nope.txt?upper", 404, ""},
		{"missing object plain", "/files/nope.txt", 404, ""},
		{"unknown bucket", "/nobucket/hello.txt", 631, "bucket does not exist"},
		{"escape", "/files/docs/../../etc/passwd", 400, ""},
		{"dotdot key", "/files/docs/%2E%2E/hello.txt", 400, ""},
		{"unknown command", "/files/hello.txt?nosuch/1", 400, `segment 1 "nosuch/1": unknown command "nosuch"`},
		{"bad param segment 2", "/files/hello.txt?upper|checked/bad", 400, `segment 2 "checked/bad": bad parameter`},
		{"empty segment", "/files/hello.txt?upper||upper", 400, "segment 2"},
		{"step fails", "/files/hello.txt?upper|upper/fail", 599, "upper failed"},
		{"no route", "/", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := f.get(t, tc.target)
			assert.Equal(t, tc.status, w.Code, "body %q", w.Body.String())
			assert.NotEmpty(t, w.Header().Get("X-Reqid"))
			if tc.status == 200 {
				assert.Equal(t, tc.body, w.Body.String())
				return
			}
			e := decodeError(t, w)
			assert.Contains(t, e.Error, tc.body)
		})
	}
}

func TestReqIDKeptAndUnique(t *testing.T) {
	f := newFixture(t, nil)
	a := f.get(t, "/files/hello.txt").Header().Get("X-Reqid")
	b := f.get(t, "/files/hello.txt").Header().Get("X-Reqid")
	assert.NotEqual(t, a, b)
	assert.Equal(t, "trace-1", f.get(t, "/files/hello.txt", "X-Reqid", "trace-1").Header().Get("X-Reqid"))
}

func TestMethodNotAllowed(t *testing.T) {
	f := newFixture(t, nil)
	w := f.do(t, httptest.NewRequest(http.MethodPost, "/files/hello.txt", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
	decodeError(t, w)
}

func TestHeadAndRange(t *testing.T) {
	f := newFixture(t, nil)
	w := f.do(t, httptest.NewRequest(http.MethodHead, "/files/hello.txt", nil))
	assert.Equal(t, 200, w.Code)
	assert.Equal(t, "11", w.Header().Get("Content-Length"))
	w = f.get(t, "/files/hello.txt", "Range", "bytes=6-")
	assert.Equal(t, http.StatusPartialContent, w.Code)
	assert.Equal(t, "world", w.Body.String())
}

func TestConditionalResult(t *testing.T) {
	f := newFixture(t, nil)
	w := f.get(t, "/files/hello.txt?upper")
	require.Equal(t, 200, w.Code)
	etag := w.Header().Get("ETag")
	require.NotEmpty(t, etag)
	assert.NotEqual(t, etag, f.get(t, "/files/hello.txt?upper|upper").Header().Get("ETag"), "another chain, another ETag")
	w = f.get(t, "/files/hello.txt?upper", "If-None-Match", etag)
	assert.Equal(t, http.StatusNotModified, w.Code)
	assert.Empty(t, w.Body.String())

	// A changed object changes the ETag.
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, os.WriteFile(filepath.Join(f.dir, "hello.txt"), []byte("changed, longer"), 0o644))
	w = f.get(t, "/files/hello.txt?upper", "If-None-Match", etag)
	assert.Equal(t, 200, w.Code)
	assert.Equal(t, "CHANGED, LONGER", w.Body.String())
}

func TestAttname(t *testing.T) {
	f := newFixture(t, nil)
	w := f.get(t, "/files/hello.txt?upper&attname=x.txt")
	assert.Equal(t, `attachment; filename=x.txt`, w.Header().Get("Content-Disposition"))
}

func TestSourceTooLarge(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxSourceBytes = 5 })
	w := f.get(t, "/files/hello.txt?upper")
	assert.Equal(t, 400, w.Code)
	assert.Contains(t, decodeError(t, w).Error, "over the 5-byte limit")
	// Plain downloads stream and have no cap.
	assert.Equal(t, 200, f.get(t, "/files/hello.txt").Code)
}

func TestQueueFull(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Workers, c.QueueSize = 1, 1 })
	results := make(chan int, 2)
	go func() { results <- f.get(t, "/files/hello.txt?block").Code }()
	<-f.gate.entered // the worker is taken
	go func() { results <- f.get(t, "/files/hello.txt?block").Code }()
	require.Eventually(t, func() bool { return f.srv.pool.Waiting() == 1 }, time.Minute, time.Millisecond)

	w := f.get(t, "/files/hello.txt?block")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Contains(t, decodeError(t, w).Error, "queue is full")

	close(f.gate.release)
	assert.Equal(t, 200, <-results)
	assert.Equal(t, 200, <-results)
	assert.EqualValues(t, 2, f.gate.calls.Load())
}

func TestDeadline(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RequestTimeout = 50 * time.Millisecond })
	defer close(f.gate.release)
	w := f.get(t, "/files/hello.txt?block")
	assert.Equal(t, http.StatusGatewayTimeout, w.Code)
	assert.Contains(t, decodeError(t, w).Error, "timed out")
	// The worker stays taken until the step returns: never more than the
	// pool's size at once.
	assert.Equal(t, 1, f.srv.pool.Busy())
}

func TestQueuedClientGoneIsDropped(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Workers, c.QueueSize = 1, 4 })
	first := make(chan int, 1)
	go func() { first <- f.get(t, "/files/hello.txt?block").Code }()
	<-f.gate.entered

	ctx, cancel := context.WithCancel(context.Background())
	r := httptest.NewRequest(http.MethodGet, "/files/hello.txt?block", nil).WithContext(ctx)
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- f.do(t, r) }()
	require.Eventually(t, func() bool { return f.srv.pool.Waiting() == 1 }, time.Minute, time.Millisecond)
	cancel()
	<-done
	assert.Equal(t, 0, f.srv.pool.Waiting())

	close(f.gate.release)
	assert.Equal(t, 200, <-first)
	assert.EqualValues(t, 1, f.gate.calls.Load(), "the dropped request never ran")
	assert.Contains(t, f.logs.String(), "status=499")
}

func TestHealthAndMetrics(t *testing.T) {
	f := newFixture(t, nil)
	w := f.get(t, "/health")
	assert.Equal(t, 200, w.Code)
	assert.Contains(t, w.Body.String(), `"status":"ok"`)

	f.get(t, "/files/hello.txt?upper|upper")
	f.get(t, "/files/hello.txt?upper/fail")
	w = f.get(t, "/metrics")
	require.Equal(t, 200, w.Code)
	body := w.Body.String()
	for _, want := range []string{
		`qufop_gateway_requests_total{command="upper",status="200"} 1`,
		`qufop_gateway_requests_total{command="upper",status="599"} 1`,
		`qufop_gateway_steps_total{command="upper",status="200"} 2`,
		`qufop_gateway_request_duration_seconds_bucket{command="upper"`,
		"qufop_gateway_queue_length 0",
		"qufop_gateway_requests_in_flight 1", // the /metrics request itself
		"qufop_gateway_workers_busy 0",
		"qufop_gateway_workers 2",
	} {
		assert.Contains(t, body, want)
	}
}

func TestAccessLogOneLinePerRequest(t *testing.T) {
	f := newFixture(t, nil)
	f.get(t, "/files/hello.txt?upper")
	f.get(t, "/files/nope.txt")
	lines := strings.Split(strings.TrimSpace(f.logs.String()), "\n")
	require.Len(t, lines, 2)
	assert.Contains(t, lines[0], `uri=/files/hello.txt?upper status=200`)
	assert.Contains(t, lines[1], "status=404")
	assert.Contains(t, lines[1], "reqid=")
}

func TestConfigValidate(t *testing.T) {
	c := NewDefaultConfig()
	require.NoError(t, c.Validate())
	c.Workers, c.QueueSize, c.RequestTimeout = 0, -1, 0
	err := c.Validate()
	require.Error(t, err)
	for _, want := range []string{"workers", "queue", "timeout"} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = New(c, &storage.Set{}, nil, nil)
	assert.Error(t, err)
}

// echoUFOP answers every step with a fixed small result, as a UFOP would.
type echoUFOP struct{}

func (echoUFOP) Resolve(_ context.Context, cmd fop.Cmd, _ string) (fop.Processor, error) {
	if cmd.Name != "demo" {
		return nil, nil
	}
	return fop.ProcessorFunc(func(_ context.Context, _ fop.Cmd, in fop.Blob) (fop.Blob, error) {
		return fop.Blob{Data: []byte(`{"hash":"aadc2d89de06297b577b2af074073de1"}`), MIME: "application/json"}, nil
	}), nil
}

// discardWriter is a reusable http.ResponseWriter for benchmarks.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkUFOPStep is the gateway's own work on the UFOP path (the
// instance call stubbed out): routing, the chain, the cached source,
// metrics and the answer. bench/ufop.sh measures the whole path.
func BenchmarkUFOPStep(b *testing.B) {
	dir := b.TempDir()
	require.NoError(b, os.WriteFile(filepath.Join(dir, "small.txt"), bytes.Repeat([]byte("x"), 900), 0o644))
	bk, err := local.New("files", dir, local.WithCache(local.NewCache(64<<10, 1<<20, local.DefaultValid)))
	require.NoError(b, err)
	set, err := storage.NewSet(bk)
	require.NoError(b, err)
	srv, err := New(NewDefaultConfig(), set, fop.Registry{}, nil, WithUFOPs(echoUFOP{}, func(string) string { return "admin" }))
	require.NoError(b, err)
	h := srv.Handler()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, "/files/small.txt?demo/md5", nil)
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			w.code = 0
			h.ServeHTTP(w, r)
			if w.code != 0 && w.code != http.StatusOK {
				b.Fatalf("status %d", w.code)
			}
		}
	})
}
