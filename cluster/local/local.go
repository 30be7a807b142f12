// Package local is the embedded default of the cluster roles for
// `qufop dev`: an orchestrator and catalog that run UFOP instances as
// Docker containers on this machine (or, where no Docker daemon answers,
// as plain processes, which isolates nothing), and a file-backed KV.
package local

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/client"

	"github.com/qufop/qufop/cluster"
)

// Runtime is a local orchestrator and catalog.
type Runtime interface {
	cluster.Orchestrator
	cluster.Catalog
	// HostIP is the address instances reach the platform at.
	HostIP() string
	// Mode is "docker" or "process".
	Mode() string
	// Warning is non-empty when the runtime isolates nothing (process mode).
	Warning() string
	// SetLoad tells the runtime how busy each instance is (the gateway's
	// dispatcher): a scale-in then stops the least busy instances, and
	// every instance that goes leaves the catalog, finishes its steps in
	// flight (for at most the workload's KillTimeout), and only then is
	// halted. nil (the default): the highest indexes go, halted at once.
	// Safe at any time; the platform calls it once the dispatcher exists.
	SetLoad(cluster.Load)
	// Close waits for the instances on their way out (scale-in) to be
	// gone, then stops the background loops.
	Close() error
}

// Config chooses and configures the local runtime.
type Config struct {
	Options
	// PlatformID, Network and PidsLimit: see DockerConfig. PlatformID is
	// required when a Docker daemon answers (New fails without it), and
	// checked (CheckPlatformID) whenever it is set.
	PlatformID string
	Network    string
	PidsLimit  int64
	// LogDir: see ProcessConfig.
	LogDir string
	// PingTimeout bounds the wait for the Docker daemon. Default 2s.
	PingTimeout time.Duration
	// NoDocker forces the process runtime.
	NoDocker bool
}

var (
	_ Runtime = (*Docker)(nil)
	_ Runtime = (*Process)(nil)
)

// New returns the Docker runtime (of platform cfg.PlatformID) when a daemon
// (as found by DOCKER_HOST and the other DOCKER_* variables) answers Ping
// within PingTimeout, else the process runtime, whose Warning (also logged)
// says that it isolates nothing.
func New(ctx context.Context, cfg Config) (Runtime, error) {
	opts := cfg.Options.withDefaults()
	if cfg.PlatformID != "" {
		if err := CheckPlatformID(cfg.PlatformID); err != nil {
			return nil, fmt.Errorf("local runtime: Config.PlatformID: %w", err)
		}
	}
	if !cfg.NoDocker {
		if cli, err := pingDocker(ctx, cfg.PingTimeout); err == nil {
			d, err := NewDocker(cli, DockerConfig{Options: cfg.Options, PlatformID: cfg.PlatformID, Network: cfg.Network, PidsLimit: cfg.PidsLimit})
			if err != nil {
				cli.Close()
				return nil, err
			}
			d.ownCli = true
			return d, nil
		} else {
			opts.Logger.Info("no Docker daemon answers; using the process runtime", "err", err)
		}
	}
	return NewProcess(ProcessConfig{Options: cfg.Options, LogDir: cfg.LogDir}), nil
}

func pingDocker(ctx context.Context, timeout time.Duration) (*client.Client, error) {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		cli.Close()
		return nil, err
	}
	return cli, nil
}
