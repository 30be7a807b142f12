// Package control is the management API of the platform (/v1/...): UFOP
// records, builds, versions, instances and logs, authenticated by Qiniu-style
// signed requests. `qufop dev` serves it on the gateway's listener; at scale
// `qufop builder` serves it. The CLI (package cli) is its client.
package control

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
	"github.com/qufop/qufop/users"
)

// Build is what the builder is asked to make of one uploaded version.
type Build struct {
	Owner   string
	Name    string
	Version int
	// Tarball is the uploaded file, already checked by Unpack.
	Tarball string
	Spec    *ufop.Spec
}

// Built is a build's result: an image (Docker) or an app folder (process).
type Built struct {
	Image string
	Dir   string
}

// Builder turns an unpacked tarball into something the orchestrator runs.
type Builder interface {
	// Unpack checks a tarball and unpacks it into dest, returning its
	// parsed ufop.yaml; refusals are 400s that name the entry.
	Unpack(ctx context.Context, r io.Reader, dest string) (*ufop.Spec, error)
	// Build builds b, writing the build log to log.
	Build(ctx context.Context, b Build, log io.Writer) (Built, error)
	// Remove deletes a built artifact (Built.Image or Built.Dir): from the
	// registry and the local daemon, or the folder. Missing is no error.
	Remove(ctx context.Context, artifact string) error
}

// BuildLogs keeps one log per version.
type BuildLogs interface {
	Create(owner, name string, version int) (io.WriteCloser, error)
	// Follow copies the log to w as it grows until done() is true and the
	// log is drained, or ctx ends.
	Follow(ctx context.Context, owner, name string, version int, done func() bool, w io.Writer) error
}

// Config is the control plane's configuration.
type Config struct {
	// WorkDir holds uploads while they are checked and built.
	WorkDir string
	// MaxUploadBytes caps an uploaded tarball.
	MaxUploadBytes int64
	// DeployTimeout bounds how long resize and upgrade wait for a
	// deployment to be healthy before reporting failure.
	DeployTimeout time.Duration
	// Port is where UFOP programs listen in their containers.
	Port int
	// OpLease is how long a resize, upgrade, change of policy or unreg
	// holds its UFOP without renewal (0: DefaultOpLease); the process
	// running it renews it every third of it. An operation whose process
	// died frees the UFOP when it runs out (see ops.go).
	OpLease time.Duration
}

// NewDefaultConfig returns the defaults.
func NewDefaultConfig() Config {
	return Config{MaxUploadBytes: 256 << 20, DeployTimeout: 5 * time.Minute, Port: 9100, OpLease: DefaultOpLease}
}

// Server serves /v1.
type Server struct {
	cfg    Config
	keeper *ufop.Keeper
	build  Builder
	logs   BuildLogs
	orch   cluster.Orchestrator
	users  auth.Lookup
	log    *slog.Logger
	now    func() time.Time
	// id names this process in the operations it runs (ufop.Operation).
	id string

	// accounts and admin serve the users API (users.go); nil: none.
	accounts *users.Store
	admin    string

	// buckets serves the buckets API (buckets.go); nil: none.
	buckets *bucketsAPI

	// builds are running build goroutines, so Close can wait for them and
	// the log follower can tell when a build ended.
	mu      sync.Mutex
	running map[string]bool
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

// New returns a control plane server.
func New(cfg Config, keeper *ufop.Keeper, b Builder, logs BuildLogs, orch cluster.Orchestrator, users auth.Lookup, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg: cfg, keeper: keeper, build: b, logs: logs, orch: orch, users: users, log: log,
		now: time.Now, id: processID(), running: map[string]bool{}, ctx: ctx, cancel: cancel,
	}
}

// Close cancels running builds and waits for them.
func (s *Server) Close() {
	s.cancel()
	s.wg.Wait()
}

// Mount adds the /v1 routes to e.
func (s *Server) Mount(e *gin.Engine) {
	v1 := e.Group("/v1", s.authenticate)
	v1.GET("/whoami", s.whoami)
	v1.POST("/ufops", s.register)
	v1.GET("/ufops", s.list)
	u := v1.Group("/ufops/:name", s.loadRecord)
	u.GET("", s.info)
	u.DELETE("", s.ownerOnly, s.unregister)
	u.POST("/versions", s.ownerOnly, s.upload)
	u.GET("/versions", s.ownerOnly, s.versions)
	u.GET("/versions/:version", s.ownerOnly, s.version)
	u.GET("/versions/:version/log", s.ownerOnly, s.buildLog)
	u.PUT("/current", s.ownerOnly, s.chver)
	u.PUT("/instances", s.ownerOnly, s.resize)
	u.GET("/instances", s.ownerOnly, s.state)
	u.GET("/instances/:index/log", s.ownerOnly, s.instanceLog)
	u.POST("/upgrade", s.ownerOnly, s.upgrade)
	u.PUT("/scale-policy", s.ownerOnly, s.setScalePolicy)
	u.DELETE("/scale-policy", s.ownerOnly, s.scalePolicyOff)
	s.mountBuckets(v1)
	s.mountUsers(v1)
}

const (
	ctxUser   = "qufop.user"
	ctxRecord = "qufop.record"
)

func (s *Server) authenticate(c *gin.Context) {
	user, err := auth.Verify(c.Request, s.users, s.now())
	if err != nil {
		fail(c, err)
		return
	}
	c.Set(ctxUser, user)
	c.Next()
}

func (s *Server) loadRecord(c *gin.Context) {
	rec, err := s.keeper.Get(c.Request.Context(), c.Param("name"))
	if err != nil {
		fail(c, err)
		return
	}
	// A private UFOP of someone else does not exist for the caller.
	if rec.Owner != c.GetString(ctxUser) && rec.Mode != ufop.Public {
		fail(c, errs.NotFound("no such ufop %q", rec.Name))
		return
	}
	c.Set(ctxRecord, rec)
	c.Next()
}

func (s *Server) ownerOnly(c *gin.Context) {
	if record(c).Owner != c.GetString(ctxUser) {
		fail(c, errs.New(http.StatusForbidden, "ufop %q belongs to another user", record(c).Name))
		return
	}
	c.Next()
}

func record(c *gin.Context) *ufop.Record {
	return c.MustGet(ctxRecord).(*ufop.Record)
}

// fail answers err as Qiniu JSON.
func fail(c *gin.Context, err error) {
	st := errs.Status(err)
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(st, api.Error{Code: st, Error: errs.Public(err)})
}

func (s *Server) whoami(c *gin.Context) {
	c.JSON(http.StatusOK, api.WhoAmI{User: c.GetString(ctxUser)})
}
