package ufop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingServer is an httptest server on 127.0.0.1 that counts the
// connections it accepted.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func newTestTransport(t *testing.T) (*Transport, *http.Client) {
	tr := &Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return tr, &http.Client{Transport: tr}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func hostKey(srv *httptest.Server) string { return srv.Listener.Addr().String() }

func TestTransportKeepAlive(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Query().Get("i"))
	})
	tr, c := newTestTransport(t)
	for i := range 100 {
		status, body := get(t, c, srv.URL+"/?i="+strconv.Itoa(i))
		require.Equal(t, 200, status)
		require.Equal(t, "hello "+strconv.Itoa(i), body)
	}
	assert.EqualValues(t, 1, conns.Load())
	assert.Equal(t, 1, tr.idleCount(hostKey(srv)))
}

func TestTransportConcurrent(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	tr := &Transport{MaxIdlePerHost: 8}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for g := range 50 {
		wg.Go(func() {
			for i := range 20 {
				want := strconv.Itoa(g) + "/" + strconv.Itoa(i)
				resp, err := c.Post(srv.URL, "text/plain", strings.NewReader(want))
				if err != nil {
					t.Error(err)
					failed.Add(1)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != want {
					t.Errorf("got %q, %v; want %q", b, err, want)
					failed.Add(1)
				}
				assert.LessOrEqual(t, tr.idleCount(hostKey(srv)), 8)
			}
		})
	}
	wg.Wait()
	assert.Zero(t, failed.Load())
	assert.LessOrEqual(t, tr.idleCount(hostKey(srv)), 8)
	assert.Positive(t, tr.idleCount(hostKey(srv)))
	t.Logf("%d connections for 1000 requests", conns.Load())
}

func TestTransportBodyClosedEarly(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, big)
	})
	tr, c := newTestTransport(t)
	resp, err := c.Get(srv.URL)
	require.NoError(t, err)
	_, err = io.ReadFull(resp.Body, make([]byte, 10))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	_, err = resp.Body.Read(make([]byte, 1))
	assert.ErrorIs(t, err, http.ErrBodyReadAfterClose)
	assert.Zero(t, tr.idleCount(hostKey(srv)))

	_, body := get(t, c, srv.URL)
	assert.Equal(t, len(big), len(body))
	assert.EqualValues(t, 2, conns.Load())
}

func TestTransportBodyClosedAfterFullRead(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("chunked") {
			io.WriteString(w, "hel")
			http.NewResponseController(w).Flush()
		}
		io.WriteString(w, "lo")
	})
	tr, c := newTestTransport(t)
	for _, q := range []string{"", "chunked"} {
		resp, err := c.Get(srv.URL + "/?" + q)
		require.NoError(t, err)
		want := map[string]string{"": "lo", "chunked": "hello"}[q]
		buf := make([]byte, len(want))
		// Exactly the body's length: Close finds the end without a Read
		// having returned io.EOF (for the chunked answer).
		_, err = io.ReadFull(resp.Body, buf)
		require.NoError(t, err)
		assert.Equal(t, want, string(buf))
		time.Sleep(20 * time.Millisecond) // the last chunk arrives
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, 1, tr.idleCount(hostKey(srv)), q)
	}
	assert.EqualValues(t, 1, conns.Load())
}

func TestTransportConnectionClose(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	tr, c := newTestTransport(t)
	for range 3 {
		_, body := get(t, c, srv.URL)
		assert.Equal(t, "bye", body)
		assert.Zero(t, tr.idleCount(hostKey(srv)))
	}
	assert.EqualValues(t, 3, conns.Load())

	// Asked by the request.
	srv2, conns2 := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for range 2 {
		req, _ := http.NewRequest("GET", srv2.URL, nil)
		req.Close = true
		resp, err := c.Do(req)
		require.NoError(t, err)
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	assert.EqualValues(t, 2, conns2.Load())
	assert.Zero(t, tr.idleCount(hostKey(srv2)))
}

func TestTransportHTTP10(t *testing.T) {
	addr, _ := oneShotServer(t, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
	tr, c := newTestTransport(t)
	_, body := get(t, c, "http://"+addr)
	assert.Equal(t, "ok", body)
	assert.Zero(t, tr.idleCount(addr))
}

// oneShotServer answers each connection's first request with raw and
// closes it, without saying so when raw does not. It counts connections and
// the bodies of the requests it read.
func oneShotServer(t *testing.T, raw string) (addr string, stats *oneShotStats) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	stats = &oneShotStats{}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			stats.conns.Add(1)
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				b, _ := io.ReadAll(req.Body)
				stats.mu.Lock()
				stats.bodies = append(stats.bodies, string(b))
				stats.mu.Unlock()
				io.WriteString(conn, raw)
			}()
		}
	}()
	return ln.Addr().String(), stats
}

type oneShotStats struct {
	conns  atomic.Int64
	mu     sync.Mutex
	bodies []string
}

func (s *oneShotStats) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

func TestTransportRetryOnClosedIdleConn(t *testing.T) {
	addr, stats := oneShotServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	tr, c := newTestTransport(t)
	for i := range 3 {
		resp, err := c.Post("http://"+addr, "text/plain", bytes.NewReader([]byte("body"+strconv.Itoa(i))))
		require.NoError(t, err, i)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, "ok", string(b))
		assert.Equal(t, 1, tr.idleCount(addr))
		waitIdleClosed(t, tr, addr) // the server closes the conn
	}
	assert.EqualValues(t, 3, stats.conns.Load())
	assert.Equal(t, []string{"body0", "body1", "body2"}, stats.requests())

	// Without a body, too.
	_, body := get(t, c, "http://"+addr)
	assert.Equal(t, "ok", body)
	assert.EqualValues(t, 4, stats.conns.Load())
}

func TestTransportRetryKeepAlivesDisabled(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr, c := newTestTransport(t)
	get(t, c, srv.URL)
	require.Equal(t, 1, tr.idleCount(hostKey(srv)))
	srv.Config.SetKeepAlivesEnabled(false) // closes the idle conn
	time.Sleep(20 * time.Millisecond)
	for range 2 {
		_, body := get(t, c, srv.URL)
		assert.Equal(t, "ok", body)
	}
	assert.EqualValues(t, 3, conns.Load())
	assert.Zero(t, tr.idleCount(hostKey(srv)))
}

// onceReader is a body that cannot be replayed.
type onceReader struct{ io.Reader }

func TestTransportNoRetryNonReplayable(t *testing.T) {
	addr, stats := oneShotServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	tr, c := newTestTransport(t)
	_, body := get(t, c, "http://"+addr)
	assert.Equal(t, "ok", body)
	require.Equal(t, 1, tr.idleCount(addr))
	waitIdleClosed(t, tr, addr)

	// The server closed the pooled conn: that is seen before anything is
	// written on it, so even a body that cannot be had again goes, once,
	// on a new connection.
	req, err := http.NewRequest("POST", "http://"+addr, onceReader{strings.NewReader("once")})
	require.NoError(t, err)
	require.Nil(t, req.GetBody)
	resp, err := c.Do(req)
	require.NoError(t, err)
	io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.EqualValues(t, 2, stats.conns.Load())
	assert.Equal(t, []string{"", "once"}, stats.requests())
}

func TestTransportNoRetryAfterPartialAnswer(t *testing.T) {
	var n atomic.Int64
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			io.WriteString(w, "ok")
			return
		}
		hijacker("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", false)(w, r)
	})
	_, c := newTestTransport(t)
	get(t, c, srv.URL)
	_, err := c.Get(srv.URL)
	require.Error(t, err)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.EqualValues(t, 2, n.Load())
	assert.EqualValues(t, 1, conns.Load())
}

func TestTransportContextDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/warm" {
			return
		}
		if r.URL.Path == "/mid-body" {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "12345")
			http.NewResponseController(w).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	tr, c := newTestTransport(t)
	get(t, c, srv.URL+"/warm") // a pooled conn: no retry on a deadline

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/stall", strings.NewReader("x"))
	start := time.Now()
	_, err := c.Do(req)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	var ne net.Error
	assert.True(t, errors.As(err, &ne) && ne.Timeout(), "%v", err)
	assert.Less(t, time.Since(start), time.Second)
	assert.Zero(t, tr.idleCount(hostKey(srv)))

	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	req, _ = http.NewRequestWithContext(ctx2, "GET", srv.URL+"/mid-body", nil)
	resp, err := c.Do(req)
	require.NoError(t, err)
	start = time.Now()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "12345", string(b))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second)
	assert.Zero(t, tr.idleCount(hostKey(srv)))

	// Canceled.
	ctx3, cancel3 := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel3)
	req, _ = http.NewRequestWithContext(ctx3, "GET", srv.URL+"/stall", nil)
	_, err = c.Do(req)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestTransportLargeResponse(t *testing.T) {
	const size = 8 << 20
	pattern := func(i int) byte { return byte(i*7 + i>>13) }
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("cl") {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		buf := make([]byte, 32<<10)
		for off := 0; off < size; off += len(buf) {
			for i := range buf {
				buf[i] = pattern(off + i)
			}
			w.Write(buf)
		}
	})
	tr, c := newTestTransport(t)
	for _, q := range []string{"cl", "chunked"} {
		resp, err := c.Get(srv.URL + "/?" + q)
		require.NoError(t, err)
		// Streamed: the first bytes are there before the whole answer.
		first := make([]byte, 100)
		_, err = io.ReadFull(resp.Body, first)
		require.NoError(t, err)
		rest, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		got := append(first, rest...)
		require.Len(t, got, size)
		for i := range got {
			if got[i] != pattern(i) {
				t.Fatalf("%s: byte %d is %d, want %d", q, i, got[i], pattern(i))
			}
		}
		if q == "cl" {
			assert.EqualValues(t, size, resp.ContentLength)
		} else {
			assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
		}
	}
	assert.EqualValues(t, 1, conns.Load())
	assert.Equal(t, 1, tr.idleCount(hostKey(srv)))
}

func TestTransportChunked(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		for _, s := range []string{"one ", "two ", "three"} {
			io.WriteString(w, s)
			http.NewResponseController(w).Flush()
		}
	})
	_, c := newTestTransport(t)
	for range 3 {
		resp, err := c.Get(srv.URL)
		require.NoError(t, err)
		assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, "one two three", string(b))
	}
	assert.EqualValues(t, 1, conns.Load())
}

func TestTransportNoBody(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	})
	tr, c := newTestTransport(t)
	for _, path := range []string{"/204", "/304", "/204"} {
		resp, err := c.Get(srv.URL + path)
		require.NoError(t, err)
		assert.Equal(t, path[1:], strconv.Itoa(resp.StatusCode))
		// Pooled before the body is even looked at.
		assert.Equal(t, 1, tr.idleCount(hostKey(srv)))
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Empty(t, b)
		resp.Body.Close()
	}
	resp, err := c.Head(srv.URL + "/head")
	require.NoError(t, err)
	assert.EqualValues(t, 5, resp.ContentLength)
	resp.Body.Close()
	_, body := get(t, c, srv.URL+"/get")
	assert.Equal(t, "hello", body)
	assert.EqualValues(t, 1, conns.Load())
}

func TestTransportPostBody(t *testing.T) {
	var got struct {
		body   []byte
		length int64
		te     []string
		ctype  string
	}
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		got.body, _ = io.ReadAll(r.Body)
		got.length, got.te, got.ctype = r.ContentLength, r.TransferEncoding, r.Header.Get("Content-Type")
		io.WriteString(w, "ok")
	})
	_, c := newTestTransport(t)
	for _, size := range []int{0, 1, 1024, 8 << 10, 1 << 20} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(i % 251)
		}
		resp, err := c.Post(srv.URL, "application/x-test", bytes.NewReader(body))
		require.NoError(t, err)
		io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, body, append([]byte{}, got.body...), size)
		assert.EqualValues(t, size, got.length)
		assert.Empty(t, got.te)
		assert.Equal(t, "application/x-test", got.ctype)
	}
	// Unknown length: chunked.
	resp, err := c.Post(srv.URL, "text/plain", onceReader{strings.NewReader("streamed")})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "streamed", string(got.body))
	assert.Equal(t, []string{"chunked"}, got.te)
}

func TestTransportEarlyAnswer(t *testing.T) {
	// The instance refuses a large body without reading it.
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, "too large")
	})
	_, c := newTestTransport(t)
	resp, err := c.Post(srv.URL, "application/octet-stream", bytes.NewReader(make([]byte, 32<<20)))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Equal(t, "too large", string(b))
}

func TestTransportIdleTimeout(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := &Transport{IdleTimeout: 50 * time.Millisecond}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	get(t, c, srv.URL)
	get(t, c, srv.URL)
	assert.EqualValues(t, 1, conns.Load())
	time.Sleep(100 * time.Millisecond)
	get(t, c, srv.URL)
	assert.EqualValues(t, 2, conns.Load())
}

func TestTransportErrors(t *testing.T) {
	_, c := newTestTransport(t)
	_, err := c.Get("https://127.0.0.1:1/")
	assert.ErrorContains(t, err, "unsupported URL")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	_, err = c.Post("http://"+addr, "text/plain", strings.NewReader("x"))
	assert.True(t, died(err), "%v", err)
	var op *net.OpError
	assert.ErrorAs(t, err, &op)

	tr := &Transport{}
	tr.CloseIdleConnections() // the zero value
}

func TestTransportCloseIdleConnections(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr, c := newTestTransport(t)
	get(t, c, srv.URL)
	c.CloseIdleConnections()
	assert.Zero(t, tr.idleCount(hostKey(srv)))
	get(t, c, srv.URL)
	assert.EqualValues(t, 2, conns.Load())
}

func benchmarkTransport(b *testing.B, rt http.RoundTripper) {
	answer := []byte(strings.Repeat("a", 40))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Write(answer)
	}))
	defer srv.Close()
	c := &http.Client{Transport: rt}
	defer c.CloseIdleConnections()
	body := bytes.Repeat([]byte("b"), 1024)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 512)
		for pb.Next() {
			req, err := http.NewRequest("POST", srv.URL+"/handler?cmd=x", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.ReadFull(resp.Body, buf[:41])
			resp.Body.Close()
			if n != 40 {
				b.Fatalf("read %d bytes", n)
			}
		}
	})
}

func BenchmarkTransport(b *testing.B) {
	benchmarkTransport(b, &Transport{})
}

func BenchmarkStdTransport(b *testing.B) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.MaxIdleConnsPerHost = 64
	benchmarkTransport(b, t)
}

func TestTransportReuseAfterDeadline(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr, c := newTestTransport(t)
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL, strings.NewReader("x"))
		resp, err := c.Do(req)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, "ok", string(b))
		resp.Body.Close()
		cancel() // after the answer: the conn stays usable
	}
	assert.Equal(t, 1, tr.idleCount(hostKey(srv)))
	// The deadlines of those requests are not left on the pooled conn.
	time.Sleep(100 * time.Millisecond)
	_, body := get(t, c, srv.URL)
	assert.Equal(t, "ok", body)
	assert.EqualValues(t, 1, conns.Load())
}
