package ufop

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/errs"
)

// seen is what a test instance received.
type seen struct {
	method, path string
	query        url.Values
	header       http.Header
	body         []byte
}

// recorder is an instance on 127.0.0.1 that records the request and answers
// with reply.
func recorder(t *testing.T, reply http.HandlerFunc) (addr string, got *seen) {
	t.Helper()
	got = &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		*got = seen{method: r.Method, path: r.URL.Path, query: r.URL.Query(), header: r.Header.Clone(), body: body}
		reply(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), got
}

func text(status int, ctype, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ctype == "" {
			w.Header()["Content-Type"] = nil // no sniffing by net/http
		} else {
			w.Header().Set("Content-Type", ctype)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestCallHandlerBodyAndURL(t *testing.T) {
	tests := []struct {
		name      string
		in        Input
		wantQuery url.Values
		wantBody  string
		wantFsize string
		wantCType string
	}{
		{
			name:      "body",
			in:        Input{Data: []byte("hello"), MIME: "text/plain", Size: 99, Bucket: "b", Key: "dir/a b/é.txt", ReqID: "r1"},
			wantQuery: url.Values{"cmd": {"ufop-demo/upper"}},
			wantBody:  "hello",
			wantFsize: "5", // the body's length wins
			wantCType: "text/plain",
		},
		{
			name:      "empty body",
			in:        Input{},
			wantQuery: url.Values{"cmd": {"ufop-demo/upper"}},
			wantFsize: "0",
			wantCType: "application/octet-stream",
		},
		{
			// Over inlineBody: the head and the body leave with writev.
			name:      "large body",
			in:        Input{Data: []byte(strings.Repeat("0123456789abcdef", 8<<10)), MIME: "application/x-big"},
			wantQuery: url.Values{"cmd": {"ufop-demo/upper"}},
			wantBody:  strings.Repeat("0123456789abcdef", 8<<10),
			wantFsize: "131072",
			wantCType: "application/x-big",
		},
		{
			name:      "url",
			in:        Input{URL: "http://127.0.0.1:1/get/x?e=1&token=a+b", Data: []byte("ignored"), MIME: "image/png", Size: 1234, Bucket: "b", Key: "k.png"},
			wantQuery: url.Values{"cmd": {"ufop-demo/upper"}, "url": {"http://127.0.0.1:1/get/x?e=1&token=a+b"}},
			wantFsize: "1234",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, got := recorder(t, text(200, "text/plain; charset=utf-8", "HELLO"))
			var c Caller
			out, err := c.Call(context.Background(), addr, ProtocolHandler, "ufop-demo/upper", tt.in)
			require.NoError(t, err)
			assert.Equal(t, Output{Data: []byte("HELLO"), MIME: "text/plain; charset=utf-8"}, out)

			assert.Equal(t, http.MethodPost, got.method)
			assert.Equal(t, "/handler", got.path)
			assert.Equal(t, tt.wantQuery, got.query)
			assert.Equal(t, tt.wantBody, string(got.body))
			assert.Equal(t, tt.wantFsize, got.header.Get(HeaderFsize))
			assert.Equal(t, tt.wantCType, got.header.Get("Content-Type"))
			assert.Equal(t, tt.in.Bucket, got.header.Get(HeaderBucket))
			assert.Equal(t, tt.in.MIME, got.header.Get(HeaderMimetype))
			assert.Equal(t, tt.in.ReqID, got.header.Get(HeaderReqID))
			k, err := url.PathUnescape(got.header.Get(HeaderKey))
			require.NoError(t, err)
			assert.Equal(t, tt.in.Key, k)
		})
	}
}

func TestCallHeaderEscape(t *testing.T) {
	assert.Equal(t, "dir/a.txt", headerEscape("dir/a.txt"))
	assert.Equal(t, "a%20b/%C3%A9%0A%25", headerEscape("a b/é\n%"))
	for _, s := range []string{"", "x", "a b/é\n%\x00\x7f", "100%25"} {
		back, err := url.PathUnescape(headerEscape(s))
		require.NoError(t, err)
		assert.Equal(t, s, back)
	}
}

func TestCallUOP(t *testing.T) {
	addr, got := recorder(t, text(200, "application/json", `{"ok":true}`))
	in := Input{URL: "http://127.0.0.1:1/get/N9Bc?e=1", MIME: "image/png", Size: 760935, Bucket: "rwxf", Key: "a/b/1.png", ReqID: "r2"}
	var c Caller
	out, err := c.Call(context.Background(), addr, ProtocolUOP, "print/x/1", in)
	require.NoError(t, err)
	assert.Equal(t, Output{Data: []byte(`{"ok":true}`), MIME: "application/json"}, out)

	assert.Equal(t, http.MethodPost, got.method)
	assert.Equal(t, "/uop", got.path)
	assert.Empty(t, got.query)
	assert.Equal(t, "application/json", got.header.Get("Content-Type"))
	assert.Equal(t, "r2", got.header.Get(HeaderReqID))
	assert.JSONEq(t, `{"cmd":"print/x/1","src":{"url":"http://127.0.0.1:1/get/N9Bc?e=1",
		"mimetype":"image/png","fsize":760935,"bucket":"rwxf","key":"1.png"}}`, string(got.body))
	var req UOPRequest
	require.NoError(t, json.Unmarshal(got.body, &req))
	assert.Equal(t, "1.png", req.Src.Key)
}

func TestCallBadArguments(t *testing.T) {
	var c Caller
	ctx := context.Background()
	_, err := c.Call(ctx, "127.0.0.1:1", ProtocolUOP, "demo/x", Input{Data: []byte("x")})
	assert.Equal(t, http.StatusInternalServerError, errs.Status(err))
	assert.Contains(t, errs.Public(err), "needs an input URL")

	_, err = c.Call(ctx, "127.0.0.1:1", "grpc", "demo/x", Input{URL: "http://x"})
	assert.Equal(t, http.StatusInternalServerError, errs.Status(err))

	_, err = c.Call(ctx, "", ProtocolHandler, "demo/x", Input{})
	assert.Equal(t, http.StatusInternalServerError, errs.Status(err))
}

func TestCallBaseURLAddr(t *testing.T) {
	addr, got := recorder(t, text(200, "text/plain", "ok"))
	var c Caller
	_, err := c.Call(context.Background(), "http://"+addr+"/", ProtocolHandler, "demo", Input{URL: "http://u"})
	require.NoError(t, err)
	assert.Equal(t, "/handler", got.path)
}

func TestCallMIMEWithNewline(t *testing.T) {
	// A content type cannot end the header block early: it is sent as
	// octet-stream, and escaped in X-Qiniu-Mimetype.
	addr, got := recorder(t, text(200, "text/plain", "ok"))
	var c Caller
	_, err := c.Call(context.Background(), addr, ProtocolHandler, "demo", Input{Data: []byte("x"), MIME: "text/plain\r\nX-Evil: 1"})
	require.NoError(t, err)
	assert.Equal(t, "application/octet-stream", got.header.Get("Content-Type"))
	assert.Equal(t, "text/plain%0D%0AX-Evil:%201", got.header.Get(HeaderMimetype))
	assert.Empty(t, got.header.Get("X-Evil"))
}

func TestSplitAddr(t *testing.T) {
	tests := []struct {
		addr, host, prefix string
		bad                bool
	}{
		{addr: "10.0.0.1:9100", host: "10.0.0.1:9100"},
		{addr: "[::1]:9100", host: "[::1]:9100"},
		{addr: "http://10.0.0.1:9100", host: "10.0.0.1:9100"},
		{addr: "http://10.0.0.1:9100/", host: "10.0.0.1:9100"},
		{addr: "http://10.0.0.1:9100/p/q/", host: "10.0.0.1:9100", prefix: "/p/q"},
		{addr: "http://inst", host: "inst:80"},
		{addr: "", bad: true},
		{addr: "inst", bad: true},
		{addr: "https://10.0.0.1:9100", bad: true},
		{addr: "http://10.0.0.1:9100/?x=1", bad: true},
		{addr: "http://u:p@10.0.0.1:9100", bad: true},
		{addr: "http://a b", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			host, prefix, err := splitAddr(tt.addr)
			if tt.bad {
				require.Error(t, err)
				assert.Equal(t, http.StatusInternalServerError, errs.Status(err))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.host, host)
			assert.Equal(t, tt.prefix, prefix)
		})
	}
}

func TestCallSniffsMIME(t *testing.T) {
	png := "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
	addr, _ := recorder(t, text(200, "", png))
	var c Caller
	out, err := c.Call(context.Background(), addr, ProtocolHandler, "demo/png", Input{})
	require.NoError(t, err)
	assert.Equal(t, "image/png", out.MIME)
	assert.Equal(t, png, string(out.Data))
}

func TestCallErrorAnswers(t *testing.T) {
	long := strings.Repeat("é", 600)
	tests := []struct {
		name       string
		reply      http.HandlerFunc
		wantMsg    string
		wantStatus int // the instance's
		wantUOPMsg string
	}{
		{"json", text(400, "application/json", `{"error":"bad command \"x\""}`),
			`ufop-demo: bad command "x" (status 400)`, 400, `bad command "x"`},
		{"json without content type", text(500, "", ` {"error":"cannot decode"}`),
			`ufop-demo: cannot decode (status 500)`, 500, "cannot decode"},
		{"json message field", text(422, "application/json", `{"code":1,"message":"no"}`),
			`ufop-demo: no (status 422)`, 422, "no"},
		{"json object error", text(400, "application/json", `{"error":{"reason":"x"}}`),
			`ufop-demo: {"reason":"x"} (status 400)`, 400, `{"reason":"x"}`},
		{"text", text(500, "text/plain", "  something broke\n\tbadly\n"),
			"ufop-demo: something broke badly (status 500)", 500, "something broke badly"},
		{"json-looking text", text(500, "text/plain", "{not json"),
			"ufop-demo: {not json (status 500)", 500, "{not json"},
		{"empty", text(503, "", ""), "ufop-demo: status 503", 503, ""},
		{"redirects are not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, "ufop-demo: status 302", 302, ""},
		{"long text is capped", text(500, "text/plain", long),
			"ufop-demo: " + strings.Repeat("é", 254) + "… (status 500)", 500, strings.Repeat("é", 254) + "…"},
		{"binary", text(500, "application/octet-stream", "a\x00b\xffc"),
			"ufop-demo: a b\uFFFDc (status 500)", 500, "a b\uFFFDc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := recorder(t, tt.reply)
			var c Caller
			_, err := c.Call(context.Background(), addr, ProtocolHandler, "ufop-demo/x", Input{Data: []byte("in")})
			require.Error(t, err)
			assert.Equal(t, errs.StatusProcessingFailed, errs.Status(err))
			assert.Equal(t, tt.wantMsg, errs.Public(err))
			var ue *UOPError
			require.ErrorAs(t, err, &ue)
			assert.Equal(t, tt.wantStatus, ue.Status)
			assert.Equal(t, tt.wantUOPMsg, ue.Message)
			assert.LessOrEqual(t, len(ue.Message), MaxErrorMessage)
			assert.NotErrorIs(t, err, ErrInstanceDied)
		})
	}
}

// hijacker answers by writing raw bytes on the connection and closing it.
func hijacker(raw string, reset bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		buf.WriteString(raw)
		buf.Flush()
		if tc, ok := conn.(*net.TCPConn); ok && reset {
			tc.SetLinger(0) // close with a reset
		}
		conn.Close()
	}
}

func TestCallInstanceDied(t *testing.T) {
	// A port where nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name  string
		reply http.HandlerFunc // nil: refused
	}{
		{"connection refused", nil},
		{"closed before answering", hijacker("", false)},
		{"reset before answering", hijacker("", true)},
		{"reset mid-body", hijacker("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", true)},
		{"closed mid-body", hijacker("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly ten b", false)},
		{"closed mid-chunk", hijacker("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\nabc", false)},
		{"closed mid-header", hijacker("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n", false)},
		{"closed mid-error-body", hijacker("HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\nonly", false)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := refused
			if tt.reply != nil {
				addr, _ = recorder(t, tt.reply)
			}
			for _, proto := range []Protocol{ProtocolHandler, ProtocolUOP} {
				var c Caller
				_, err := c.Call(context.Background(), addr, proto, "ufop-demo/x", Input{URL: "http://127.0.0.1:1/in", Data: []byte("in")})
				require.Error(t, err, proto)
				if tt.name == "closed mid-error-body" {
					// The status line arrived: the instance's answer is
					// reported, with what could be read of its message.
					assert.Equal(t, "ufop-demo: only (status 500)", errs.Public(err))
					continue
				}
				assert.ErrorIs(t, err, ErrInstanceDied, "%s: %v", proto, err)
				assert.Equal(t, errs.StatusProcessingFailed, errs.Status(err))
				assert.Equal(t, "ufop-demo: instance died mid-request", errs.Public(err))
			}
		})
	}
}

func TestCallMalformedAnswer(t *testing.T) {
	addr, _ := recorder(t, hijacker("SSH-2.0-OpenSSH\r\n", false))
	var c Caller
	_, err := c.Call(context.Background(), addr, ProtocolHandler, "ufop-demo/x", Input{})
	assert.Equal(t, errs.StatusProcessingFailed, errs.Status(err))
	assert.Equal(t, "ufop-demo: calling the ufop failed", errs.Public(err))
	assert.NotErrorIs(t, err, ErrInstanceDied)
}

func TestCallDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	addr, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var c Caller
	start := time.Now()
	_, err := c.Call(ctx, addr, ProtocolHandler, "ufop-demo/slow", Input{Data: []byte("x")})
	require.Error(t, err)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, http.StatusGatewayTimeout, errs.Status(err))
	assert.Equal(t, "ufop-demo: ufop timed out", errs.Public(err))
	assert.NotErrorIs(t, err, ErrInstanceDied)
}

func TestCallDeadlineMidBody(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	addr, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "12345")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var c Caller
	_, err := c.Call(ctx, addr, ProtocolHandler, "ufop-demo/slow", Input{Data: []byte("x")})
	assert.Equal(t, http.StatusGatewayTimeout, errs.Status(err), "%v", err)
}

func TestCallCanceled(t *testing.T) {
	addr, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	var c Caller
	_, err := c.Call(ctx, addr, ProtocolHandler, "ufop-demo/x", Input{})
	assert.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, ErrInstanceDied)
}

func TestCallOutputCap(t *testing.T) {
	chunked := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for i := range len(body) {
				io.WriteString(w, body[i:i+1])
				http.NewResponseController(w).Flush()
			}
		}
	}
	tests := []struct {
		name  string
		reply http.HandlerFunc
		ok    bool
	}{
		{"at the cap", text(200, "text/plain", "0123456789"), true},
		{"over with content-length", text(200, "text/plain", "0123456789A"), false},
		{"at the cap chunked", chunked("0123456789"), true},
		{"over chunked", chunked("0123456789AB"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := recorder(t, tt.reply)
			c := Caller{MaxOutput: 10}
			out, err := c.Call(context.Background(), addr, ProtocolHandler, "ufop-demo/big", Input{})
			if tt.ok {
				require.NoError(t, err)
				assert.Equal(t, "0123456789", string(out.Data))
				return
			}
			assert.Equal(t, errs.StatusProcessingFailed, errs.Status(err))
			assert.Equal(t, "ufop-demo: output is too large (over 10 bytes)", errs.Public(err))
			assert.False(t, errors.Is(err, ErrInstanceDied))
		})
	}
}

func TestCallCustomClient(t *testing.T) {
	addr, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
	})
	c := Caller{HTTP: &http.Client{Timeout: 50 * time.Millisecond}}
	_, err := c.Call(context.Background(), addr, ProtocolHandler, "ufop-demo/x", Input{})
	assert.Equal(t, http.StatusGatewayTimeout, errs.Status(err), "%v", err)
}

// BenchmarkCall is the gateway's hot path to an instance: a handler call
// with a 900-byte body and a small answer, with a request deadline.
func BenchmarkCall(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"hash":"aadc2d89de06297b577b2af074073de1"}`)
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	in := Input{Data: []byte(strings.Repeat("x", 900)), MIME: "text/plain", Bucket: "files", Key: "small.txt", ReqID: "D6KPmS_XWQzmDNNZ"}
	var c Caller
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, err := c.Call(ctx, addr, ProtocolHandler, "demo/md5", in)
			cancel()
			if err != nil || len(out.Data) != 43 {
				b.Fatal(err, len(out.Data))
			}
		}
	})
}
