package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/docker/docker/client"
	"github.com/gin-gonic/gin"
	"github.com/spf13/pflag"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/builder"
	"github.com/qufop/qufop/builder/baseimage"
	"github.com/qufop/qufop/cluster/local"
	"github.com/qufop/qufop/control"
	"github.com/qufop/qufop/dispatch"
	"github.com/qufop/qufop/gateway"
	"github.com/qufop/qufop/internal/serve"
	"github.com/qufop/qufop/ufop"
)

// adminUser owns everything `qufop dev` serves (its buckets and the UFOPs
// registered with its keys).
const adminUser = "admin"

// platformFlags are the control-plane flags of `qufop dev`.
type platformFlags struct {
	creds     auth.Credentials
	registry  string
	noDocker  bool
	busybox   string
	buildTime time.Duration
}

func newPlatformFlags(fs *pflag.FlagSet) *platformFlags {
	f := &platformFlags{}
	fs.StringVar(&f.creds.AccessKey, "access-key", "", "access key of the admin user (default: generated once and kept in <data>/admin.json)")
	fs.StringVar(&f.creds.SecretKey, "secret-key", "", "secret key of the admin user")
	fs.StringVar(&f.registry, "registry", "auto", `registry UFOP images are pushed to ("auto": 127.0.0.1:5000 if it answers, else none: images stay in the local daemon)`)
	fs.BoolVar(&f.noDocker, "no-docker", false, "run UFOPs as plain processes even if a Docker daemon answers (isolates nothing)")
	fs.StringVar(&f.busybox, "busybox", "/bin/busybox", "busybox-static binary that "+baseimage.BusyboxRef+" is made from when missing")
	fs.DurationVar(&f.buildTime, "build-timeout", builder.DefaultTimeout, "deadline of one UFOP build")
	return f
}

// platform is the UFOP half of `qufop dev`: builder, orchestrator, Keeper,
// management API and dispatch.
type platform struct {
	runtime  local.Runtime
	control  *control.Server
	dispatch *dispatch.Dispatcher
	creds    auth.Credentials
	keysFrom string // where the admin keys are, for the welcome text
	mode     string
	registry string
	blobLn   net.Listener
	closers  []func()
}

// loadAdmin returns the admin keys: the flags, else <data>/admin.json,
// else new ones saved there (0600).
func loadAdmin(data string, flags auth.Credentials) (auth.Credentials, bool, error) {
	if flags.AccessKey != "" || flags.SecretKey != "" {
		if flags.AccessKey == "" || flags.SecretKey == "" {
			return auth.Credentials{}, false, errors.New("give both --access-key and --secret-key, or neither")
		}
		return flags, false, nil
	}
	path := filepath.Join(data, "admin.json")
	b, err := os.ReadFile(path)
	if err == nil {
		var c auth.Credentials
		if err := json.Unmarshal(b, &c); err != nil || c.AccessKey == "" || c.SecretKey == "" {
			return auth.Credentials{}, false, fmt.Errorf("%s is corrupt: remove it to get new keys", path)
		}
		return c, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return auth.Credentials{}, false, err
	}
	c := auth.NewCredentials()
	b, _ = json.MarshalIndent(c, "", "  ")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return auth.Credentials{}, false, err
	}
	return c, true, nil
}

func probeRegistry(addr string) bool {
	hc := &http.Client{Timeout: time.Second}
	r, err := hc.Get("http://" + addr + "/v2/")
	if err != nil {
		return false
	}
	r.Body.Close()
	return r.StatusCode == http.StatusOK
}

// newPlatform starts the UFOP half of the platform under data.
func newPlatform(ctx context.Context, f *platformFlags, data string, out io.Writer, log *slog.Logger) (*platform, error) {
	p := &platform{}
	ok := false
	defer func() {
		if !ok {
			p.Close()
		}
	}()
	creds, generated, err := loadAdmin(data, f.creds)
	if err != nil {
		return nil, err
	}
	p.creds = creds
	p.keysFrom = "given with --access-key and --secret-key"
	if f.creds.AccessKey == "" {
		p.keysFrom = "in " + filepath.Join(data, "admin.json")
	}
	if generated {
		fmt.Fprintf(out, "qufop dev: admin keys generated (kept in %s):\n  access key %s\n  secret key %s\n",
			filepath.Join(data, "admin.json"), creds.AccessKey, creds.SecretKey)
	}

	kv, err := local.NewKV(filepath.Join(data, "kv.json"))
	if err != nil {
		return nil, err
	}
	keeper := ufop.NewKeeper(kv)

	rt, err := local.New(ctx, local.Config{
		Options:  local.Options{Logger: log},
		LogDir:   filepath.Join(data, "instances"),
		NoDocker: f.noDocker,
	})
	if err != nil {
		return nil, fmt.Errorf("local orchestrator: %w", err)
	}
	p.runtime = rt
	p.closers = append(p.closers, func() { rt.Close() })
	p.mode = rt.Mode()

	bcfg := builder.NewDefaultConfig()
	bcfg.Dir = filepath.Join(data, "builder")
	bcfg.Timeout = f.buildTime
	switch f.registry {
	case "auto":
		bcfg.Registry = ""
		if probeRegistry(builder.DefaultRegistry) {
			bcfg.Registry = builder.DefaultRegistry
		}
	default:
		bcfg.Registry = f.registry
	}
	p.registry = bcfg.Registry
	var backend builder.Backend
	if rt.Mode() == "docker" {
		dc, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, func() { dc.Close() })
		if err := baseimage.ImportBusybox(ctx, dc, baseimage.BusyboxRef, f.busybox); err != nil {
			fmt.Fprintf(out, "qufop dev: %v: UFOPs on %s cannot be built\n", err, baseimage.BusyboxRef)
		}
		backend = builder.NewDocker(bcfg, dc)
	} else {
		backend = builder.NewProcess(bcfg)
	}
	b, err := builder.New(bcfg, backend)
	if err != nil {
		return nil, err
	}

	users := &auth.Users{}
	users.Add(adminUser, creds)
	ccfg := control.NewDefaultConfig()
	ccfg.WorkDir = filepath.Join(data, "uploads")
	ccfg.MaxUploadBytes = bcfg.MaxUploadBytes
	p.control = control.New(ccfg, keeper, buildAdapter{b: b, lim: bcfg.Limits()}, b.Logs(), rt, users.Lookup, log)
	p.closers = append(p.closers, p.control.Close)

	p.dispatch = dispatch.New(dispatch.NewDefaultConfig(), keeper, rt, &ufop.Caller{})
	// Instances reach the gateway's blob route through their own network:
	// a listener on the orchestrator's host address serves only blobs.
	p.blobLn, err = net.Listen("tcp", net.JoinHostPort(rt.HostIP(), "0"))
	if err != nil {
		return nil, fmt.Errorf("blob listener on %s: %w", rt.HostIP(), err)
	}
	p.dispatch.SetBlobBase("http://" + p.blobLn.Addr().String())
	ok = true
	return p, nil
}

// options wires the platform into the gateway.
func (p *platform) options() []gateway.Option {
	return []gateway.Option{
		gateway.WithUFOPs(p.dispatch, func(string) string { return adminUser }),
		gateway.WithBlobs(dispatch.BlobPath+":token", p.dispatch.Blobs().Handler),
	}
}

// serveBlobs serves the blob route on the instances' network until ctx ends.
func (p *platform) serveBlobs(ctx context.Context) {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.GET(dispatch.BlobPath+":token", p.dispatch.Blobs().Handler)
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	_ = serve.Serve(ctx, srv, p.blobLn, 5*time.Second)
}

// Close stops the background work (running UFOP containers keep running
// and are adopted at the next start).
func (p *platform) Close() {
	if p.blobLn != nil {
		p.blobLn.Close()
	}
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

// buildAdapter lets the management API drive the builder.
type buildAdapter struct {
	b   *builder.Builder
	lim builder.Limits
}

func (a buildAdapter) Unpack(ctx context.Context, r io.Reader, dest string) (*ufop.Spec, error) {
	return builder.Unpack(ctx, r, dest, a.lim)
}

func (a buildAdapter) Build(ctx context.Context, b control.Build, log io.Writer) (control.Built, error) {
	res, err := a.b.Build(ctx, builder.Job{Owner: b.Owner, Name: b.Name, Version: b.Version, TarballPath: b.Tarball}, log)
	return control.Built{Image: res.Image, Dir: res.Dir}, err
}
