package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"github.com/qufop/qufop/internal/testutil"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

// demo starts the UFOP on 127.0.0.1 and an origin serving files for url
// mode. Origin paths: /text (text/plain), /big (over the cap), /missing
// (404), /slow (waits for release).
func demo(t *testing.T) (base string, origin string, logs *testutil.SyncBuffer) {
	t.Helper()
	logs = &testutil.SyncBuffer{}
	srv := httptest.NewServer(NewHandler(Config{MaxInput: 1 << 10, FetchTimeout: 2 * time.Second, Log: log.New(logs, "", 0)}))
	t.Cleanup(srv.Close)
	org := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/text":
			w.Header().Set("Content-Type", "text/markdown")
			io.WriteString(w, "Hello, World\nhi\n")
		case "/big":
			w.Write(bytes.Repeat([]byte("x"), 2<<10))
		case "/slowbig": // no Content-Length: the cap applies while reading
			for range 3 {
				w.Write(bytes.Repeat([]byte("x"), 512))
				http.NewResponseController(w).Flush()
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(org.Close)
	return srv.URL, org.URL, logs
}

func TestSubCommands(t *testing.T) {
	const input = "Hello, World\nhi\n"
	m, s1, s256 := md5.Sum([]byte(input)), sha1.Sum([]byte(input)), sha256.Sum256([]byte(input))
	tests := []struct {
		cmd       string
		wantCType string
		wantBody  string
	}{
		{"ufop-demo/md5", "application/json", `{"hash":"` + hex.EncodeToString(m[:]) + `"}` + "\n"},
		{"any-name/sha1", "application/json", `{"hash":"` + hex.EncodeToString(s1[:]) + `"}` + "\n"},
		{"x/sha256", "application/json", `{"hash":"` + hex.EncodeToString(s256[:]) + `"}` + "\n"},
		{"x/sha256/encoding/hex", "application/json", `{"hash":"` + hex.EncodeToString(s256[:]) + `"}` + "\n"},
		{"x/md5/encoding/base64", "application/json", `{"hash":"` + base64.URLEncoding.EncodeToString(m[:]) + `"}` + "\n"},
		{"ufop-demo/upper", "text/plain; charset=utf-8", "HELLO, WORLD\nHI\n"},
		{"ufop-demo/lower", "text/plain; charset=utf-8", "hello, world\nhi\n"},
		{"ufop-demo/wc", "application/json", `{"bytes":16,"lines":2,"words":3}` + "\n"},
		{"ufop-demo/echo", "text/markdown", input},
		{"ufop-demo/sleep/1", "application/json", `{"bytes":16,"slept_ms":1}` + "\n"},
	}
	base, origin, _ := demo(t)
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			check := func(t *testing.T, resp *http.Response) {
				t.Helper()
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				assert.Equal(t, http.StatusOK, resp.StatusCode, string(body))
				assert.Equal(t, tt.wantCType, resp.Header.Get("Content-Type"))
				assert.Equal(t, tt.wantBody, string(body))
			}
			t.Run("handler body", func(t *testing.T) {
				resp, err := http.Post(base+"/handler?cmd="+url.QueryEscape(tt.cmd), "text/markdown", strings.NewReader(input))
				require.NoError(t, err)
				check(t, resp)
			})
			t.Run("handler url", func(t *testing.T) {
				resp, err := http.Post(base+"/handler?"+url.Values{"cmd": {tt.cmd}, "url": {origin + "/text"}}.Encode(), "", nil)
				require.NoError(t, err)
				check(t, resp)
			})
			t.Run("uop", func(t *testing.T) {
				req, _ := json.Marshal(map[string]any{"cmd": tt.cmd, "src": map[string]any{
					"url": origin + "/text", "mimetype": "text/markdown", "fsize": len(input), "bucket": "b", "key": "a.md"}})
				resp, err := http.Post(base+"/uop", "application/json", bytes.NewReader(req))
				require.NoError(t, err)
				check(t, resp)
			})
		})
	}
}

func TestEchoMIME(t *testing.T) {
	base, origin, _ := demo(t)
	post := func(target, ctype string, hdr http.Header, body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, base+target, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	// The platform's X-Qiniu-Mimetype wins over the body's Content-Type and
	// the origin's.
	resp := post("/handler?cmd=d/echo", "application/octet-stream", http.Header{"X-Qiniu-Mimetype": {"image/gif"}}, "GIF89a")
	assert.Equal(t, "image/gif", resp.Header.Get("Content-Type"))
	resp = post("/handler?cmd=d/echo&url="+url.QueryEscape(origin+"/text"), "", http.Header{"X-Qiniu-Mimetype": {"text/x-a"}}, "")
	assert.Equal(t, "text/x-a", resp.Header.Get("Content-Type"))
	// No type at all: sniffed.
	req, _ := http.NewRequest(http.MethodPost, base+"/handler?cmd=d/echo", strings.NewReader("<html><body>x</body></html>"))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
}

func TestHealth(t *testing.T) {
	base, _, _ := demo(t)
	resp, err := http.Get(base + "/health")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok\n", string(body))

	resp, err = http.Post(base+"/health", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestErrors(t *testing.T) {
	base, origin, _ := demo(t)
	// A port where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := "http://" + ln.Addr().String() + "/x"
	ln.Close()

	uop := func(cmd, src string) string {
		b, _ := json.Marshal(map[string]any{"cmd": cmd, "src": map[string]any{"url": src}})
		return string(b)
	}
	h := func(cmd, u string) string {
		v := url.Values{"cmd": {cmd}}
		if u != "" {
			v.Set("url", u)
		}
		return "/handler?" + v.Encode()
	}
	tests := []struct {
		name, method, target, body string
		wantStatus                 int
		wantErr                    string // substring of {"error":...}
	}{
		{"unknown sub-command", "POST", h("d/nope", ""), "x", 400, `bad command "d/nope": unknown sub-command "nope"`},
		{"no sub-command", "POST", h("ufop-demo", ""), "x", 400, "no sub-command"},
		{"empty sub-command", "POST", h("ufop-demo/", ""), "x", 400, "no sub-command"},
		{"no cmd", "POST", "/handler", "x", 400, "cmd is missing"},
		{"extra args", "POST", h("d/upper/x", ""), "x", 400, "takes no arguments"},
		{"sleep without ms", "POST", h("d/sleep", ""), "x", 400, "sleep/<ms>"},
		{"sleep too long", "POST", h("d/sleep/60001", ""), "x", 400, "0 to 60000 ms"},
		{"sleep not a number", "POST", h("d/sleep/x", ""), "x", 400, "0 to 60000 ms"},
		{"bad hash args", "POST", h("d/md5/encoding/b32", ""), "x", 400, "/encoding/base64"},
		{"not utf-8", "POST", h("d/upper", ""), "\xff\xfe", 400, "not UTF-8"},
		{"GET handler", "GET", h("d/md5", ""), "", 405, "use POST"},
		{"GET uop", "GET", "/uop", "", 405, "use POST"},
		{"unknown path", "POST", "/nope", "", 404, "no such path"},
		{"body too large", "POST", h("d/md5", ""), strings.Repeat("x", 1025), 413, "over 1024 bytes"},
		{"fetch too large", "POST", h("d/md5", origin+"/big"), "", 413, "over 1024 bytes"},
		{"fetch too large, streamed", "POST", h("d/md5", origin+"/slowbig"), "", 413, "over 1024 bytes"},
		{"fetch 404", "POST", h("d/md5", origin+"/missing"), "", 502, "status 404"},
		{"fetch refused", "POST", h("d/md5", refused), "", 502, "cannot fetch the input"},
		{"url not http", "POST", h("d/md5", "file:///etc/passwd"), "", 400, "not an http(s) URL"},
		{"uop bad json", "POST", "/uop", "{", 500, "cannot parse the request body"},
		{"uop no url", "POST", "/uop", uop("d/md5", ""), 400, "src.url is missing"},
		{"uop bad command", "POST", "/uop", uop("d/x", origin+"/text"), 400, "unknown sub-command"},
		{"uop fetch 404", "POST", "/uop", uop("d/md5", origin+"/missing"), 502, "status 404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.target, strings.NewReader(tt.body))
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, tt.wantStatus, resp.StatusCode)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			var e struct{ Error string }
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
			assert.Contains(t, e.Error, tt.wantErr)
		})
	}
}

// TestWithCaller checks the demo against the platform's own client, for
// both protocols.
func TestWithCaller(t *testing.T) {
	base, origin, logs := demo(t)
	addr := strings.TrimPrefix(base, "http://")
	var c ufop.Caller
	ctx := context.Background()

	out, err := c.Call(ctx, addr, ufop.ProtocolHandler, "mine/upper", ufop.Input{Data: []byte("abc"), MIME: "text/plain", ReqID: "req-1"})
	require.NoError(t, err)
	assert.Equal(t, ufop.Output{Data: []byte("ABC"), MIME: "text/plain; charset=utf-8"}, out)

	out, err = c.Call(ctx, addr, ufop.ProtocolHandler, "mine/echo", ufop.Input{URL: origin + "/text", MIME: "text/markdown", Size: 16})
	require.NoError(t, err)
	assert.Equal(t, ufop.Output{Data: []byte("Hello, World\nhi\n"), MIME: "text/markdown"}, out)

	out, err = c.Call(ctx, addr, ufop.ProtocolUOP, "mine/wc", ufop.Input{URL: origin + "/text", Key: "dir/a.md"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"lines":2,"words":3,"bytes":16}`, string(out.Data))

	_, err = c.Call(ctx, addr, ufop.ProtocolHandler, "ufop-demo/x", ufop.Input{Data: []byte("abc")})
	assert.Equal(t, errs.StatusProcessingFailed, errs.Status(err))
	assert.Equal(t, `ufop-demo: bad command "ufop-demo/x": unknown sub-command "x" (status 400)`, errs.Public(err))

	_, err = c.Call(ctx, addr, ufop.ProtocolUOP, "ufop-demo/md5", ufop.Input{URL: origin + "/missing"})
	assert.Equal(t, "ufop-demo: cannot fetch the input: status 404 (status 502)", errs.Public(err))

	// One log line per request, with the cmd of either protocol.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 5)
	assert.Contains(t, lines[0], `POST /handler cmd="mine/upper" status=200 bytes=3`)
	assert.Contains(t, lines[0], "reqid=req-1")
	assert.Contains(t, lines[2], `POST /uop cmd="mine/wc" status=200`)
	assert.Contains(t, lines[3], "status=400")
}

// TestGracefulShutdown cancels run while a request is in flight: the request
// completes, then run returns nil.
func TestGracefulShutdown(t *testing.T) {
	inFlight := make(chan struct{})
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inFlight)
		<-release
		io.WriteString(w, "late")
	}))
	defer origin.Close()

	logs := &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, "127.0.0.1:0", Config{MaxInput: 1 << 10, FetchTimeout: 5 * time.Second, Log: log.New(logs, "", 0)}, ready)
	}()
	addr := (<-ready).String()

	type result struct {
		out ufop.Output
		err error
	}
	res := make(chan result, 1)
	go func() {
		var c ufop.Caller
		out, err := c.Call(context.Background(), addr, ufop.ProtocolHandler, "d/upper", ufop.Input{URL: origin.URL + "/x"})
		res <- result{out, err}
	}()
	<-inFlight
	cancel()
	// The listener closes; the request in flight goes on.
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "shutting down") }, time.Minute, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 2*time.Second, 10*time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("run returned before the request finished: %v", err)
	default:
	}
	close(release)
	r := <-res
	require.NoError(t, r.err)
	assert.Equal(t, "LATE", string(r.out.Data))
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return")
	}
}

func TestSpecFile(t *testing.T) {
	data, err := os.ReadFile("ufop.yaml")
	require.NoError(t, err)
	s, err := ufop.ParseSpec(data)
	require.NoError(t, err)
	assert.Equal(t, &ufop.Spec{
		Image:       "local/busybox:1",
		BuildScript: []string{"mv $RESOURCE/ufop-demo ."},
		Run:         "./ufop-demo",
		Protocol:    ufop.ProtocolHandler,
		Health:      "/health",
		Flavor:      "C1M1",
		Concurrency: 8,
		Timeout:     30 * time.Second,
		KillTimeout: 10 * time.Second,
	}, s)
	assert.Less(t, shutdownGrace, s.KillTimeout)
}
