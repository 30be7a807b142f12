package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/qufop/qufop/builder"
	"github.com/qufop/qufop/builder/baseimage"
	"github.com/qufop/qufop/platform"
)

// gatewayFlags are the flags of every command that runs a gateway.
type gatewayFlags struct {
	cfg     platform.GatewayConfig
	buckets []string // NAME=DIR
	quiet   bool
}

func newGatewayFlags(fs *pflag.FlagSet) *gatewayFlags {
	f := &gatewayFlags{cfg: platform.NewDefaultGatewayConfig()}
	gw, img := &f.cfg.Gateway, &f.cfg.Image
	fs.StringVar(&gw.Listen, "listen", gw.Listen, "address the gateway listens on")
	fs.StringArrayVar(&f.buckets, "bucket", nil, "serve folder DIR as bucket NAME (NAME=DIR, repeatable)")
	fs.IntVar(&gw.Workers, "workers", gw.Workers, "built-in steps run at once (the default is this machine's number of cores)")
	fs.IntVar(&gw.QueueSize, "queue", gw.QueueSize, "steps of each class (paid, free) that may wait for a worker before new ones get 503")
	fs.IntVar(&gw.QueueSizePaid, "queue-paid", gw.QueueSizePaid, "steps of paid users that may wait for a worker (0: as --queue)")
	fs.IntVar(&gw.QueueSizeFree, "queue-free", gw.QueueSizeFree, "steps of free users that may wait for a worker (0: as --queue)")
	fs.IntVar(&gw.PaidReserve, "paid-reserve", gw.PaidReserve, "workers kept for paid users' steps while paid work is about (a paid step in the last 10 s), at most --workers minus 1 (the default is a quarter of the cores, at least 1 from 2 cores on)")
	fs.DurationVar(&gw.RequestTimeout, "timeout", gw.RequestTimeout, "deadline of one processing request (504 past it)")
	fs.Int64Var(&gw.MaxSourceBytes, "max-source-bytes", gw.MaxSourceBytes, "largest stored object a processing request reads")
	fs.IntVar(&gw.MaxConns, "max-conns", gw.MaxConns, "connections open at once on this gateway; more get 503 (0: no limit)")
	fs.IntVar(&gw.MaxConnsPerIP, "max-conns-per-ip", gw.MaxConnsPerIP, "connections open at once from one client address, an IPv4 address or an IPv6 /64; more get 503 (0: no limit)")
	fs.DurationVar(&gw.HeaderTimeout, "header-timeout", gw.HeaderTimeout, "wait for each request's header before the connection is closed")
	fs.DurationVar(&gw.IdleTimeout, "idle-timeout", gw.IdleTimeout, "wait for the next request on a kept-alive connection before it is closed")
	fs.IntVar(&img.MaxSrcSide, "max-source-side", img.MaxSrcSide, "largest input image side, pixels")
	fs.IntVar(&img.MaxSrcPixels, "max-source-pixels", img.MaxSrcPixels, "largest input image area, pixels")
	fs.IntVar(&img.MaxOutSide, "max-output-side", img.MaxOutSide, "largest output image side, pixels")
	fs.IntVar(&img.MaxOutPixels, "max-output-pixels", img.MaxOutPixels, "largest output image area, pixels")
	fs.IntVar(&img.MaxGIFFrames, "max-gif-frames", img.MaxGIFFrames, "most frames of an animated input")
	fs.Int64Var(&img.WholeImageBudget, "whole-image-budget", img.WholeImageBudget, "bytes of memory that whole-image operations (rotate, auto-orient of a turned image) may take at once, counted as twice each one's decoded image; more wait, a step that alone needs more gets 400")
	fs.Int64Var(&f.cfg.CacheBytes, "source-cache", f.cfg.CacheBytes, "bytes of small stored objects kept in memory (0: none)")
	fs.DurationVar(&f.cfg.CacheValid, "source-cache-valid", f.cfg.CacheValid, "how long a cached object is served before its file is checked again (writes through the platform are seen at once; 0: check on every read)")
	fs.Int64Var(&f.cfg.CacheObjectBytes, "source-cache-object", f.cfg.CacheObjectBytes, "largest object the source cache keeps (large sources are dominated by their processing)")
	fs.BoolVar(&f.quiet, "quiet", false, "no access log")
	fs.BoolVar(&gw.FastFront, "fast-front", gw.FastFront, "serve connections that start with a UFOP processing URL with fasthttp (a client leaving is not noticed there)")
	fs.BoolVar(&f.cfg.Pprof, "pprof", false, "serve Go profiles at /debug/pprof/ (for operators; keep it off on public listeners)")
	return f
}

// config is the gateway's configuration from the flags, logging to logw.
func (f *gatewayFlags) config(logw io.Writer) (platform.GatewayConfig, error) {
	cfg := f.cfg
	cfg.Buckets = nil
	for _, s := range f.buckets {
		name, dir, ok := strings.Cut(s, "=")
		if !ok || name == "" || dir == "" {
			return cfg, fmt.Errorf("--bucket %q: want NAME=DIR", s)
		}
		cfg.Buckets = append(cfg.Buckets, platform.Bucket{Name: name, Dir: dir})
	}
	cfg.Log = newLogger(logw, f.quiet)
	return cfg, nil
}

// newLogger writes one line per event to w; quiet keeps only warnings and
// errors (so the access log costs nothing).
func newLogger(w io.Writer, quiet bool) *slog.Logger {
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// controlFlags are the control plane's flags (dev and builder).
type controlFlags struct {
	cfg        platform.ControlConfig
	baseImages []string // NAME=REF
	// accessFlag and secretFlag are the removed --access-key/--secret-key.
	accessFlag, secretFlag string
}

func newControlFlags(fs *pflag.FlagSet, registry, registryUsage string) *controlFlags {
	f := &controlFlags{}
	// The admin keys come from the environment (rendered from Nomad
	// Variables in jobspecs/builder.nomad.hcl), never from flags: a command
	// line is visible to every user of the node (ps, /proc) and is kept in
	// Nomad's job spec. The old flags stay, hidden, to say so.
	fs.StringVar(&f.accessFlag, "access-key", "", "")
	fs.StringVar(&f.secretFlag, "secret-key", "", "")
	_ = fs.MarkHidden("access-key")
	_ = fs.MarkHidden("secret-key")
	fs.StringVar(&f.cfg.Registry, "registry", registry, registryUsage)
	fs.StringArrayVar(&f.baseImages, "base-image", nil, `base image a ufop.yaml "image:" name stands for (NAME=REF, repeatable; defaults: `+defaultBases()+`)`)
	fs.DurationVar(&f.cfg.BuildTimeout, "build-timeout", builder.DefaultTimeout, "deadline of one UFOP build")
	return f
}

func defaultBases() string {
	var out []string
	for name, ref := range builder.DefaultBaseImages() {
		out = append(out, name+"="+ref)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// config is the control plane's configuration from the flags.
func (f *controlFlags) config() (platform.ControlConfig, error) {
	cfg := f.cfg
	if f.accessFlag != "" || f.secretFlag != "" {
		return cfg, fmt.Errorf("--access-key and --secret-key are gone (a command line is visible to every user of the machine): set %s and %s in the environment instead", envAccessKey, envSecretKey)
	}
	cfg.Creds.AccessKey, cfg.Creds.SecretKey = os.Getenv(envAccessKey), os.Getenv(envSecretKey)
	if (cfg.Creds.AccessKey == "") != (cfg.Creds.SecretKey == "") {
		return cfg, fmt.Errorf("set both %s and %s, or neither (then keys are generated once into <data>/admin.json)", envAccessKey, envSecretKey)
	}
	cfg.BaseImages = map[string]string{}
	for _, s := range f.baseImages {
		name, ref, ok := strings.Cut(s, "=")
		if !ok || name == "" || ref == "" {
			return cfg, fmt.Errorf("--base-image %q: want NAME=REF, e.g. ubuntu=%s", s, baseimage.BusyboxRef)
		}
		cfg.BaseImages[name] = ref
	}
	return cfg, nil
}

// keysText says where the admin keys are, for the welcome text.
func keysText(k platform.Keys) string {
	if k.From == "given" {
		return "from $" + envAccessKey + " and $" + envSecretKey
	}
	return "in " + k.From
}

// printGeneratedKeys says that keys were generated and where the secret is;
// never the secret itself: a service's output ends up in logs (Nomad keeps
// an allocation's stdout), readable by more people than the key file.
func printGeneratedKeys(w io.Writer, who string, k platform.Keys) {
	if k.Generated {
		fmt.Fprintf(w, "%s: admin keys generated: access key %s, secret key in %s (readable by this user only)\n", who, k.AccessKey, k.From)
	}
}

// signalContext ends on SIGINT or SIGTERM (Ctrl-C stops the server
// cleanly) or when parent ends.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}
