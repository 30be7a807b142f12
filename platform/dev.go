package platform

import (
	"context"
	_ "embed"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/qufop/qufop/builder"
	"github.com/qufop/qufop/builder/baseimage"
	"github.com/qufop/qufop/cluster/local"
	"github.com/qufop/qufop/dispatch"
	"github.com/qufop/qufop/gateway"
	"github.com/qufop/qufop/internal/serve"
	"github.com/qufop/qufop/scaler"
	"github.com/qufop/qufop/ufop"
)

//go:embed sample/sample.jpg
var sampleJPEG []byte

// DemoBucket is created with a real photograph on a first start, so that
// the example URLs work at once.
const DemoBucket = "demo"

// DevConfig configures Dev.
type DevConfig struct {
	GatewayConfig
	Control ControlConfig
	// Data is the folder of the platform's state (buckets, KV, keys,
	// builds, its id). One Dev at a time may use it.
	Data string
	// NoDocker runs UFOPs as plain processes even when a Docker daemon
	// answers (isolates nothing).
	NoDocker bool
	// Busybox is the busybox-static binary that baseimage.BusyboxRef is
	// made from when the daemon lacks it.
	Busybox string
}

// NewDefaultDevConfig returns the defaults.
func NewDefaultDevConfig() DevConfig {
	return DevConfig{
		GatewayConfig: NewDefaultGatewayConfig(),
		Control:       ControlConfig{Registry: "auto"},
		Data:          "./qufop-data",
		Busybox:       "/bin/busybox",
	}
}

// Dev is the whole platform in one process.
type Dev struct {
	cfg      DevConfig
	lock     *dataLock
	id       string
	dp       *dataPlane
	runtime  local.Runtime
	ctl      *controlPlane
	dispatch *dispatch.Dispatcher
	srv      *gateway.Server
	scaler   *scaler.Scaler
	ln       net.Listener
	blobLn   net.Listener
	notices  []string
	closers  closers
}

// NewDev takes the data folder, opens the buckets, starts the UFOP half
// (runtime, builder, management API, dispatch) and binds the gateway's
// listener. Serve then runs it until its context ends.
func NewDev(ctx context.Context, cfg DevConfig) (_ *Dev, err error) {
	log := cfg.logger()
	d := &Dev{cfg: cfg}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	if d.lock, err = lockData(cfg.Data, "qufop dev"); err != nil {
		return nil, err
	}
	if d.id, err = loadIdentity(cfg.Data); err != nil {
		return nil, err
	}
	d.dp = newDataPlane(cfg.GatewayConfig)
	if err := d.dp.addDataBuckets(cfg.Data, map[string][]byte{"sample.jpg": sampleJPEG}, log); err != nil {
		return nil, err
	}
	if err := d.dp.addBuckets(cfg.Buckets); err != nil {
		return nil, err
	}

	kv, err := local.NewKV(filepath.Join(cfg.Data, "kv.json"))
	if err != nil {
		return nil, err
	}
	keeper := ufop.NewKeeper(kv)
	served := d.dp.serveRecords(kv, log, &d.closers)
	rt, err := local.New(ctx, local.Config{
		Options:    local.Options{Logger: log},
		PlatformID: d.id,
		LogDir:     filepath.Join(cfg.Data, "instances"),
		NoDocker:   cfg.NoDocker,
	})
	if err != nil {
		return nil, fmt.Errorf("local orchestrator: %w", err)
	}
	d.runtime = rt
	d.closers.add(func() { rt.Close() })

	ccfg := cfg.Control
	if ccfg.Registry == "auto" {
		ccfg.Registry = ""
		if probeRegistry(builder.DefaultRegistry) {
			ccfg.Registry = builder.DefaultRegistry
		}
	}
	bcfg := ccfg.builderConfig(cfg.Data)
	// Two platforms on one daemon and registry never share an image tag.
	bcfg.Namespace = d.id
	bcfg.Labels = map[string]string{local.LabelPlatform: d.id}
	var backend builder.Backend
	if rt.Mode() == "docker" {
		dc, err := dockerClient(ctx)
		if err != nil {
			return nil, err
		}
		d.closers.add(func() { dc.Close() })
		if err := baseimage.ImportBusybox(ctx, dc, baseimage.BusyboxRef, cfg.Busybox); err != nil {
			d.notices = append(d.notices, fmt.Sprintf("%v: UFOPs on %s cannot be built", err, baseimage.BusyboxRef))
		}
		backend = builder.NewDocker(bcfg, dc)
	} else {
		backend = builder.NewProcess(bcfg)
	}
	if d.ctl, err = newControlPlane(ccfg, cfg.Data, bcfg, backend, kv, keeper, rt, log); err != nil {
		return nil, err
	}
	d.closers.add(d.ctl.server.Close)
	d.ctl.server.WithBuckets(served.Keeper(), AdminUser, served.Fixed)

	d.dispatch = dispatch.New(dispatch.NewDefaultConfig(), keeper, rt, &ufop.Caller{})
	// Instances reach the gateway's blob route through their own network:
	// a listener on the orchestrator's host address serves only blobs.
	if d.blobLn, err = net.Listen("tcp", net.JoinHostPort(rt.HostIP(), "0")); err != nil {
		return nil, fmt.Errorf("blob listener on %s: %w", rt.HostIP(), err)
	}
	// The instances' firewall opens this port of the machine to them, and
	// no other.
	if fw, ok := rt.(interface{ AllowHostPort(int) error }); ok {
		if err := fw.AllowHostPort(d.blobLn.Addr().(*net.TCPAddr).Port); err != nil {
			return nil, fmt.Errorf("blob listener: %w", err)
		}
	}
	d.dispatch.SetBlobBase("http://" + d.blobLn.Addr().String())

	// The scaler reads the dispatcher's figures in process and is woken
	// as soon as a step has to wait.
	d.scaler = scaler.New(scaler.Config{Logger: log}, dispatchSource{d.dispatch}, nil, d.ctl.server.ScaleTarget(), keeper)
	d.dispatch.SetOnWait(d.scaler.Wake)
	// On scale-in the instances that go are the least busy, and finish
	// the steps the gateway has in flight at them before they stop.
	rt.SetLoad(d.dispatch)

	d.srv, err = d.dp.server(cfg.GatewayConfig,
		gateway.WithUFOPs(d.dispatch, func(string) string { return AdminUser }),
		tenancy(served, d.ctl.users.Lookup, AdminUser, d.ctl.users),
		gateway.WithBlobs(dispatch.BlobPath+":token", d.dispatch.Blobs().Handler),
		gateway.WithCollector(d.dispatch.Collector()),
		gateway.WithCollector(d.scaler.Metrics()),
		admission(d.ctl.users))
	if err != nil {
		return nil, err
	}
	d.ctl.server.Mount(d.srv.Engine())
	if d.ln, err = listen(cfg.Gateway.Listen); err != nil {
		return nil, err
	}
	if err := d.lock.note("http://" + d.ln.Addr().String()); err != nil {
		return nil, err
	}
	return d, nil
}

// Serve runs the gateway and the management API until ctx ends; in-flight
// requests are finished first.
func (d *Dev) Serve(ctx context.Context) error {
	go d.serveBlobs(ctx)
	sctx, stop := context.WithCancel(ctx)
	scaled := make(chan struct{})
	go func() {
		defer close(scaled)
		_ = d.scaler.Run(sctx)
	}()
	defer func() {
		stop()
		<-scaled
	}()
	return d.srv.Serve(ctx, d.ln)
}

// serveBlobs serves the blob route on the instances' network until ctx ends.
func (d *Dev) serveBlobs(ctx context.Context) {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.GET(dispatch.BlobPath+":token", d.dispatch.Blobs().Handler)
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	_ = serve.Serve(ctx, srv, d.blobLn, 5*time.Second)
}

// Close stops the background work and releases the data folder. Running
// UFOP containers keep running and are adopted at the next start with the
// same data folder.
func (d *Dev) Close() {
	if d.ln != nil {
		d.ln.Close()
	}
	if d.blobLn != nil {
		d.blobLn.Close()
	}
	d.closers.close()
	d.lock.release()
}

// Addr is the gateway's address (host:port).
func (d *Dev) Addr() string { return d.ln.Addr().String() }

// ID is the platform's id (kept in <data>/platform.json).
func (d *Dev) ID() string { return d.id }

// Buckets are the names of the buckets served.
func (d *Dev) Buckets() []string { return d.dp.set.Names() }

// Keys are the admin keys and where they came from.
func (d *Dev) Keys() Keys { return d.ctl.keys }

// Mode is the UFOP runtime: "docker" or "process".
func (d *Dev) Mode() string { return d.runtime.Mode() }

// Warning is non-empty when the runtime isolates nothing.
func (d *Dev) Warning() string { return d.runtime.Warning() }

// Registry is where images are pushed ("" : none).
func (d *Dev) Registry() string { return d.ctl.registry }

// Notices are problems found at start that do not stop the platform.
func (d *Dev) Notices() []string { return d.notices }

func probeRegistry(addr string) bool {
	hc := &http.Client{Timeout: time.Second}
	r, err := hc.Get("http://" + addr + "/v2/")
	if err != nil {
		return false
	}
	r.Body.Close()
	return r.StatusCode == http.StatusOK
}

// listen binds addr; a failure names it.
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	return ln, nil
}
