package platform

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image"
	"github.com/qufop/qufop/gateway"
	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/storage/local"
)

// Bucket is a folder served as a bucket.
type Bucket struct {
	Name, Dir string
}

// GatewayConfig is the data plane's configuration, shared by Dev and
// Gateway.
type GatewayConfig struct {
	Gateway gateway.Config
	Image   image.Config
	// Buckets are served besides (for Dev) the folders under <data>/buckets.
	Buckets []Bucket
	// CacheBytes of small stored objects are kept in memory (0: none),
	// objects up to CacheObjectBytes, served for CacheValid before their
	// file is checked again.
	CacheBytes, CacheObjectBytes int64
	CacheValid                   time.Duration
	// Pprof serves Go profiles at /debug/pprof/.
	Pprof bool
	// Log gets the access log and events; nil: discarded.
	Log *slog.Logger
}

// NewDefaultGatewayConfig returns the defaults.
func NewDefaultGatewayConfig() GatewayConfig {
	return GatewayConfig{
		Gateway:          gateway.NewDefaultConfig(),
		Image:            image.NewDefaultConfig(),
		CacheBytes:       64 << 20,
		CacheObjectBytes: 64 << 10,
		CacheValid:       local.DefaultValid,
	}
}

func (c *GatewayConfig) logger() *slog.Logger {
	c.Log = orDiscard(c.Log)
	return c.Log
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return log
}

// dataPlane is what Dev and Gateway share: the buckets and the server.
type dataPlane struct {
	set   *storage.Set
	cache []local.Option
}

func newDataPlane(c GatewayConfig) *dataPlane {
	dp := &dataPlane{set: &storage.Set{}}
	if c.CacheBytes > 0 {
		// One source cache shared by every bucket.
		dp.cache = []local.Option{local.WithCache(local.NewCache(c.CacheObjectBytes, c.CacheBytes, c.CacheValid))}
	}
	return dp
}

// addBuckets serves the configured folders.
func (dp *dataPlane) addBuckets(bs []Bucket) error {
	for _, b := range bs {
		lb, err := local.New(b.Name, b.Dir, dp.cache...)
		if err != nil {
			return fmt.Errorf("bucket %s=%s: %w", b.Name, b.Dir, err)
		}
		if err := dp.set.Add(lb); err != nil {
			return fmt.Errorf("bucket %s=%s: %w", b.Name, b.Dir, err)
		}
	}
	return nil
}

// addDataBuckets creates <data>/buckets (and the demo bucket the first
// time) and serves every sub-folder as a bucket.
func (dp *dataPlane) addDataBuckets(data string, demo map[string][]byte, log *slog.Logger) error {
	root := filepath.Join(data, "buckets")
	_, err := os.Stat(root)
	first := errors.Is(err, fs.ErrNotExist)
	if err != nil && !first {
		return fmt.Errorf("data folder: %w", err)
	}
	if first {
		dir := filepath.Join(root, DemoBucket)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating the demo bucket: %w", err)
		}
		for name, b := range demo {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				return fmt.Errorf("creating the demo bucket: %w", err)
			}
		}
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	var bs []Bucket
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if !storage.ValidBucketName(e.Name()) {
			log.Warn("skipping a folder that is not a valid bucket name", "dir", filepath.Join(root, e.Name()))
			continue
		}
		bs = append(bs, Bucket{Name: e.Name(), Dir: filepath.Join(root, e.Name())})
	}
	return dp.addBuckets(bs)
}

// server builds a gateway with the built-in commands over the buckets.
func (dp *dataPlane) server(c GatewayConfig, opts ...gateway.Option) (*gateway.Server, error) {
	// One source limit for the gateway's read and the image commands.
	c.Image.MaxSrcBytes = c.Gateway.MaxSourceBytes
	if err := c.Image.Validate(); err != nil {
		return nil, err
	}
	objs := &serverObjects{}
	c.Image.Objects = objs
	img, err := image.New(c.Image)
	if err != nil {
		return nil, err
	}
	reg := fop.Registry{}
	img.Register(reg)
	if c.Pprof {
		opts = append(opts, gateway.WithPprof())
	}
	srv, err := gateway.New(c.Gateway, dp.set, reg, c.logger(), opts...)
	if err != nil {
		return nil, err
	}
	objs.srv = srv
	return srv, nil
}
