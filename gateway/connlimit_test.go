package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/fop"
)

func TestClientKey(t *testing.T) {
	cases := []struct {
		addr  net.Addr
		want  string // "" when not keyed
		shown string
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5}, "127.0.0.1/32", "127.0.0.1"},
		{&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3).To4(), Port: 5}, "10.1.2.3/32", "10.1.2.3"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 80}, "192.0.2.7/32", "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 80}, "2001:db8:1:2::/64", "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::1"), Port: 81}, "2001:db8:1:2::/64", "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 80, Zone: "eth0"}, "fe80::/64", "fe80::/64"},
		{&net.UDPAddr{IP: net.ParseIP("192.0.2.9"), Port: 1}, "192.0.2.9/32", "192.0.2.9"}, // by its string
		{&net.UnixAddr{Name: "/tmp/s", Net: "unix"}, "", ""},
		{pipeAddr{}, "", ""},
	}
	for _, c := range cases {
		t.Run(c.addr.String(), func(t *testing.T) {
			key, ok := clientKey(c.addr)
			if c.want == "" {
				assert.False(t, ok, "keyed as %s", key)
				return
			}
			require.True(t, ok)
			assert.Equal(t, c.want, key.String())
			assert.Equal(t, c.shown, clientName(key))
		})
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func TestConnLimiter(t *testing.T) {
	a := netip.MustParsePrefix("127.0.0.1/32")
	b := netip.MustParsePrefix("127.0.0.2/32")
	type op struct {
		release bool
		key     netip.Prefix
		keyed   bool
		want    string // acquire's answer
	}
	acq := func(k netip.Prefix, want string) op { return op{key: k, keyed: true, want: want} }
	rel := func(k netip.Prefix) op { return op{release: true, key: k, keyed: true} }
	cases := []struct {
		name       string
		max, perIP int
		ops        []op
		open       int
	}{
		{"per address", 0, 2, []op{acq(a, ""), acq(a, ""), acq(a, refusedMaxConnsPerIP), acq(b, ""), acq(b, ""), acq(b, refusedMaxConnsPerIP)}, 4},
		{"release frees the address's slot", 0, 1, []op{acq(a, ""), acq(a, refusedMaxConnsPerIP), rel(a), acq(a, ""), acq(b, "")}, 2},
		{"gateway-wide", 3, 0, []op{acq(a, ""), acq(b, ""), acq(a, ""), acq(b, refusedMaxConns), rel(a), acq(b, "")}, 3},
		{"gateway limit before the address's", 2, 1, []op{acq(a, ""), acq(b, ""), acq(a, refusedMaxConns)}, 2},
		{"a refusal takes no slot", 2, 1, []op{acq(a, ""), acq(a, refusedMaxConnsPerIP), acq(a, refusedMaxConnsPerIP), acq(b, "")}, 2},
		{"no limits", 0, 0, []op{acq(a, ""), acq(a, ""), acq(a, ""), acq(b, "")}, 4},
		{"unkeyed: only the gateway's", 2, 1, []op{{want: ""}, {want: ""}, {want: refusedMaxConns}}, 2},
		{"unkeyed beside keyed", 0, 1, []op{{want: ""}, {want: ""}, acq(a, ""), acq(a, refusedMaxConnsPerIP)}, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newConnLimiter(c.max, c.perIP)
			for i, o := range c.ops {
				if o.release {
					l.release(o.key, o.keyed)
					continue
				}
				assert.Equal(t, o.want, l.acquire(o.key, o.keyed), "op %d", i)
			}
			assert.Equal(t, c.open, l.Open())
		})
	}
}

// Many goroutines taking and giving back slots never hold more than the
// limits, and leave nothing behind.
func TestConnLimiterConcurrent(t *testing.T) {
	const max, perIP, clients, workers, rounds = 12, 5, 4, 16, 500
	l := newConnLimiter(max, perIP)
	keys := make([]netip.Prefix, clients)
	for i := range keys {
		keys[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)}), 32)
	}
	var total atomic.Int64
	held := make([]atomic.Int64, clients)
	var over atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				k := (w + r) % clients
				if l.acquire(keys[k], true) != "" {
					continue
				}
				if held[k].Add(1) > perIP || total.Add(1) > max {
					over.Add(1)
				}
				held[k].Add(-1)
				total.Add(-1)
				l.release(keys[k], true)
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, over.Load(), "slots held over a limit")
	assert.Zero(t, l.Open())
	assert.Empty(t, l.perCl)
}

func TestLimitedConnReleasesOnce(t *testing.T) {
	l := newConnLimiter(0, 1)
	key := netip.MustParsePrefix("127.0.0.1/32")
	require.Empty(t, l.acquire(key, true))
	a, b := net.Pipe()
	defer b.Close()
	c := &limitedConn{Conn: a, release: func() { l.release(key, true) }, timedOut: func(string) {}}
	require.NoError(t, c.Close())
	_ = c.Close() // net/http and fasthttp may both close a handed-over connection
	assert.Zero(t, l.Open())
	assert.Empty(t, l.acquire(key, true), "the address's slot is free again")
	assert.Equal(t, refusedMaxConnsPerIP, l.acquire(key, true), "and only one")
}

func TestConfigValidateConnLimits(t *testing.T) {
	c := NewDefaultConfig()
	c.MaxConns, c.MaxConnsPerIP, c.HeaderTimeout, c.IdleTimeout = -1, -1, 0, -time.Second
	err := c.Validate()
	require.Error(t, err)
	for _, want := range []string{"max conns must", "max conns per ip", "header timeout", "idle timeout"} {
		assert.Contains(t, err.Error(), want)
	}
	c = NewDefaultConfig()
	c.MaxConns, c.MaxConnsPerIP = 0, 0 // no limits
	assert.NoError(t, c.Validate())
}

// servingWith starts a gateway with the echo UFOP and a built-in command,
// configured by mod, on a loopback listener.
// stop ends it and waits for Serve to return.
func servingWith(t *testing.T, mod func(*Config)) (addr string, srv *Server, stop func()) {
	t.Helper()
	cfg := NewDefaultConfig()
	mod(&cfg)
	srv, err := New(cfg, smallBucket(t), fop.Registry{"upper": upper()}, nil, WithUFOPs(echoUFOP{}, func(string) string { return "admin" }))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cancel, done := start(srv, ln)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("Serve did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), srv, stop
}

// dialFrom opens a connection to addr from local address from (any
// 127.0.0.0/8 address is this machine's on Linux).
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	// A safety net against a hung test, not a timing assertion.
	require.NoError(t, c.SetDeadline(time.Now().Add(60*time.Second)))
	return c
}

// connExchange sends req on c and reads the answer, body included.
func connExchange(t *testing.T, c net.Conn, br *bufio.Reader, req string) (*http.Response, string) {
	t.Helper()
	_, err := io.WriteString(c, req)
	require.NoError(t, err)
	return readAnswer(t, br)
}

func readAnswer(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// waitClosed reads c until the server closes it (EOF or a reset), failing
// on the safety deadline.
func waitClosed(t *testing.T, c net.Conn, r io.Reader) {
	t.Helper()
	_, err := io.Copy(io.Discard, r)
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		t.Fatalf("the gateway did not close the connection")
	}
}

// counter is the value of the series name{label=value} of srv.
func counter(t *testing.T, srv *Server, name, value string) float64 {
	t.Helper()
	mfs, err := srv.m.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 0 {
				return m.GetGauge().GetValue()
			}
			if m.GetLabel()[0].GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func waitOpen(t *testing.T, srv *Server, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return srv.conns.Open() == n }, 30*time.Second, 5*time.Millisecond,
		"open connections: %d, want %d", srv.conns.Open(), n)
}

// Connections over the per-address limit and over the gateway's are
// answered 503 in Qiniu's form and counted, while another address is
// still served; closing connections frees their slots, whichever front
// had them.
func TestConnectionLimits(t *testing.T) {
	for _, fast := range []bool{true, false} {
		name := map[bool]string{true: "fast front", false: "net/http only"}[fast]
		t.Run(name, func(t *testing.T) {
			addr, srv, stop := servingWith(t, func(c *Config) {
				c.FastFront, c.MaxConns, c.MaxConnsPerIP = fast, 5, 3
				c.HeaderTimeout = time.Minute // the idle clients below hold their slots
			})
			// Three silent clients from 127.0.0.1 hold its slots.
			var silent []net.Conn
			for range 3 {
				silent = append(silent, dialFrom(t, "127.0.0.1", addr))
			}
			waitOpen(t, srv, 3)

			over := dialFrom(t, "127.0.0.1", addr)
			resp, body := readAnswer(t, bufio.NewReader(over))
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			assert.JSONEq(t, `{"code":503,"error":"too many connections from 127.0.0.1 (limit 3)"}`, body)
			assert.True(t, resp.Close, "Connection: close")
			assert.Equal(t, 1.0, counter(t, srv, "qufop_gateway_connections_refused_total", refusedMaxConnsPerIP))

			// Another address is served meanwhile, on both kinds of
			// request (the fast front's and net/http's), on one connection.
			other := dialFrom(t, "127.0.0.2", addr)
			obr := bufio.NewReader(other)
			resp, body = connExchange(t, other, obr, get("/files/small.txt?demo/md5"))
			assert.Equal(t, http.StatusOK, resp.StatusCode, body)
			resp, body = connExchange(t, other, obr, get("/files/small.txt"))
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "hello", body)
			other2 := dialFrom(t, "127.0.0.2", addr)
			waitOpen(t, srv, 5)

			full := dialFrom(t, "127.0.0.3", addr)
			resp, body = readAnswer(t, bufio.NewReader(full))
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			assert.JSONEq(t, `{"code":503,"error":"too many connections to this gateway (limit 5)"}`, body)
			assert.Equal(t, 1.0, counter(t, srv, "qufop_gateway_connections_refused_total", refusedMaxConns))
			assert.Equal(t, 1.0, counter(t, srv, "qufop_gateway_connections_refused_total", refusedMaxConnsPerIP))
			assert.Equal(t, 5.0, counter(t, srv, "qufop_gateway_connections_open", ""))

			// Closing a silent client frees a slot of 127.0.0.1.
			silent[0].Close()
			waitOpen(t, srv, 4)
			again := dialFrom(t, "127.0.0.1", addr)
			resp, _ = connExchange(t, again, bufio.NewReader(again), get("/files/small.txt?upper"))
			assert.Equal(t, http.StatusOK, resp.StatusCode)

			// Every slot is given back exactly once (a second release
			// would leave the count below zero once all is closed).
			for _, c := range append(silent, other, other2, again) {
				c.Close()
			}
			waitOpen(t, srv, 0)
			stop()
			assert.Zero(t, srv.conns.Open())
			assert.Empty(t, srv.conns.perCl)
		})
	}
}

// A connection is released once, by whichever front closes it: the fast
// front, net/http, or net/http after the fast front handed it over.
func TestConnectionReleasedByEitherFront(t *testing.T) {
	cases := []struct {
		name string
		reqs []string
	}{
		{"fast front", []string{get("/files/small.txt?demo/md5")}},
		{"net/http", []string{get("/files/small.txt")}},
		{"handed over", []string{get("/files/small.txt?demo/md5"), get("/files/small.txt")}},
		{"nothing sent", nil},
		{"closed by the server", []string{"GET /files/small.txt?demo/md5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr, srv, stop := servingWith(t, func(c *Config) { c.MaxConnsPerIP = 1 })
			for round := range 2 { // the second finds the address's one slot free
				conn := dialFrom(t, "127.0.0.1", addr)
				br := bufio.NewReader(conn)
				for _, r := range c.reqs {
					resp, body := connExchange(t, conn, br, r)
					require.Equal(t, http.StatusOK, resp.StatusCode, "round %d: %s", round, body)
				}
				if len(c.reqs) == 0 {
					waitOpen(t, srv, 1)
				}
				conn.Close()
				waitOpen(t, srv, 0)
			}
			stop()
			assert.Zero(t, srv.conns.Open())
		})
	}
}

// Slow clients do not keep their connections: a request line or header
// sent a byte at a time is cut at the header timeout, on the routing read,
// on either front and on a kept-alive connection's later request; a
// connection with nothing after its answer at the idle timeout. Each is
// counted by phase, and the slots come back.
func TestSlowloris(t *testing.T) {
	const ufopReq = "GET /files/small.txt?demo/md5 HTTP/1.1\r\nHost: x\r\n"
	const stdReq = "GET /files/small.txt HTTP/1.1\r\nHost: x\r\n"
	cases := []struct {
		name   string
		fast   bool
		idle   bool     // short idle timeout, long header timeout; else the other way
		before []string // whole requests answered first
		slow   string   // then sent, and one more byte every while
		phase  string
	}{
		{"request line, routing", true, false, nil, "GET /files/sma", "header"},
		{"request line, net/http only", false, false, nil, "GET /files/sma", "header"},
		{"header, fast front", true, false, nil, ufopReq, "header"},
		{"header, net/http", true, false, nil, stdReq, "header"},
		{"header, net/http only", false, false, nil, stdReq, "header"},
		{"second request's header, fast front", true, false, []string{ufopReq + "\r\n"}, ufopReq, "header"},
		{"second request's header, net/http", true, false, []string{stdReq + "\r\n"}, stdReq, "header"},
		{"second request's header, handed over", true, false, []string{ufopReq + "\r\n", stdReq + "\r\n"}, stdReq, "header"},
		{"idle, fast front", true, true, []string{ufopReq + "\r\n"}, "", "idle"},
		{"idle, net/http", true, true, []string{stdReq + "\r\n"}, "", "idle"},
		{"idle, net/http only", false, true, []string{stdReq + "\r\n"}, "", "idle"},
	}
	const clients = 3
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr, srv, _ := servingWith(t, func(cfg *Config) {
				cfg.FastFront, cfg.MaxConnsPerIP = c.fast, clients
				// The timeout under test is short, the other far longer
				// than any test: only the one under test can close.
				cfg.HeaderTimeout, cfg.IdleTimeout = 200*time.Millisecond, 10*time.Minute
				if c.idle {
					cfg.HeaderTimeout, cfg.IdleTimeout = 10*time.Minute, 200*time.Millisecond
				}
			})
			stop := make(chan struct{})
			var wg sync.WaitGroup
			t.Cleanup(func() { close(stop); wg.Wait() })
			var clientConns []net.Conn
			var readers []*bufio.Reader
			for range clients {
				conn := dialFrom(t, "127.0.0.1", addr)
				br := bufio.NewReader(conn)
				for _, r := range c.before {
					resp, body := connExchange(t, conn, br, r)
					require.Equal(t, http.StatusOK, resp.StatusCode, body)
				}
				if c.slow != "" {
					_, err := io.WriteString(conn, c.slow)
					require.NoError(t, err)
					wg.Add(1)
					go func() { // one byte every while, until the gateway closes
						defer wg.Done()
						tick := time.NewTicker(20 * time.Millisecond)
						defer tick.Stop()
						for {
							select {
							case <-stop:
								return
							case <-tick.C:
								if _, err := io.WriteString(conn, "X"); err != nil {
									return
								}
							}
						}
					}()
				}
				clientConns, readers = append(clientConns, conn), append(readers, br)
			}
			for i, conn := range clientConns {
				waitClosed(t, conn, readers[i])
			}
			waitOpen(t, srv, 0)
			assert.Equal(t, float64(clients), counter(t, srv, "qufop_gateway_connections_timed_out_total", c.phase))
			other := map[string]string{"header": "idle", "idle": "header"}[c.phase]
			assert.Zero(t, counter(t, srv, "qufop_gateway_connections_timed_out_total", other))
			if c.before == nil && c.slow == "GET /files/sma" && c.fast {
				// A request line cut by the timeout goes to no front (it
				// would wait there for a second header timeout).
				assert.Empty(t, conns(t, srv), "routed")
			}

			// The address's slots are free again.
			conn := dialFrom(t, "127.0.0.1", addr)
			resp, _ := connExchange(t, conn, bufio.NewReader(conn), get("/files/small.txt"))
			assert.Equal(t, http.StatusOK, resp.StatusCode)
		})
	}
}

// The refusal is a complete HTTP response a client library reads.
func TestRefusalIsHTTP(t *testing.T) {
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		refuse(a, newConnLimiter(0, 7).refusal(refusedMaxConnsPerIP, netip.MustParsePrefix("2001:db8::/64")))
	}()
	resp, err := http.ReadResponse(bufio.NewReader(b), nil)
	require.NoError(t, err)
	var e struct {
		Code  int    `json:"code"`
		Error string `json:"error"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	assert.Equal(t, 503, e.Code)
	assert.Equal(t, "too many connections from 2001:db8::/64 (limit 7)", e.Error)
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	<-done
	_, err = b.Read(make([]byte, 1))
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed), "closed after the answer: %v", err)
}
