package gateway

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/qufop/qufop/classq"
)

// Config is the gateway's own configuration; command limits belong to the
// packages that run the commands (fop/image.Config).
type Config struct {
	// Listen is the address the HTTP server binds.
	Listen string
	// Workers is how many built-in steps run at once on this node.
	Workers int
	// QueueSize is how many steps may wait for a worker before new ones are
	// refused with 503: the bound of each class's queue (paid, free; see
	// classq) unless QueueSizeFree or QueueSizePaid, when positive, sets
	// that class's.
	QueueSize                    int
	QueueSizeFree, QueueSizePaid int
	// QueueWeights is how a freed worker is shared between the classes
	// that wait (zero: classq.DefaultWeights, paid:free = 4:1).
	QueueWeights classq.Weights
	// PaidReserve is how many workers are kept for paid steps while paid
	// work is about (a paid step within the last 10 s; see Pool): free
	// work runs on the rest, so a paid step does not wait behind a pool
	// full of free ones. At most Workers-1 is used (free work always has
	// a worker); 0 lends every worker to whoever comes first in the queue.
	PaidReserve int
	// RequestTimeout bounds a whole processing request (504 past it).
	RequestTimeout time.Duration
	// MaxSourceBytes caps the stored object a processing request reads into
	// memory (plain downloads stream and have no cap).
	MaxSourceBytes int64
	// ShutdownTimeout is how long in-flight requests get on stop.
	ShutdownTimeout time.Duration
	// FastFront serves connections that start with a UFOP processing URL
	// with fasthttp instead of net/http (see front.go).
	FastFront bool
	// MaxConns caps the connections open at once on this gateway, and
	// MaxConnsPerIP those of one client address (an IPv4 address or an
	// IPv6 /64); past either, a new connection gets 503 and is closed
	// (connlimit.go). 0 is no limit.
	MaxConns, MaxConnsPerIP int
	// HeaderTimeout bounds the wait for each request's line and header
	// (on the fast front, for the whole request), IdleTimeout the wait
	// for the next request on a kept-alive connection: a client that
	// sends nothing gives its connection up.
	HeaderTimeout, IdleTimeout time.Duration
}

// NewDefaultConfig returns the defaults: one worker per core, a queue four
// times that, 30 s per request (Qiniu's recommended sync timeout) and the
// 20 MB synchronous source limit. The per-client connection limit is well
// above what one client needs (wrk -c32 in bench/, the e2e tests, a
// browser's 6) and far below the gateway's, so one address cannot take it
// all.
func NewDefaultConfig() Config {
	n := runtime.NumCPU()
	return Config{
		Listen:          "127.0.0.1:8080",
		Workers:         n,
		QueueSize:       4 * n,
		PaidReserve:     paidReserve(n),
		RequestTimeout:  30 * time.Second,
		MaxSourceBytes:  20 << 20,
		ShutdownTimeout: 20 * time.Second,
		FastFront:       true,
		MaxConns:        4096,
		MaxConnsPerIP:   256,
		HeaderTimeout:   10 * time.Second,
		IdleTimeout:     60 * time.Second,
	}
}

// paidReserve is the default reserve of n workers: a quarter, and one
// from two workers on (a single worker cannot be kept from free work).
func paidReserve(n int) int {
	if n < 2 {
		return 0
	}
	return max(1, n/4)
}

// Validate reports every bad field at once.
func (c Config) Validate() error {
	var es []error
	if c.Listen == "" {
		es = append(es, errors.New("listen address is empty"))
	}
	if c.Workers < 1 {
		es = append(es, fmt.Errorf("workers must be at least 1, got %d", c.Workers))
	}
	if c.QueueSize < 0 || c.QueueSizeFree < 0 || c.QueueSizePaid < 0 {
		es = append(es, fmt.Errorf("queue sizes must not be negative, got %d (free %d, paid %d)", c.QueueSize, c.QueueSizeFree, c.QueueSizePaid))
	}
	if c.PaidReserve < 0 {
		es = append(es, fmt.Errorf("paid reserve must not be negative, got %d", c.PaidReserve))
	}
	if c.QueueWeights != (classq.Weights{}) {
		if err := c.QueueWeights.Validate(); err != nil {
			es = append(es, err)
		}
	}
	if c.RequestTimeout <= 0 {
		es = append(es, fmt.Errorf("request timeout must be positive, got %s", c.RequestTimeout))
	}
	if c.MaxSourceBytes <= 0 {
		es = append(es, fmt.Errorf("max source bytes must be positive, got %d", c.MaxSourceBytes))
	}
	if c.MaxConns < 0 {
		es = append(es, fmt.Errorf("max conns must not be negative, got %d", c.MaxConns))
	}
	if c.MaxConnsPerIP < 0 {
		es = append(es, fmt.Errorf("max conns per ip must not be negative, got %d", c.MaxConnsPerIP))
	}
	if c.HeaderTimeout <= 0 {
		es = append(es, fmt.Errorf("header timeout must be positive, got %s", c.HeaderTimeout))
	}
	if c.IdleTimeout <= 0 {
		es = append(es, fmt.Errorf("idle timeout must be positive, got %s", c.IdleTimeout))
	}
	return errors.Join(es...)
}

// QueueBounds are the bounds of the classes' queues.
func (c Config) QueueBounds() classq.Bounds {
	b := classq.Uniform(c.QueueSize)
	if c.QueueSizeFree > 0 {
		b.Free = c.QueueSizeFree
	}
	if c.QueueSizePaid > 0 {
		b.Paid = c.QueueSizePaid
	}
	return b
}
