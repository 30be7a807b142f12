package platform

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qufop/qufop/cluster/consul"
	"github.com/qufop/qufop/cluster/nomad"
	"github.com/qufop/qufop/internal/serve"
	"github.com/qufop/qufop/scaler"
	"github.com/qufop/qufop/scaler/prom"
	"github.com/qufop/qufop/scaler/scrape"
)

// ScalerConfig configures the scaler role (`qufop scaler`).
type ScalerConfig struct {
	// Listen serves /health and /metrics.
	Listen    string
	NomadAddr string // "": NOMAD_ADDR or the local agent
	// UFOPNetwork is the Docker network of the UFOP jobs it scales (the
	// builder's, since a scale redeploys the job); "": $QUFOP_UFOP_NETWORK.
	UFOPNetwork string
	ConsulAddr  string // "": CONSUL_HTTP_ADDR or the local agent
	// Prometheus is the URL of the Prometheus that scrapes the gateways;
	// "" scrapes every gateway (Consul service qufop-gateway) directly.
	Prometheus string
	// PromMatcher narrows the Prometheus series to the gateways' (e.g.
	// `job="qufop-gateway"`); with it, a gateway Prometheus sees down
	// makes the figures partial (no scale-down that round).
	PromMatcher string
	// LockKey and LockTTL are the Consul lock that keeps one scaler of
	// several deciding.
	LockKey string
	LockTTL time.Duration
	// Tick is the scaler's loop tick (0: the default).
	Tick time.Duration
	Log  *slog.Logger
}

// NewDefaultScalerConfig returns the defaults.
func NewDefaultScalerConfig() ScalerConfig {
	return ScalerConfig{Listen: "127.0.0.1:8083", LockKey: consul.DefaultLockKey, LockTTL: consul.DefaultLockTTL}
}

// Scaler is the scaler on its own: figures from Prometheus or the
// gateways, counts applied to Nomad jobs, records in Consul KV, and a
// Consul lock so that one of several scalers decides.
type Scaler struct {
	cfg     ScalerConfig
	scaler  *scaler.Scaler
	elector *consul.Elector
	source  string
	nomad   string
	consul  string
	srv     *http.Server
	ln      net.Listener
	closers closers
}

// NewScaler reaches nothing yet: it builds the clients and binds the
// listener. Serve runs it.
func NewScaler(ctx context.Context, cfg ScalerConfig) (_ *Scaler, err error) {
	s := &Scaler{cfg: cfg}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	log := orDiscard(cfg.Log)
	cc, consulAddr, err := consulClient(cfg.ConsulAddr)
	if err != nil {
		return nil, err
	}
	nc, nomadAddr, err := nomadClient(cfg.NomadAddr)
	if err != nil {
		return nil, err
	}
	s.nomad, s.consul = nomadAddr, consulAddr

	var src scaler.Source
	if cfg.Prometheus != "" {
		p, err := prom.New(prom.Config{URL: cfg.Prometheus, Matcher: cfg.PromMatcher})
		if err != nil {
			return nil, err
		}
		src, s.source = p, "prometheus "+cfg.Prometheus
	} else {
		cat := consul.NewCatalog(cc, consul.CatalogOptions{ServicePrefix: "qufop-"})
		s.closers.add(func() { cat.Close() })
		sc, err := scrape.New(scrape.Config{Gateways: scrape.FromCatalog(cat, "gateway")})
		if err != nil {
			return nil, err
		}
		src, s.source = sc, "the gateways' /metrics (Consul service qufop-gateway)"
	}
	s.scaler = scaler.New(scaler.Config{Logger: log, Tick: cfg.Tick}, src, nil,
		nomad.New(nc, ufopJobOptions(cfg.UFOPNetwork)), consulKeeper(cc))
	s.elector = consul.NewElector(cc, cfg.LockKey, consul.ElectorOptions{
		TTL:  cfg.LockTTL,
		Logf: func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) },
	})

	reg := prometheus.NewRegistry()
	reg.MustRegister(s.scaler.Metrics(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(gin.Recovery())
	e.GET("/health", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"status": "ok", "leader": s.elector.Leading(), "lock": s.elector.Key()})
	})
	e.GET("/metrics", gin.WrapH(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	if s.ln, err = listen(cfg.Listen); err != nil {
		return nil, err
	}
	s.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Serve takes part in the election and, while this scaler holds the lock,
// evaluates every UFOP with a policy; until ctx ends.
func (s *Scaler) Serve(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- serve.Serve(ctx, s.srv, s.ln, 5*time.Second) }()
	err := s.elector.Run(ctx, func(lctx context.Context) {
		s.scaler.Metrics().Leader.Set(1)
		defer s.scaler.Metrics().Leader.Set(0)
		_ = s.scaler.Run(lctx)
	})
	if serr := <-served; err == nil {
		err = serr
	}
	return err
}

// Close releases what NewScaler took.
func (s *Scaler) Close() {
	if s.ln != nil {
		s.ln.Close()
	}
	s.closers.close()
}

// Addr is the address of /health and /metrics.
func (s *Scaler) Addr() string { return s.ln.Addr().String() }

// Endpoints are the Nomad and Consul addresses and the figures' source.
func (s *Scaler) Endpoints() (nomad, consul, source string) { return s.nomad, s.consul, s.source }
