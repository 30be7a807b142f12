package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"
	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/buckets"
	"github.com/qufop/qufop/builder"
	"github.com/qufop/qufop/cluster/consul"
	"github.com/qufop/qufop/cluster/nomad"
	"github.com/qufop/qufop/dispatch"
	"github.com/qufop/qufop/gateway"
	"github.com/qufop/qufop/internal/serve"
	"github.com/qufop/qufop/jobspecs"
	"github.com/qufop/qufop/ufop"
	"github.com/qufop/qufop/users"
)

// consulClient is a Consul API client of addr ("": CONSUL_HTTP_ADDR or the
// local agent; the token from CONSUL_HTTP_TOKEN, ...).
func consulClient(addr string) (*consulapi.Client, string, error) {
	cfg := consulapi.DefaultConfig()
	if addr != "" {
		cfg.Address = addr
	}
	c, err := consulapi.NewClient(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("consul: %w", err)
	}
	return c, cfg.Address, nil
}

// nomadClient is a Nomad API client of addr ("": NOMAD_ADDR or the local
// agent; the token from NOMAD_TOKEN, ...).
func nomadClient(addr string) (*nomadapi.Client, string, error) {
	cfg := nomadapi.DefaultConfig()
	if addr != "" {
		cfg.Address = addr
	}
	c, err := nomadapi.NewClient(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("nomad: %w", err)
	}
	return c, cfg.Address, nil
}

// consulKeeper is the Keeper on Consul KV under qufop/.
func consulKeeper(c *consulapi.Client) *ufop.Keeper {
	return ufop.NewKeeper(consul.NewKV(c, consul.DefaultPrefix))
}

// GatewayRoleConfig configures Gateway.
type GatewayRoleConfig struct {
	GatewayConfig
	// Consul runs UFOP steps: records from Consul KV, healthy instances
	// from Consul's health endpoint. ConsulAddr "" means CONSUL_HTTP_ADDR.
	Consul     bool
	ConsulAddr string
	// Advertise is the host:port where instances fetch /uop inputs
	// (default: the listen address).
	Advertise string
	// Owner owns the buckets served (a private UFOP serves only its owner).
	Owner string
}

// Gateway is the data plane on its own.
type Gateway struct {
	srv     *gateway.Server
	ln      net.Listener
	closers closers
}

// NewGateway opens the buckets, binds the listener and, with Consul, wires
// UFOP steps.
func NewGateway(ctx context.Context, cfg GatewayRoleConfig) (_ *Gateway, err error) {
	g := &Gateway{}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	dp := newDataPlane(cfg.GatewayConfig)
	if err := dp.addBuckets(cfg.Buckets); err != nil {
		return nil, err
	}
	// With Consul the buckets may all come from records (qufop bucket add).
	if len(dp.set.Names()) == 0 && !cfg.Consul {
		return nil, errors.New("no bucket to serve: give --bucket NAME=DIR")
	}
	if g.ln, err = listen(cfg.Gateway.Listen); err != nil {
		return nil, err
	}
	var opts []gateway.Option
	if cfg.Consul {
		cc, _, err := consulClient(cfg.ConsulAddr)
		if err != nil {
			return nil, err
		}
		catalog := consul.NewCatalog(cc, consul.CatalogOptions{})
		g.closers.add(func() { catalog.Close() })
		d := dispatch.New(dispatch.NewDefaultConfig(), consulKeeper(cc), catalog, &ufop.Caller{})
		adv := cfg.Advertise
		if adv == "" {
			adv = g.ln.Addr().String()
		}
		if _, _, err := net.SplitHostPort(adv); err != nil {
			return nil, fmt.Errorf("--advertise-addr %q: want host:port", adv)
		}
		d.SetBlobBase("http://" + adv)
		owner := cfg.Owner
		opts = append(opts,
			gateway.WithUFOPs(d, func(string) string { return owner }),
			gateway.WithBlobs(dispatch.BlobPath+":token", d.Blobs().Handler),
			gateway.WithCollector(d.Collector()),
			// The users' limits, from the store the builder keeps in
			// Consul KV (no keys: the gateway only reads limits).
			admission(users.NewCache(users.NewStore(consul.NewKV(cc, consul.DefaultPrefix), AdminUser), nil, 0, 0)))
		// The bucket records the builder keeps, and the users' keys for
		// their download tokens (the admin's keys are not on gateways).
		kv := consul.NewKV(cc, consul.DefaultPrefix)
		keys := users.NewCache(users.NewStore(kv, AdminUser), nil, 0, 0)
		opts = append(opts, tenancy(dp.serveRecords(kv, cfg.logger(), &g.closers), keys.Lookup, AdminUser, keys))
	}
	if g.srv, err = dp.server(cfg.GatewayConfig, opts...); err != nil {
		return nil, err
	}
	return g, nil
}

// Addr is the listen address.
func (g *Gateway) Addr() string { return g.ln.Addr().String() }

// Serve runs until ctx ends.
func (g *Gateway) Serve(ctx context.Context) error { return g.srv.Serve(ctx, g.ln) }

// Close releases what NewGateway took.
func (g *Gateway) Close() {
	if g.ln != nil {
		g.ln.Close()
	}
	g.closers.close()
}

// BuilderConfig configures Builder.
type BuilderConfig struct {
	Control ControlConfig
	// Listen is the management API's address.
	Listen string
	// Data holds uploads, build logs and generated admin keys.
	Data string
	// NomadAddr and ConsulAddr: "" means NOMAD_ADDR and CONSUL_HTTP_ADDR
	// (tokens and namespace from NOMAD_TOKEN, NOMAD_NAMESPACE,
	// CONSUL_HTTP_TOKEN).
	NomadAddr, ConsulAddr string
	// UFOPNetwork is the Docker network the UFOP jobs run on
	// (jobspecs.Options.Network); "" keeps $QUFOP_UFOP_NETWORK's.
	UFOPNetwork string
	Log         *slog.Logger
}

// Builder is the control plane at scale.
// ufopJobOptions are the options of rendered UFOP jobs, on network if set.
func ufopJobOptions(network string) jobspecs.Options {
	o := jobspecs.DefaultOptions()
	if network != "" {
		o.Network = network
	}
	return o
}

type Builder struct {
	srv     *http.Server
	ln      net.Listener
	ctl     *controlPlane
	lock    *dataLock
	nomad   string
	consul  string
	closers closers
}

// NewBuilder reaches Consul, Nomad and Docker, loads the admin keys and
// binds the management API's listener.
func NewBuilder(ctx context.Context, cfg BuilderConfig) (_ *Builder, err error) {
	b := &Builder{}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	log := orDiscard(cfg.Log)
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return nil, err
	}
	if b.lock, err = lockData(cfg.Data, "qufop builder"); err != nil {
		return nil, err
	}
	cc, consulAddr, err := consulClient(cfg.ConsulAddr)
	if err != nil {
		return nil, err
	}
	nc, nomadAddr, err := nomadClient(cfg.NomadAddr)
	if err != nil {
		return nil, err
	}
	b.nomad, b.consul = nomadAddr, consulAddr
	dc, err := dockerClient(ctx)
	if err != nil {
		return nil, fmt.Errorf("%v: the builder builds images with it", err)
	}
	b.closers.add(func() { dc.Close() })
	bcfg := cfg.Control.builderConfig(cfg.Data)
	kv := consul.NewKV(cc, consul.DefaultPrefix)
	if b.ctl, err = newControlPlane(cfg.Control, cfg.Data, bcfg, builder.NewDocker(bcfg, dc),
		kv, ufop.NewKeeper(kv), nomad.New(nc, ufopJobOptions(cfg.UFOPNetwork)), log); err != nil {
		return nil, err
	}
	b.closers.add(b.ctl.server.Close)
	// The gateways serve the records; the builder checks a record's dir
	// on its own node (a shared mount at the same path everywhere).
	b.ctl.server.WithBuckets(buckets.NewKeeper(kv), AdminUser, nil)

	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(gin.Recovery())
	e.GET("/health", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	b.ctl.server.Mount(e)
	if b.ln, err = listen(cfg.Listen); err != nil {
		return nil, err
	}
	if err := b.lock.note("http://" + b.ln.Addr().String()); err != nil {
		return nil, err
	}
	b.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	return b, nil
}

// Serve runs the management API until ctx ends.
func (b *Builder) Serve(ctx context.Context) error {
	return serve.Serve(ctx, b.srv, b.ln, 20*time.Second)
}

// Close releases what NewBuilder took.
func (b *Builder) Close() {
	if b.ln != nil {
		b.ln.Close()
	}
	b.closers.close()
	b.lock.release()
}

// Addr is the management API's address.
func (b *Builder) Addr() string { return b.ln.Addr().String() }

// Keys are the admin keys and where they came from.
func (b *Builder) Keys() Keys { return b.ctl.keys }

// Endpoints are the Nomad and Consul addresses and the registry in use.
func (b *Builder) Endpoints() (nomad, consul, registry string) {
	return b.nomad, b.consul, b.ctl.registry
}
