package gateway

// Connection limits at accept. A connection holds a goroutine, buffers and
// a file descriptor whether or not it sends anything, so a client that
// opens many, or opens them and sends slowly (slowloris), can exhaust a
// gateway without a single request reaching admission. Each connection
// takes a slot of the gateway (Config.MaxConns) and one of its client
// address (Config.MaxConnsPerIP) when it is accepted, and gives both back
// when it closes, whichever front closes it; the header and idle timeouts
// (Config.HeaderTimeout, Config.IdleTimeout) bound how long a slot is held
// by a client that sends nothing.
//
// Over a limit the connection is answered a fixed 503 in Qiniu's form and
// closed at once, on the accept loop: the answer is one write of a few
// hundred bytes into a new socket's empty buffer, under a write deadline,
// so a refusal costs about what the accept did. imgproxy's
// IMGPROXY_MAX_CLIENTS (x/net/netutil.LimitListener) blocks accepting
// instead, which leaves new clients in the kernel's backlog with no answer
// and no per-address fairness. The request is not read: a client that has
// already sent it may see a reset instead of the 503, as with any server
// that closes with unread input.

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qufop/qufop/errs"
)

// Reasons a connection is refused (the reason label of
// connections_refused_total).
const (
	refusedMaxConns      = "max_conns"
	refusedMaxConnsPerIP = "max_conns_per_ip"
)

// refuseWriteTimeout bounds the write of a refusal.
const refuseWriteTimeout = time.Second

// ipv6ClientBits is the prefix of an IPv6 client address that counts as
// one client: a /64 is the smallest block a site is given, and one host
// can pick any address inside it.
const ipv6ClientBits = 64

// clientKey is the client a connection from addr counts against: its IPv4
// address, or the /64 of its IPv6 address (an IPv4-mapped one is IPv4).
// ok is false for addresses that are not IP (a pipe, a Unix socket), which
// only the gateway-wide limit applies to.
func clientKey(addr net.Addr) (key netip.Prefix, ok bool) {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, ok = netip.AddrFromSlice(a.IP)
	default:
		ap, err := netip.ParseAddrPort(addr.String())
		ip, ok = ap.Addr(), err == nil
	}
	if !ok {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32), true
	}
	p, err := ip.Prefix(ipv6ClientBits)
	return p, err == nil
}

// clientName is key as a message shows it: the address alone for IPv4.
func clientName(key netip.Prefix) string {
	if key.Addr().Is4() {
		return key.Addr().String()
	}
	return key.String()
}

// connLimiter counts open connections, in all and per client. A limit of 0
// is no limit. One mutex: it is taken twice per connection, not per
// request.
type connLimiter struct {
	max, perIP int

	mu    sync.Mutex
	open  int
	perCl map[netip.Prefix]int
}

func newConnLimiter(max, perIP int) *connLimiter {
	return &connLimiter{max: max, perIP: perIP, perCl: map[netip.Prefix]int{}}
}

// acquire takes a slot for a connection of client key (keyed: key is an IP
// client). It returns the reason it refused, "" when it took the slot.
func (l *connLimiter) acquire(key netip.Prefix, keyed bool) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.open >= l.max {
		return refusedMaxConns
	}
	if keyed {
		if l.perIP > 0 && l.perCl[key] >= l.perIP {
			return refusedMaxConnsPerIP
		}
		l.perCl[key]++
	}
	l.open++
	return ""
}

// release gives back a slot acquire took.
func (l *connLimiter) release(key netip.Prefix, keyed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if keyed {
		if n := l.perCl[key] - 1; n > 0 {
			l.perCl[key] = n
		} else {
			delete(l.perCl, key)
		}
	}
}

// Open is the number of open connections.
func (l *connLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// refusal is the error a refused connection is answered with.
func (l *connLimiter) refusal(reason string, key netip.Prefix) error {
	if reason == refusedMaxConnsPerIP {
		return errs.New(http.StatusServiceUnavailable, "too many connections from %s (limit %d)", clientName(key), l.perIP)
	}
	return errs.New(http.StatusServiceUnavailable, "too many connections to this gateway (limit %d)", l.max)
}

// limitListener applies a connLimiter to the connections of a listener.
type limitListener struct {
	net.Listener
	lim      *connLimiter
	refused  func(reason string)
	timedOut func(phase string)
}

// Accept returns the next connection within the limits; the ones over them
// are answered and closed on the way.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, keyed := clientKey(c.RemoteAddr())
		if reason := l.lim.acquire(key, keyed); reason != "" {
			l.refused(reason)
			refuse(c, l.lim.refusal(reason, key))
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.lim.release(key, keyed) }, timedOut: l.timedOut}, nil
	}
}

// refuse answers c with err as an HTTP response and closes it.
func refuse(c net.Conn, err error) {
	st, msg := errorAnswer(err)
	body, _ := json.Marshal(msg)
	resp := "HTTP/1.1 " + strconv.Itoa(st) + " " + http.StatusText(st) + "\r\n" +
		"Content-Type: application/json; charset=utf-8\r\n" +
		"Cache-Control: no-store\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)
	_ = c.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	_, _ = io.WriteString(c, resp)
	_ = c.Close()
}

// limitedConn gives its slot back when it is closed, once however often
// the fronts close it, and counts read timeouts by phase: "idle" when the
// connection had answered and nothing came since, "header" otherwise (a
// request that did not arrive in time).
type limitedConn struct {
	net.Conn
	release  func()
	timedOut func(phase string)

	closeOnce sync.Once
	// answered: written to since the last read of a request's bytes.
	answered atomic.Bool
	// aborting: the read deadline was set in the past, which is how
	// net/http and fasthttp interrupt their own reads; such a "timeout" is
	// not the client's.
	aborting atomic.Bool
	counted  atomic.Bool
}

func (c *limitedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.answered.Store(false)
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.aborting.Load() && c.counted.CompareAndSwap(false, true) {
		phase := "header"
		if c.answered.Load() {
			phase = "idle"
		}
		c.timedOut(phase)
	}
	return n, err
}

func (c *limitedConn) Write(p []byte) (int, error) {
	c.answered.Store(true)
	return c.Conn.Write(p)
}

// ReadFrom keeps the sendfile path of plain downloads (net/http uses it
// when the connection has it).
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	c.answered.Store(true)
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *limitedConn) SetReadDeadline(t time.Time) error {
	c.aborting.Store(!t.IsZero() && t.Before(time.Now()))
	return c.Conn.SetReadDeadline(t)
}

func (c *limitedConn) SetDeadline(t time.Time) error {
	c.aborting.Store(!t.IsZero() && t.Before(time.Now()))
	return c.Conn.SetDeadline(t)
}

func (c *limitedConn) Close() error {
	c.closeOnce.Do(c.release)
	return c.Conn.Close()
}
