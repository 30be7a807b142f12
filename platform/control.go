package platform

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"time"

	"github.com/docker/docker/client"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/builder"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/control"
	"github.com/qufop/qufop/ufop"
	"github.com/qufop/qufop/users"
)

// ControlConfig configures the control plane (the management API and the
// builder) of Dev and Builder.
type ControlConfig struct {
	// Creds are the admin user's keys; empty: generated once and kept in
	// <data>/admin.json.
	Creds auth.Credentials
	// Registry UFOP images are pushed to ("": none, images stay in the
	// local daemon). Dev also takes "auto": builder.DefaultRegistry if it
	// answers, else none.
	Registry string
	// BaseImages add to or override builder.DefaultBaseImages (the names
	// ufop.yaml's image may use, such as Qiniu's "ubuntu").
	BaseImages map[string]string
	// BuildTimeout bounds one build; DeployTimeout how long resize and
	// upgrade wait for a healthy deployment (0: the defaults).
	BuildTimeout, DeployTimeout time.Duration
}

// Keys says where the admin keys came from, for the welcome text.
type Keys struct {
	auth.Credentials
	// From is "given" (flags) or the file they are kept in.
	From string
	// Generated is true when they were made by this start.
	Generated bool
}

// controlPlane is the management API over a builder and an orchestrator.
type controlPlane struct {
	keys     Keys
	registry string
	server   *control.Server
	// users answers who holds a key, and a user's class and limits, from
	// the user store (for the gateway's admission as for signatures).
	users *users.Cache
}

// builderConfig is cfg as the builder takes it, under data.
func (cfg ControlConfig) builderConfig(data string) builder.Config {
	bcfg := builder.NewDefaultConfig()
	bcfg.Dir = filepath.Join(data, "builder")
	if cfg.BuildTimeout > 0 {
		bcfg.Timeout = cfg.BuildTimeout
	}
	bcfg.Registry = cfg.Registry
	maps.Copy(bcfg.BaseImages, cfg.BaseImages)
	return bcfg
}

// newControlPlane loads the admin keys under data and serves the management
// API on keeper, b and orch, with the users kept in kv.
func newControlPlane(cfg ControlConfig, data string, bcfg builder.Config, backend builder.Backend,
	kv cluster.KV, keeper *ufop.Keeper, orch cluster.Orchestrator, log *slog.Logger) (*controlPlane, error) {
	creds, generated, err := loadAdmin(data, cfg.Creds)
	if err != nil {
		return nil, err
	}
	keys := Keys{Credentials: creds, From: "given", Generated: generated}
	if cfg.Creds.AccessKey == "" {
		keys.From = filepath.Join(data, "admin.json")
	}
	b, err := builder.New(bcfg, backend)
	if err != nil {
		return nil, err
	}
	// The admin's keys are the platform's (flags, environment or
	// admin.json), never the store's, and they win over it.
	admin := &auth.Users{}
	admin.Add(AdminUser, creds)
	store := users.NewStore(kv, AdminUser)
	accounts := users.NewCache(store, admin.Lookup, 0, 0)
	ccfg := control.NewDefaultConfig()
	ccfg.WorkDir = filepath.Join(data, "uploads")
	ccfg.MaxUploadBytes = bcfg.MaxUploadBytes
	if cfg.DeployTimeout > 0 {
		ccfg.DeployTimeout = cfg.DeployTimeout
	}
	srv := control.New(ccfg, keeper, buildAdapter{b: b, lim: bcfg.Limits()}, b.Logs(), orch, accounts.Lookup, log).WithUsers(store, AdminUser)
	return &controlPlane{keys: keys, registry: bcfg.Registry, server: srv, users: accounts}, nil
}

// dockerClient returns a client of the Docker daemon (DOCKER_HOST, ...)
// that answered a ping within 5 s.
func dockerClient(ctx context.Context) (*client.Client, error) {
	dc, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := dc.Ping(pctx); err != nil {
		dc.Close()
		return nil, fmt.Errorf("no Docker daemon answers: %w", err)
	}
	return dc, nil
}

// buildAdapter lets the management API drive the builder.
type buildAdapter struct {
	b   *builder.Builder
	lim builder.Limits
}

func (a buildAdapter) Unpack(ctx context.Context, r io.Reader, dest string) (*ufop.Spec, error) {
	return builder.Unpack(ctx, r, dest, a.lim)
}

func (a buildAdapter) Remove(ctx context.Context, artifact string) error {
	return a.b.Remove(ctx, artifact)
}

func (a buildAdapter) Build(ctx context.Context, b control.Build, log io.Writer) (control.Built, error) {
	res, err := a.b.Build(ctx, builder.Job{Owner: b.Owner, Name: b.Name, Version: b.Version, TarballPath: b.Tarball}, log)
	return control.Built{Image: res.Image, Dir: res.Dir}, err
}
