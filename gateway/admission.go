package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"

	"github.com/qufop/qufop/errs"
)

// Pool is the per-node admission control for built-in commands: a fixed set of
// workers behind a bounded wait queue, as imgproxy does it. A request that
// finds the queue full is refused at once instead of piling up memory; a
// queued request whose context ends (client gone, deadline) leaves the queue
// without ever running.
type Pool struct {
	slots   chan struct{} // capacity workers+queue: everyone admitted
	workers chan struct{} // capacity workers: everyone running
	waiting atomic.Int64
	busy    atomic.Int64
	size    int
}

// ErrQueueFull is returned when the wait queue has no room.
var ErrQueueFull = errs.New(http.StatusServiceUnavailable, "server busy: processing queue is full, retry later")

// NewPool returns a pool of workers with a wait queue of queue entries.
func NewPool(workers, queue int, m *metrics) *Pool {
	p := &Pool{
		slots:   make(chan struct{}, workers+queue),
		workers: make(chan struct{}, workers),
		size:    workers,
	}
	if m != nil {
		m.poolGauges(p)
	}
	return p
}

// Run runs fn on a worker. It returns ErrQueueFull when the queue is full,
// and the context's error wrapped as 504/499 when ctx ends first. fn keeps its
// worker until it returns even if ctx ends meanwhile (a libvips call cannot
// be interrupted), so the pool never runs more than its size at once.
func (p *Pool) Run(ctx context.Context, fn func() error) error {
	select {
	case p.slots <- struct{}{}:
	default:
		return ErrQueueFull
	}
	p.waiting.Add(1)
	select {
	case p.workers <- struct{}{}:
		p.waiting.Add(-1)
	case <-ctx.Done():
		p.waiting.Add(-1)
		<-p.slots
		return contextError(ctx)
	}
	p.busy.Add(1)
	done := make(chan error, 1)
	go func() {
		defer func() {
			p.busy.Add(-1)
			<-p.workers
			<-p.slots
		}()
		done <- fn()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return contextError(ctx)
	}
}

// Waiting is the number of requests in the queue.
func (p *Pool) Waiting() int { return int(p.waiting.Load()) }

// Busy is the number of workers running.
func (p *Pool) Busy() int { return int(p.busy.Load()) }

// StatusClientClosed is nginx's code for a client that went away; it is only
// logged, never sent.
const StatusClientClosed = 499

func contextError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errs.Wrap(http.StatusGatewayTimeout, ctx.Err(), "processing timed out")
	}
	return errs.Wrap(StatusClientClosed, ctx.Err(), "client closed request")
}
