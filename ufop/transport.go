package ufop

// Transport is a lean HTTP/1.1 client for calling instances. A CPU profile
// of the gateway showed net/http.Transport's per-connection goroutines
// (readLoop/writeLoop), their channel hand-offs and allocations costing a
// large share of each call. Instances are plain-HTTP peers on the cluster
// network answering small requests, so this transport does the whole round
// trip on the caller's goroutine: no proxy, TLS, HTTP/2 or compression.
//
// A step is delivered once. Without a goroutine reading each idle
// connection, the transport cannot see an instance close one while it idles
// the way net/http does; instead it peeks at a pooled connection (one
// non-blocking recv, see alive) before writing on it, and resends a request
// only when nothing of it was written, or when it is idempotent (net/http's
// rule): a POST the instance read before it died is never sent to another.
// Idle connections are closed past IdleTimeout by a sweep, not only when
// their host is called again, and Forget drops those of instances that are
// gone, so none is left in CLOSE_WAIT.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Defaults of Transport.
const (
	DefaultMaxIdlePerHost = 64
	DefaultIdleTimeout    = 90 * time.Second
	DefaultDialTimeout    = 5 * time.Second
)

// writeErrorGrace bounds the wait for an answer the instance may have sent
// before it stopped reading the request (a 413, say): net/http's transport
// reads while it writes and would return that answer, so this one looks for
// it after a failed write.
const writeErrorGrace = 100 * time.Millisecond

// aLongTimeAgo is a deadline that makes blocked reads and writes return.
var aLongTimeAgo = time.Unix(1, 0)

// Transport is an http.RoundTripper for http:// URLs that keeps a per-host
// pool of idle keep-alive connections. The zero value is usable; a
// Transport must not be copied after first use.
//
// Response bodies must be read to EOF or closed for their connection to be
// reused or released; Close must not be called concurrently with Read.
type Transport struct {
	// MaxIdlePerHost caps the idle connections kept per host:port; 0 means
	// DefaultMaxIdlePerHost, a negative value keeps none.
	MaxIdlePerHost int
	// IdleTimeout is how long an idle connection may be reused; 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// DialTimeout bounds connecting; 0 means DefaultDialTimeout. The
	// request's context also bounds it.
	DialTimeout time.Duration

	mu   sync.Mutex
	idle map[string][]*persistConn // by host:port, most recently used last
	// sweep closes the idle connections past the idle timeout; it is
	// armed while some connection is idle.
	sweep *time.Timer
	armed bool
}

// persistConn is one connection to an instance.
type persistConn struct {
	t      *Transport
	key    string // host:port, the pool's key
	conn   net.Conn
	br     *bufio.Reader // reads through the persistConn to count bytes
	nread  int64         // bytes read from conn: has an answer begun?
	nwrite int64         // bytes written to conn: was anything of a request sent?
	werr   error         // the error of the last failed write
	peek   *peeker       // looks for a close by the instance, without blocking
	idleAt time.Time
	// deadline is set when a deadline may be left on conn: it must be
	// cleared before the connection is reused.
	deadline bool
	// inHead is set while an answer's head is read; headLeft is what it
	// may still take (see maxResponseHead).
	inHead   bool
	headLeft int64
}

// maxResponseHead caps the head of an answer: status line, headers and any
// 1xx answers before it, as read (bufio's read-ahead included). Without it
// an instance that never ends a header line, or sends 1xx answers forever,
// has the gateway buffer all it sends (64 MB in FuzzResponse, and on). It
// is net/http's default cap on a request's head.
const maxResponseHead = 1 << 20

var errHeadTooLarge = fmt.Errorf("ufop transport: answer head over %d bytes (status line, headers and 1xx answers)", maxResponseHead)

func (pc *persistConn) Read(p []byte) (int, error) {
	if pc.inHead {
		if pc.headLeft <= 0 {
			return 0, errHeadTooLarge
		}
		if int64(len(p)) > pc.headLeft {
			p = p[:pc.headLeft]
		}
	}
	n, err := pc.conn.Read(p)
	pc.nread += int64(n)
	pc.headLeft -= int64(n)
	return n, err
}

// Write records the error of writing to the connection: Request.Write
// reports it as a body read error, without unwrapping to it.
func (pc *persistConn) Write(p []byte) (int, error) {
	n, err := pc.conn.Write(p)
	pc.nwrite += int64(n)
	if err != nil {
		pc.werr = err
	}
	return n, err
}

// abort makes blocked reads and writes on the connection return; it runs
// when the request's context is done.
func (pc *persistConn) abort() { pc.conn.SetDeadline(aLongTimeAgo) }

func (pc *persistConn) close() { pc.conn.Close() }

// writers are the buffers requests are written through, so that the
// headers and a small body leave in one write.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 8<<10) }}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Scheme != "http" || req.URL.Host == "" {
		closeRequestBody(req)
		if req.URL == nil {
			return nil, errors.New("ufop transport: request without URL")
		}
		return nil, fmt.Errorf("ufop transport: unsupported URL %q (only http://host is)", req.URL.Redacted())
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeRequestBody(req)
		return nil, err
	}
	// The retry of exchange sends the body again if it can be had again.
	var r2 *http.Request
	resp, err := t.exchange(ctx, hostPort(req.URL), req, sendRequest(req), func() func(*persistConn) error {
		r2 = req
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil
			}
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil
			}
			r2 = new(http.Request)
			*r2 = *req
			r2.Body = body
		}
		return sendRequest(r2)
	})
	if err != nil {
		// Request.Write closes what it sent; a failed dial sent nothing.
		closeRequestBody(req)
		if r2 != nil && r2 != req {
			closeRequestBody(r2)
		}
	}
	return resp, err
}

// hostPort is the host:port of an http URL, port 80 when it has none.
func hostPort(u *url.URL) string {
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return u.Host
}

// exchange runs a request on a pooled connection to key, or a new one.
// Pooled connections the instance closed while they idled are dropped
// before anything is written on them. When a reused connection still fails
// before any byte of an answer came, it tries once more on a fresh
// connection with what again returns (nil when the request cannot be sent
// twice), but only if nothing of the request was written or the request is
// idempotent: the instance may have read it and died of it. req is the
// *http.Request sent, nil for a wireRequest (a POST).
func (t *Transport) exchange(ctx context.Context, key string, req *http.Request, send func(*persistConn) error, again func() func(*persistConn) error) (*http.Response, error) {
	var pc *persistConn
	for pc = t.takeIdle(key); pc != nil && !pc.peek.alive(); pc = t.takeIdle(key) {
		pc.close() // closed by the instance while it idled: nothing sent
	}
	reused := pc != nil
	if pc == nil {
		var err error
		if pc, err = t.dial(ctx, key); err != nil {
			return nil, contextError(ctx, err)
		}
	}
	resp, retry, err := t.roundTrip(ctx, pc, send, req, reused)
	if err == nil || !retry {
		return resp, err
	}
	if send = again(); send == nil {
		return nil, err
	}
	if pc, err = t.dial(ctx, key); err != nil {
		return nil, contextError(ctx, err)
	}
	resp, _, err = t.roundTrip(ctx, pc, send, req, false)
	return resp, err
}

// roundTrip sends a request on pc with send and reads the answer's header.
// req is the request when it is an *http.Request, nil for a wireRequest.
// retry reports that pc was a reused connection that failed before any byte
// of an answer arrived, and that the request may be sent again: nothing of
// it was written, or it is idempotent. pc is released or handed to the
// response body in all cases.
//
// No write deadline is set: the abort registered on ctx (which also fires
// at ctx's deadline) unblocks a stuck write, and saves two deadline updates
// per call.
func (t *Transport) roundTrip(ctx context.Context, pc *persistConn, send func(*persistConn) error, req *http.Request, reused bool) (resp *http.Response, retry bool, err error) {
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, pc.abort)
	}
	// fail closes pc, which may hold a deadline or half an answer.
	fail := func(err error) (*http.Response, bool, error) {
		if stop != nil {
			stop()
		}
		pc.close()
		return nil, false, contextError(ctx, err)
	}
	start, wstart := pc.nread, pc.nwrite
	err = send(pc)
	if err != nil && pc.werr != nil {
		err = pc.werr // the connection's error, not the body's
	}
	if err != nil {
		if ctx.Err() != nil || !connGone(err) {
			return fail(err)
		}
		if reused && (pc.nwrite == wstart || idempotent(req)) {
			fail(err)
			return nil, true, err
		}
		// The instance may have answered and stopped reading: look for
		// the answer for a short while.
		pc.conn.SetReadDeadline(time.Now().Add(writeErrorGrace))
		pc.deadline = true
		if ctx.Err() != nil {
			pc.abort()
		}
		r, rerr := readResponse(pc, req)
		if rerr != nil {
			return fail(err)
		}
		pc.conn.SetReadDeadline(time.Time{})
		if ctx.Err() != nil {
			pc.abort()
		}
		return t.wrapResponse(ctx, pc, r, stop, false), false, nil
	}
	resp, err = readResponse(pc, req)
	if err != nil {
		// The whole request was written: only an idempotent one may go
		// again (a closed idle connection was caught by alive).
		retry = reused && idempotent(req) && pc.nread == start && ctx.Err() == nil && connGone(err)
		resp, _, err = fail(err)
		return resp, retry, err
	}
	keep := resp.ProtoAtLeast(1, 1) && !resp.Close
	if req != nil {
		keep = keep && !req.Close && !httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close")
	}
	return t.wrapResponse(ctx, pc, resp, stop, keep), false, nil
}

// sendRequest writes req through a pooled buffer, so that the headers and
// a small body leave in one write.
func sendRequest(req *http.Request) func(*persistConn) error {
	return func(pc *persistConn) error {
		bw := writers.Get().(*bufio.Writer)
		bw.Reset(pc)
		err := req.Write(bw)
		if err == nil {
			err = bw.Flush()
		}
		bw.Reset(nil)
		writers.Put(bw)
		return err
	}
}

// readResponse reads the final answer to req on pc, skipping 1xx interim
// ones, within maxResponseHead.
func readResponse(pc *persistConn, req *http.Request) (*http.Response, error) {
	pc.inHead, pc.headLeft = true, maxResponseHead
	defer func() { pc.inHead = false }()
	for {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			return nil, err
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("ufop transport: protocol switches are not supported")
		case resp.StatusCode >= 100 && resp.StatusCode < 200:
			continue
		}
		return resp, nil
	}
}

// wrapResponse gives pc to resp's body, or releases it now when the answer
// has no body.
func (t *Transport) wrapResponse(ctx context.Context, pc *persistConn, resp *http.Response, stop func() bool, keep bool) *http.Response {
	b := &bodyReader{pc: pc, rc: resp.Body, ctx: ctx, stop: stop, keep: keep}
	if resp.Body == http.NoBody {
		b.release(keep)
		return resp
	}
	resp.Body = b
	return resp
}

// bodyReader is a response body that owns its connection until the end of
// the answer: then the connection goes back to the pool if the answer
// allows keep-alive, and is closed otherwise.
type bodyReader struct {
	pc   *persistConn // nil once released
	rc   io.ReadCloser
	ctx  context.Context
	stop func() bool // stops the context's abort of pc; nil without one
	keep bool        // the answer allows reusing the connection
	err  error       // returned by Read once released
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.pc == nil {
		return 0, b.err
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.release(b.keep)
		b.err = io.EOF
	case err != nil:
		b.release(false)
		err = contextError(b.ctx, err)
		b.err = err
	}
	return n, err
}

// Close releases the connection: into the pool if the answer was read to
// its end, closed otherwise (the rest of the answer is not worth reading).
func (b *bodyReader) Close() error {
	if b.pc == nil {
		if b.err != io.EOF {
			b.err = http.ErrBodyReadAfterClose
		}
		return nil
	}
	keep := b.keep
	if b.stop != nil {
		keep = b.stop() && keep
		b.stop = nil
	}
	if keep {
		// The answer may be complete but for its end (the last chunk of
		// a chunked body, say) already in the buffer: look for it
		// without waiting for the network.
		var one [1]byte
		b.pc.conn.SetReadDeadline(aLongTimeAgo)
		b.pc.deadline = true
		n, err := b.rc.Read(one[:])
		keep = n == 0 && err == io.EOF
	}
	b.release(keep)
	b.err = http.ErrBodyReadAfterClose
	return nil
}

// release gives the connection back to the pool or closes it.
func (b *bodyReader) release(keep bool) {
	pc := b.pc
	b.pc = nil
	if b.stop != nil && !b.stop() {
		keep = false // the context's abort ran: pc has a past deadline
	}
	b.stop = nil
	if keep {
		pc.t.putIdle(pc)
	} else {
		pc.close()
	}
}

// takeIdle returns the most recently used idle connection to key that is
// not past the idle timeout, or nil.
func (t *Transport) takeIdle(key string) *persistConn {
	timeout := t.idleTimeout()
	now := time.Now()
	var stale []*persistConn
	var pc *persistConn
	t.mu.Lock()
	l := t.idle[key]
	if n := len(l); n > 0 {
		pc = l[n-1]
		l[n-1] = nil
		l = l[:n-1]
		if now.Sub(pc.idleAt) > timeout {
			// The newest is stale, so are the older ones.
			stale = append(l, pc)
			l, pc = nil, nil
		} else if len(l) > 0 && now.Sub(l[0].idleAt) > timeout {
			// The oldest is not reached while the newest are in use:
			// expire it here, one per call.
			stale = []*persistConn{l[0]}
			copy(l, l[1:])
			l[len(l)-1] = nil
			l = l[:len(l)-1]
		}
		t.idle[key] = l
	}
	t.mu.Unlock()
	for _, s := range stale {
		s.close()
	}
	return pc
}

// putIdle pools pc, or closes it when the pool is full.
func (t *Transport) putIdle(pc *persistConn) {
	if pc.br.Buffered() > 0 {
		// Bytes nobody asked for: the stream is out of step.
		pc.close()
		return
	}
	if pc.deadline {
		pc.conn.SetDeadline(time.Time{})
		pc.deadline = false
	}
	max := t.MaxIdlePerHost
	if max == 0 {
		max = DefaultMaxIdlePerHost
	}
	pc.idleAt = time.Now()
	t.mu.Lock()
	if l := t.idle[pc.key]; len(l) < max {
		if t.idle == nil {
			t.idle = make(map[string][]*persistConn)
		}
		t.idle[pc.key] = append(l, pc)
		pc = nil
		if !t.armed {
			t.armed = true
			t.armSweepLocked(t.idleTimeout())
		}
	}
	t.mu.Unlock()
	if pc != nil {
		pc.close()
	}
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return t.IdleTimeout
}

// armSweepLocked runs sweepIdle after d.
func (t *Transport) armSweepLocked(d time.Duration) {
	if t.sweep == nil {
		t.sweep = time.AfterFunc(d, t.sweepIdle)
		return
	}
	t.sweep.Reset(d)
}

// sweepIdle closes the idle connections past the idle timeout, and those
// the instance closed, and drops the pool entries left empty: the
// connections of an instance nobody calls any more (scaled away, say) are
// not kept open until the transport's end. It runs again while some
// connection is idle, when the oldest one expires.
func (t *Transport) sweepIdle() {
	timeout := t.idleTimeout()
	var dead []*persistConn
	t.mu.Lock()
	now := time.Now()
	var next time.Time
	for key, l := range t.idle {
		// Oldest first: the expired ones are a prefix.
		i := 0
		for i < len(l) && now.Sub(l[i].idleAt) > timeout {
			i++
		}
		dead = append(dead, l[:i]...)
		keep := l[:0]
		for _, pc := range l[i:] {
			if pc.peek.alive() {
				keep = append(keep, pc)
			} else {
				dead = append(dead, pc)
			}
		}
		clear(l[len(keep):])
		if len(keep) == 0 {
			delete(t.idle, key)
			continue
		}
		t.idle[key] = keep
		if exp := keep[0].idleAt.Add(timeout); next.IsZero() || exp.Before(next) {
			next = exp
		}
	}
	if next.IsZero() {
		t.armed = false
	} else {
		// Not more often than a tenth of the timeout: connections taken
		// and given back keep moving the oldest one's expiry.
		t.armSweepLocked(max(next.Sub(now), timeout/10))
	}
	t.mu.Unlock()
	for _, pc := range dead {
		pc.close()
	}
}

// Forget closes the idle connections to the given host:ports and drops
// their pool entries: instances that are gone (scaled away, drained, or
// no longer healthy). Connections in use are not affected; given back,
// they idle until the sweep closes them.
func (t *Transport) Forget(keys ...string) {
	var dead []*persistConn
	t.mu.Lock()
	for _, key := range keys {
		dead = append(dead, t.idle[key]...)
		delete(t.idle, key)
	}
	t.mu.Unlock()
	for _, pc := range dead {
		pc.close()
	}
}

// CloseIdleConnections closes the pooled connections; those in use are
// not affected.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, l := range idle {
		for _, pc := range l {
			pc.close()
		}
	}
}

// idleCount is the number of pooled connections to key, for tests.
func (t *Transport) idleCount(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.idle[key])
}

func (t *Transport) dial(ctx context.Context, key string) (*persistConn, error) {
	timeout := t.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", key)
	if err != nil {
		return nil, err
	}
	pc := &persistConn{t: t, key: key, conn: c}
	pc.br = bufio.NewReader(pc)
	pc.peek = newPeeker(c)
	return pc, nil
}

// contextError puts the context's error in the chain of err when the
// context is done: the connection error is then only its consequence (of
// the deadline set by abort).
func contextError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return &canceledError{ctx: cerr, conn: err}
	}
	return err
}

// canceledError is a connection error caused by the end of a context.
type canceledError struct{ ctx, conn error }

func (e *canceledError) Error() string { return e.ctx.Error() + " (" + e.conn.Error() + ")" }
func (e *canceledError) Unwrap() error { return e.ctx }

// Timeout makes a deadline a timeout for those who look for a net.Error,
// as *url.Error does.
func (e *canceledError) Timeout() bool { return errors.Is(e.ctx, context.DeadlineExceeded) }

// connGone reports whether err says the peer closed or reset the
// connection, which is when a reused connection is worth one retry.
func connGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// idempotent reports whether req may be sent again after it was written in
// full on a connection that then failed: net/http's rule (a safe method, or
// an Idempotency-Key header). req is nil for a wireRequest, a POST.
func idempotent(req *http.Request) bool {
	if req == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, ok := req.Header["Idempotency-Key"]
	if !ok {
		_, ok = req.Header["X-Idempotency-Key"]
	}
	return ok
}

func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
