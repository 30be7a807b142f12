package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image"
	"github.com/qufop/qufop/gateway"
	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/storage/local"
)

// gatewayFlags are the flags shared by every command that runs a gateway.
type gatewayFlags struct {
	gw      gateway.Config
	img     image.Config
	buckets []string // NAME=DIR
	quiet   bool
	pprof   bool

	cacheTotal, cacheObject int64
	cacheValid              time.Duration
	cache                   *local.Cache
}

func newGatewayFlags(fs *pflag.FlagSet) *gatewayFlags {
	f := &gatewayFlags{gw: gateway.NewDefaultConfig(), img: image.NewDefaultConfig()}
	fs.StringVar(&f.gw.Listen, "listen", f.gw.Listen, "address the gateway listens on")
	fs.StringArrayVar(&f.buckets, "bucket", nil, "serve folder DIR as bucket NAME (NAME=DIR, repeatable)")
	fs.IntVar(&f.gw.Workers, "workers", f.gw.Workers, "built-in steps run at once (default: number of cores)")
	fs.IntVar(&f.gw.QueueSize, "queue", f.gw.QueueSize, "steps that may wait for a worker before new ones get 503")
	fs.DurationVar(&f.gw.RequestTimeout, "timeout", f.gw.RequestTimeout, "deadline of one processing request (504 past it)")
	fs.Int64Var(&f.gw.MaxSourceBytes, "max-source-bytes", f.gw.MaxSourceBytes, "largest stored object a processing request reads")
	fs.IntVar(&f.img.MaxSrcSide, "max-source-side", f.img.MaxSrcSide, "largest input image side, pixels")
	fs.IntVar(&f.img.MaxSrcPixels, "max-source-pixels", f.img.MaxSrcPixels, "largest input image area, pixels")
	fs.IntVar(&f.img.MaxOutSide, "max-output-side", f.img.MaxOutSide, "largest output image side, pixels")
	fs.IntVar(&f.img.MaxOutPixels, "max-output-pixels", f.img.MaxOutPixels, "largest output image area, pixels")
	fs.IntVar(&f.img.MaxGIFFrames, "max-gif-frames", f.img.MaxGIFFrames, "most frames of an animated input")
	fs.Int64Var(&f.cacheTotal, "source-cache", 64<<20, "bytes of small stored objects kept in memory (0: none)")
	fs.DurationVar(&f.cacheValid, "source-cache-valid", local.DefaultValid, "how long a cached object is served before its file is checked again (writes through the platform are seen at once; 0: check on every read)")
	fs.Int64Var(&f.cacheObject, "source-cache-object", 64<<10, "largest object the source cache keeps (large sources are dominated by their processing)")
	fs.BoolVar(&f.quiet, "quiet", false, "no access log")
	fs.BoolVar(&f.gw.FastFront, "fast-front", f.gw.FastFront, "serve connections that start with a UFOP processing URL with fasthttp (a client leaving is not noticed there)")
	fs.BoolVar(&f.pprof, "pprof", false, "serve Go profiles at /debug/pprof/ (for operators; keep it off on public listeners)")
	return f
}

// bucketOptions are the options of every local bucket: one source cache
// shared by all.
func (f *gatewayFlags) bucketOptions() []local.Option {
	if f.cacheTotal <= 0 {
		return nil
	}
	if f.cache == nil {
		f.cache = local.NewCache(f.cacheObject, f.cacheTotal, f.cacheValid)
	}
	return []local.Option{local.WithCache(f.cache)}
}

// parseBucketFlags turns NAME=DIR flags into local buckets.
func (f *gatewayFlags) parseBucketFlags(set *storage.Set) error {
	for _, f1 := range f.buckets {
		name, dir, ok := strings.Cut(f1, "=")
		if !ok || name == "" || dir == "" {
			return fmt.Errorf("--bucket %q: want NAME=DIR", f1)
		}
		b, err := local.New(name, dir, f.bucketOptions()...)
		if err != nil {
			return fmt.Errorf("--bucket %q: %w", f1, err)
		}
		if err := set.Add(b); err != nil {
			return fmt.Errorf("--bucket %q: %w", f1, err)
		}
	}
	return nil
}

// newServer builds a gateway with the built-in commands over set.
func (f *gatewayFlags) newServer(set *storage.Set, logw io.Writer, opts ...gateway.Option) (*gateway.Server, error) {
	// One source limit for the gateway's read and the image commands.
	f.img.MaxSrcBytes = f.gw.MaxSourceBytes
	if err := f.img.Validate(); err != nil {
		return nil, err
	}
	img, err := image.New(f.img)
	if err != nil {
		return nil, err
	}
	reg := fop.Registry{}
	img.Register(reg)
	if f.pprof {
		opts = append(opts, gateway.WithPprof())
	}
	return gateway.New(f.gw, set, reg, f.logger(logw), opts...)
}

// logger writes one line per event to w; with --quiet only warnings and
// errors (so the access log costs nothing).
func (f *gatewayFlags) logger(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if f.quiet {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// listen binds the gateway's address; a failure names it.
func (f *gatewayFlags) listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", f.gw.Listen)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", f.gw.Listen, err)
	}
	return ln, nil
}

// signalContext ends on SIGINT or SIGTERM (Ctrl-C stops the server
// cleanly) or when parent ends.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}
