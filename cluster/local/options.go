package local

import (
	"io"
	"log/slog"
	"time"
)

// Options tune the supervision shared by the Docker and the process
// runtimes. Zero values take the defaults named on each field.
type Options struct {
	// HealthInterval is how often each instance is checked (exited?) and
	// probed: GET HealthPath (2xx: healthy); without a HealthPath a TCP
	// connection, and for Protocol "uop" any HTTP answer to GET /. Default
	// 1s.
	HealthInterval time.Duration
	// StartupInterval is how often an instance that has never been
	// healthy is probed, for at most StartupWindow after it started.
	// Defaults 100ms and 30s.
	StartupInterval time.Duration
	StartupWindow   time.Duration
	// HealthTimeout bounds one probe. Default 1s.
	HealthTimeout time.Duration
	// UnhealthyAfter consecutive failed probes make a healthy instance
	// unhealthy. Default 3.
	UnhealthyAfter int
	// UnhealthyGrace: an instance that was healthy once and has been
	// unhealthy for longer than this is restarted. Default 30s.
	UnhealthyGrace time.Duration
	// DeployTimeout bounds how long Deploy waits for the new instances to
	// be healthy. Default 2m.
	DeployTimeout time.Duration
	// RestartBackoff is the first delay before restarting a crashed
	// instance; it doubles on each consecutive crash up to
	// MaxRestartBackoff. Defaults 1s and 30s.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	// KillTimeout is used for workloads that set none. Default 5s.
	KillTimeout time.Duration
	// Logger receives lifecycle events. Default: discard.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.HealthInterval <= 0 {
		o.HealthInterval = time.Second
	}
	if o.StartupInterval <= 0 {
		o.StartupInterval = 100 * time.Millisecond
	}
	if o.StartupWindow <= 0 {
		o.StartupWindow = 30 * time.Second
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = time.Second
	}
	if o.UnhealthyAfter <= 0 {
		o.UnhealthyAfter = 3
	}
	if o.UnhealthyGrace <= 0 {
		o.UnhealthyGrace = 30 * time.Second
	}
	if o.DeployTimeout <= 0 {
		o.DeployTimeout = 2 * time.Minute
	}
	if o.RestartBackoff <= 0 {
		o.RestartBackoff = time.Second
	}
	if o.MaxRestartBackoff <= 0 {
		o.MaxRestartBackoff = 30 * time.Second
	}
	if o.MaxRestartBackoff < o.RestartBackoff {
		o.MaxRestartBackoff = o.RestartBackoff
	}
	if o.KillTimeout <= 0 {
		o.KillTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// backoff returns the delay before restart attempt n (1-based).
func (o Options) backoff(n int) time.Duration {
	d := o.RestartBackoff
	for i := 1; i < n && d < o.MaxRestartBackoff; i++ {
		d *= 2
	}
	return min(d, o.MaxRestartBackoff)
}
