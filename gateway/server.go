// Package gateway is the data plane: the gin server that turns processing URLs
// (GET /<bucket>/<key>?<fop>|<fop>...) into results. It parses the chain
// (package fop), fetches the source (package storage), runs each step through
// the admission pool, and answers errors in Qiniu's JSON form.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/internal/serve"
	"github.com/qufop/qufop/storage"
)

// UFOPs resolves the steps that are not built-in commands (package
// dispatch implements it).
type UFOPs interface {
	// Resolve returns the processor of step cmd, (nil, nil) when no UFOP
	// has its name. caller is whom the step runs for (a private UFOP
	// serves only its owner).
	Resolve(ctx context.Context, cmd fop.Cmd, caller string) (fop.Processor, error)
}

// Option configures a Server.
type Option func(*Server)

// WithUFOPs lets chains call UFOPs; owner tells who owns a bucket (the
// caller of the UFOPs of a chain on it).
func WithUFOPs(u UFOPs, owner func(bucket string) string) Option {
	return func(s *Server) { s.ufops, s.owner = u, owner }
}

// WithBlobs serves h at path (the UFOPs' input blobs).
func WithBlobs(path string, h gin.HandlerFunc) Option {
	return func(s *Server) { s.engine.GET(path, h) }
}

// WithCollector adds c's series to the gateway's /metrics (the
// dispatcher's per-UFOP figures).
func WithCollector(c prometheus.Collector) Option {
	return func(s *Server) { s.m.reg.MustRegister(c) }
}

// WithPprof serves the Go profiles at /debug/pprof/.
func WithPprof() Option {
	return func(s *Server) {
		s.engine.Any("/debug/pprof/*profile", gin.WrapF(func(w http.ResponseWriter, r *http.Request) {
			switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
			case "cmdline":
				pprof.Cmdline(w, r)
			case "profile":
				pprof.Profile(w, r)
			case "symbol":
				pprof.Symbol(w, r)
			case "trace":
				pprof.Trace(w, r)
			default:
				pprof.Index(w, r)
			}
		}))
	}
}

// Server is one gateway.
type Server struct {
	cfg     Config
	buckets storage.Buckets
	cmds    fop.Registry
	ufops   UFOPs
	owner   func(bucket string) string
	tenants *tenancy // owners, private buckets, classes (access.go)
	pool    *Pool
	conns   *connLimiter
	m       *metrics
	log     *slog.Logger
	engine  *gin.Engine
	// reserved are the first path segments of gin's own routes, set when
	// serving starts (see fastTarget).
	reserved map[string]bool
	// adm admits requests by the per-user limits; nil: none (admit.go).
	adm *admitter
}

// New builds a gateway over the given buckets and built-in commands.
// Access logs go to log, one line per request.
func New(cfg Config, buckets storage.Buckets, cmds fop.Registry, log *slog.Logger, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := newMetrics()
	s := &Server{
		cfg:     cfg,
		buckets: buckets,
		cmds:    cmds,
		pool:    NewPool(cfg.Workers, cfg.QueueBounds(), cfg.QueueWeights, m).ReservePaid(cfg.PaidReserve, 0),
		conns:   newConnLimiter(cfg.MaxConns, cfg.MaxConnsPerIP),
		m:       m,
		log:     log,
	}
	m.connGauge(s.conns)
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.Use(s.reqID, s.accessLog, s.recover)
	e.GET("/health", s.health)
	e.HEAD("/health", s.health)
	e.GET("/metrics", gin.WrapH(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})))
	e.GET("/:bucket/*key", s.object)
	e.HEAD("/:bucket/*key", s.object)
	e.NoRoute(func(c *gin.Context) { s.fail(c, errs.NotFound("no such route")) })
	e.NoMethod(func(c *gin.Context) {
		s.fail(c, errs.New(http.StatusMethodNotAllowed, "method %s not allowed", c.Request.Method))
	})
	s.engine = e
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Handler returns the HTTP handler (for tests and for mounting).
func (s *Server) Handler() http.Handler { return s.engine }

// Engine exposes the gin engine so that other parts of the platform (the
// management API) can add routes on the same listener.
func (s *Server) Engine() *gin.Engine { return s.engine }

// Serve serves on ln until ctx ends, then shuts down gracefully: in-flight
// requests get ShutdownTimeout to finish.
//
// With Config.FastFront and UFOPs, connections that start with a UFOP
// processing URL are served by the fast front (front.go). Either way the
// connection limits apply at accept (connlimit.go).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ln = &limitListener{
		Listener: ln, lim: s.conns,
		refused:  func(reason string) { s.m.refused.WithLabelValues(reason).Inc() },
		timedOut: func(phase string) { s.m.timedOut.WithLabelValues(phase).Inc() },
	}
	// ReadHeaderTimeout and IdleTimeout apply to every request of a
	// kept-alive connection, not only its first. Request bodies (uploads
	// on the management API) have no read deadline: ReadTimeout would
	// bound a large upload's whole transfer.
	srv := &http.Server{
		Handler:           s.engine,
		ReadHeaderTimeout: s.cfg.HeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	if !s.cfg.FastFront || s.ufops == nil {
		return serve.Serve(ctx, srv, ln, s.cfg.ShutdownTimeout)
	}
	var routes []string
	for _, r := range s.engine.Routes() {
		routes = append(routes, r.Path)
	}
	s.reserved = reservedSegments(routes)
	return s.serveSplit(ctx, ln, srv)
}

func (s *Server) health(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"status": "ok", "workers": s.cfg.Workers,
		"busy": s.pool.Busy(), "queued": s.pool.Waiting()})
}

// reqID gives every response an X-Reqid (a client-supplied one is kept when
// it is sane, so a request can be traced through a proxy).
func (s *Server) reqID(c *gin.Context) {
	id := requestID(c.GetHeader("X-Reqid"))
	c.Set(ctxReqID, id)
	c.Header("X-Reqid", id)
	c.Next()
}

// requestID keeps a client's request id when it is sane, or makes one.
func requestID(given string) string {
	if given != "" && len(given) <= 64 {
		return given
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

const (
	ctxReqID   = "qufop.reqid"
	ctxCommand = "qufop.command"
	ctxError   = "qufop.error"
)

// otherCommand is the command label of a request whose chain does not
// start with a built-in command or a UFOP that exists (an unknown name, a
// chain that does not parse, a UFOP whose lookup failed). Labels are only
// the names this gateway knows, so what a client sends cannot make series.
const otherCommand = "other"

func (s *Server) accessLog(c *gin.Context) {
	start := time.Now()
	s.m.inFlight.Inc()
	c.Next()
	s.m.inFlight.Dec()
	var err error
	if v, ok := c.Get(ctxError); ok {
		err = v.(error)
	}
	a := access{
		start: start, cmd: c.GetString(ctxCommand), status: c.Writer.Status(), err: err,
		reqID: c.GetString(ctxReqID), bytes: c.Writer.Size(),
	}
	if s.logging() { // strings only for the log
		a.remote, a.method, a.uri = c.ClientIP(), c.Request.Method, c.Request.URL.RequestURI()
	}
	s.observe(a)
}

// logging reports whether access lines are written (not with --quiet).
func (s *Server) logging() bool { return s.log.Enabled(context.Background(), slog.LevelInfo) }

// access is what the access log and the metrics record of one request.
type access struct {
	start                      time.Time
	cmd                        string // first command of the chain, "-" without one, otherCommand, "" for other routes
	status                     int
	err                        error
	reqID, remote, method, uri string
	bytes                      int
}

// observe counts a request in the metrics and writes its access log line.
func (s *Server) observe(a access) {
	d := time.Since(a.start)
	status := a.status
	if a.err != nil && errs.Status(a.err) == StatusClientClosed {
		status = StatusClientClosed
	}
	if a.cmd != "" {
		s.m.requests.WithLabelValues(a.cmd, itoa(status)).Inc()
		s.m.duration.WithLabelValues(a.cmd).Observe(d.Seconds())
	}
	if !s.logging() {
		return
	}
	attrs := []any{
		"reqid", a.reqID,
		"remote", a.remote,
		"method", a.method,
		"uri", a.uri,
		"status", status,
		"bytes", a.bytes,
		"ms", float64(d.Microseconds()) / 1000,
	}
	if a.err != nil {
		attrs = append(attrs, "err", a.err.Error())
	}
	s.log.Info("access", attrs...)
}

func (s *Server) recover(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if err, ok := r.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(r)
			}
			s.log.Error("panic", "reqid", c.GetString(ctxReqID), "panic", r)
			s.fail(c, errs.New(errs.StatusProcessingFailed, "internal error"))
			c.Abort()
		}
	}()
	c.Next()
}

// fail answers err in Qiniu's form: {"code":N,"error":"..."} with no-store.
// A client that went away gets nothing.
func (s *Server) fail(c *gin.Context, err error) {
	c.Set(ctxError, err)
	st := errs.Status(err)
	if st == StatusClientClosed {
		c.Abort()
		return
	}
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(errorAnswer(err))
}

// errorAnswer is the status and body of err in Qiniu's form, on either
// front.
func errorAnswer(err error) (int, gin.H) {
	st := errs.Status(err)
	return st, gin.H{"code": st, "error": errs.Public(err)}
}
