package gateway

// The fast front. On the UFOP path the gateway only relays: a 1 KB source
// goes to an instance, a small answer comes back. There, net/http's
// per-request machinery (a goroutine and two deadline changes for the
// background read, header maps) cost more than the relaying itself: a CPU
// profile put the gateway at four times nginx's CPU per request, and
// bench/ufop.sh at 0.67 of nginx's throughput. fasthttp serves a
// connection on one goroutine with reused request objects.
//
// Each connection is routed by its first request line: connections that
// start with a processing URL whose steps are all UFOPs go to fasthttp,
// every other connection to net/http and gin as before. On a fasthttp
// connection, later requests the fast front does not answer itself go to
// net/http: the connection is handed over for good (bodies over fastMaxBody
// are refused before that: uploads belong on their own connections, as the
// CLI makes them).
//
// What the fast front gives up: fasthttp does not notice a client that
// leaves mid-request, so a UFOP step runs to its end (or its timeout) for
// nobody. Chains with built-in commands never take it: their requests wait
// on the worker pool, where a departed client must leave the queue.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/internal/serve"
	"github.com/qufop/qufop/storage"
)

const (
	maxHeaderBytes = 64 << 10
	// fastMaxBody caps request bodies on fasthttp connections, which
	// buffer them whole; processing URLs have none.
	fastMaxBody = 1 << 20
	// maxRequestLine is how much of a connection's first request is read
	// to route it; a longer request line goes to net/http, which answers it.
	maxRequestLine = 8 << 10
	// routeLookupTimeout bounds the lookups of UFOPs made to choose the
	// front of a request. Past it the request goes to net/http, which
	// resolves it again under the request's own deadline and answers
	// (504 if the store still does not answer): a store that hangs slows
	// a connection down, it never holds it.
	routeLookupTimeout = time.Second
)

// fastRequest is a processing request the fast front answers itself.
type fastRequest struct {
	bucket storage.Bucket
	key    string
	chain  fop.Chain
	steps  []stepProc
}

// fastTarget reports whether a request with method and request-target is
// one for the fast front: GET or HEAD of /<bucket>/<key>?<chain> (or of a
// styled key) on a bucket this gateway serves, with every step a UFOP. It
// resolves the request on the way.
func (s *Server) fastTarget(ctx context.Context, method, target string) (fastRequest, bool) {
	if s.ufops == nil || (method != http.MethodGet && method != http.MethodHead) || !strings.HasPrefix(target, "/") {
		return fastRequest{}, false
	}
	rawPath, query, _ := strings.Cut(target, "?")
	p, err := url.PathUnescape(rawPath)
	if err != nil {
		return fastRequest{}, false
	}
	name, key, _ := strings.Cut(p[1:], "/")
	if name == "" || key == "" || s.reserved[name] {
		return fastRequest{}, false
	}
	// A styled key is a processing URL too (styles.go).
	key, query = s.styled(name, key, query)
	if query == "" {
		return fastRequest{}, false
	}
	chain, err := fop.Parse(query)
	if err != nil || chain.Empty() {
		return fastRequest{}, false
	}
	for _, c := range chain.Cmds {
		if _, builtin := s.cmds[c.Name]; builtin {
			return fastRequest{}, false
		}
	}
	b, err := s.buckets.Bucket(name)
	if err != nil {
		return fastRequest{}, false
	}
	steps, err := s.resolve(ctx, chain, b.Name())
	if err != nil {
		return fastRequest{}, false // gin answers the error
	}
	return fastRequest{bucket: b, key: key, chain: chain, steps: steps}, true
}

// reservedSegments are the first path segments of the routes gin serves
// besides buckets: a bucket of such a name is left to gin's router.
func reservedSegments(routes []string) map[string]bool {
	m := map[string]bool{}
	for _, r := range routes {
		seg, _, _ := strings.Cut(strings.TrimPrefix(r, "/"), "/")
		if seg != "" && seg[0] != ':' && seg[0] != '*' {
			m[seg] = true
		}
	}
	return m
}

// fastHandler answers fast-front requests and moves the connection to
// net/http at the first request it does not answer itself.
func (s *Server) fastHandler(std *connListener) fasthttp.RequestHandler {
	return func(rc *fasthttp.RequestCtx) {
		// fasthttp does not recover handlers' panics: one would stop the
		// process. serveFast answers its own; any other closes the
		// connection, as net/http does.
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("panic", "panic", r)
				rc.SetConnectionClose()
				s.fastFail(rc, errs.New(errs.StatusProcessingFailed, "internal error"))
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), routeLookupTimeout)
		req, ok := s.fastTarget(ctx, string(rc.Method()), string(rc.RequestURI()))
		cancel()
		if !ok {
			s.handOver(rc, std)
			return
		}
		s.serveFast(rc, req)
	}
}

// handOver gives the connection to net/http, the request it just sent
// first. (fasthttpadaptor would serve it in place, but its http.Request
// aliases fasthttp's buffers, and gin's routes keep strings of it beyond
// the request: metric labels, cache keys.)
func (s *Server) handOver(rc *fasthttp.RequestCtx, std *connListener) {
	var buf bytes.Buffer
	if _, err := rc.Request.WriteTo(&buf); err != nil {
		s.fastFail(rc, errs.BadRequest("malformed request"))
		rc.SetConnectionClose()
		return
	}
	prefix := buf.Bytes()
	rc.HijackSetNoResponse(true)
	rc.Hijack(func(c net.Conn) {
		std.put(&peekedConn{Conn: c, r: io.MultiReader(bytes.NewReader(prefix), c)})
	})
}

// serveFast is the object handler of the fast front: the same run, the
// same headers, errors and access log as the gin route.
func (s *Server) serveFast(rc *fasthttp.RequestCtx, req fastRequest) {
	a := access{
		start: time.Now(), cmd: req.chain.Cmds[0].Name,
		reqID: requestID(string(rc.Request.Header.Peek("X-Reqid"))),
	}
	if s.logging() { // strings only for the log
		a.remote, a.method, a.uri = rc.RemoteIP().String(), string(rc.Method()), string(rc.RequestURI())
	}
	s.m.inFlight.Inc()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic", "reqid", a.reqID, "panic", r)
			a.err = errs.New(errs.StatusProcessingFailed, "internal error")
			a.status = s.fastFail(rc, a.err)
		}
		s.m.inFlight.Dec()
		a.bytes = len(rc.Response.Body())
		s.observe(a)
	}()
	h := &rc.Response.Header
	h.Set("X-Reqid", a.reqID)
	tctx, err := s.authorize(context.Background(), req.bucket.Name(), string(rc.RequestURI()), string(rc.Host()))
	if err != nil {
		a.err = err
		a.status = s.fastFail(rc, err)
		return
	}
	ctx, cancel := context.WithTimeout(fop.WithReqID(tctx, a.reqID), s.cfg.RequestTimeout)
	res, err := s.run(ctx, req.bucket, req.key, req.chain, req.steps, string(rc.Request.Header.Peek("If-None-Match")))
	cancel()
	if err != nil {
		a.err = err
		a.status = s.fastFail(rc, err)
		return
	}
	res.headers(req.chain, h.Set)
	a.status = http.StatusOK
	if res.notModified {
		a.status = http.StatusNotModified
	} else {
		h.SetContentType(res.blob.MIME)
		rc.Response.SetBodyRaw(res.blob.Data)
	}
	rc.SetStatusCode(a.status)
}

// fastFail answers err as fail does on gin, and returns the status.
func (s *Server) fastFail(rc *fasthttp.RequestCtx, err error) int {
	st, msg := errorAnswer(err)
	body, _ := json.Marshal(msg)
	rc.Response.Header.Del("ETag")
	rc.Response.Header.Del("Content-Disposition")
	rc.Response.Header.Set("Cache-Control", "no-store")
	rc.Response.Header.SetContentType("application/json; charset=utf-8")
	rc.SetStatusCode(st)
	rc.Response.SetBodyRaw(body)
	return st
}

// fastReadError answers a request fasthttp could not read, in Qiniu's
// form like every other error.
func (s *Server) fastReadError(rc *fasthttp.RequestCtx, err error) {
	var e error
	var nerr net.Error
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = errs.New(http.StatusRequestEntityTooLarge, "request body over %d bytes on a connection of processing requests", fastMaxBody)
	case errors.As(err, &small):
		e = errs.New(http.StatusRequestHeaderFieldsTooLarge, "request header over %d bytes", maxHeaderBytes)
	case errors.As(err, &nerr) && nerr.Timeout():
		e = errs.New(http.StatusRequestTimeout, "request not received in time")
	default:
		e = errs.BadRequest("malformed request")
	}
	s.fastFail(rc, e)
}

// serveSplit serves ln with both fronts until ctx ends, then stops both
// gracefully.
func (s *Server) serveSplit(ctx context.Context, ln net.Listener, std *http.Server) error {
	fl, sl := newConnListener(ln.Addr()), newConnListener(ln.Addr())
	// fasthttp restarts ReadTimeout at the first byte of every request (so
	// it bounds the header, and the body, capped at fastMaxBody, with it)
	// and waits IdleTimeout between requests.
	fast := &fasthttp.Server{
		Handler:                      s.fastHandler(sl),
		NoDefaultServerHeader:        true,
		DisablePreParseMultipartForm: true,
		ReadTimeout:                  s.cfg.HeaderTimeout,
		IdleTimeout:                  s.cfg.IdleTimeout,
		ReadBufferSize:               maxHeaderBytes,
		MaxRequestBodySize:           fastMaxBody,
		CloseOnShutdown:              true,
		KeepHijackedConns:            true, // handed over to net/http, which closes them
		ErrorHandler:                 s.fastReadError,
		Logger:                       discardLogger{},
	}
	go s.route(ln, fl, sl)

	errc := make(chan error, 2)
	go func() { errc <- serve.Serve(ctx, std, sl, s.cfg.ShutdownTimeout) }()
	go func() { errc <- fast.Serve(fl) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		// A front stopped on its own: stop the other.
		ln.Close()
		fl.Close()
		sl.Close()
		if err == nil {
			err = errors.New("gateway: a front stopped by itself")
		}
		return err
	}
	ln.Close()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	ferr := fast.ShutdownWithContext(sctx)
	var serr error
	for range 2 {
		if err := <-errc; err != nil && !errors.Is(err, net.ErrClosed) && serr == nil {
			serr = err
		}
	}
	return errors.Join(ferr, serr)
}

// route accepts connections from ln and hands each to the fast front or
// to net/http by its first request line. A failed accept is retried after
// a growing pause, whatever the error, as nginx does: Linux passes pending
// network errors of a queued connection on as accept errors (accept(2)),
// and net/http's Serve, which retries only "temporary" ones, would stop the
// gateway on them. Only a closed ln ends the loop, and both fronts with it.
func (s *Server) route(ln net.Listener, fast, std *connListener) {
	defer fast.Close()
	defer std.Close()
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed; retrying", "err", err, "in", pause)
			time.Sleep(pause)
			continue
		}
		pause = 0
		go s.routeConn(c, fast, std)
	}
}

func (s *Server) routeConn(c net.Conn, fast, std *connListener) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic routing a connection", "panic", r)
			c.Close()
		}
	}()
	c.SetReadDeadline(time.Now().Add(s.cfg.HeaderTimeout))
	br := bufio.NewReaderSize(c, maxRequestLine)
	line, err := peekLine(br)
	var nerr net.Error
	if err != nil && (len(line) == 0 || errors.As(err, &nerr) && nerr.Timeout()) {
		// Nothing came, or not a whole request line in time (a slow
		// client: handed on, it would get a second header timeout).
		// net/http closes such connections too.
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, r: br}
	method, rest, _ := strings.Cut(string(line), " ")
	target, _, _ := strings.Cut(rest, " ")
	ctx, cancel := context.WithTimeout(context.Background(), routeLookupTimeout)
	_, ok := s.fastTarget(ctx, method, target)
	cancel()
	if ok {
		s.m.fastConns.WithLabelValues("fast").Inc()
		fast.put(pc)
		return
	}
	s.m.fastConns.WithLabelValues("std").Inc()
	std.put(pc)
}

// peekLine returns the first line buffered in br without consuming it,
// reading until it is complete, br is full or reading fails.
func peekLine(br *bufio.Reader) ([]byte, error) {
	n := 1
	for {
		if _, err := br.Peek(n); err != nil {
			b, _ := br.Peek(br.Buffered())
			return b, err
		}
		// Peek(n) read whatever had arrived: look at all of it.
		b, _ := br.Peek(br.Buffered())
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return b[:i], nil
		}
		if n = len(b) + 1; n > br.Size() {
			return b, bufio.ErrBufferFull
		}
	}
}

// peekedConn is a connection whose first bytes were read ahead to route it
// (or re-made to hand it over): r gives them, then the rest of the stream.
type peekedConn struct {
	net.Conn
	r io.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connListener is a net.Listener fed with routed connections.
type connListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) put(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// discardLogger silences fasthttp's own error log: failures reach the
// client and, for processing requests, the access log.
type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
