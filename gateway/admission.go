package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"github.com/qufop/qufop/classq"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/tenant"
)

// Pool is the per-node admission control for built-in commands: a fixed set of
// workers behind a bounded wait queue, as imgproxy does it. A request that
// finds the queue full is refused at once instead of piling up memory; a
// queued request whose context ends (client gone, deadline) leaves the queue
// without ever running.
//
// The queue has a class of service per request (tenant.From(ctx).Class):
// each class waits in its own bounded FIFO, and a worker that frees goes
// straight to the next waiter chosen by classq's weighted round robin
// (paid before free, free never starved). With no tenant on the context
// everything is free: one FIFO, as before classes.
type Pool struct {
	mu     sync.Mutex
	queue  *classq.Queue[chan struct{}] // a waiter's channel receives its worker
	bounds classq.Bounds
	busy   int // workers taken: running fn, or handed to a waiter about to
	size   int
}

// errQueueFull is the 503 of a class whose queue has no room.
func errQueueFull(c tenant.Class, bound int) error {
	return errs.New(http.StatusServiceUnavailable, "server busy: the %s queue is full (%d waiting), retry later", c, bound)
}

// NewPool returns a pool of workers with a wait queue per class of the
// given bounds, served with the weights w (zero: classq.DefaultWeights).
func NewPool(workers int, bounds classq.Bounds, w classq.Weights, m *metrics) *Pool {
	p := &Pool{queue: classq.New[chan struct{}](w), bounds: bounds, size: workers}
	if m != nil {
		m.poolGauges(p)
	}
	return p
}

// Run runs fn on a worker. It returns a 503 when the queue of the request's
// class is full, and the context's error wrapped as 504/499 when ctx ends
// first. fn keeps its worker until it returns even if ctx ends meanwhile (a
// libvips call cannot be interrupted), so the pool never runs more than its
// size at once.
func (p *Pool) Run(ctx context.Context, fn func() error) error {
	if err := p.acquire(ctx); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		defer p.release()
		done <- fn()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return contextError(ctx)
	}
}

// acquire takes a worker, waiting in the class's queue while none is free.
func (p *Pool) acquire(ctx context.Context) error {
	p.mu.Lock()
	// A free worker with nobody waiting: take it. (While anybody waits no
	// worker is free: release hands it over instead.)
	if p.busy < p.size && p.queue.Total() == 0 {
		p.busy++
		p.mu.Unlock()
		return nil
	}
	class := tenant.From(ctx).Class
	ready := make(chan struct{}, 1)
	e, ok := p.queue.Push(class, ready, p.bounds.Of(class))
	p.mu.Unlock()
	if !ok {
		return errQueueFull(class, p.bounds.Of(class))
	}
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		removed := p.queue.Remove(e)
		p.mu.Unlock()
		if !removed {
			// Handed a worker as the context ended: pass it on.
			p.release()
		}
		return contextError(ctx)
	}
}

// release gives the worker to the next waiter, or frees it.
func (p *Pool) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.queue.Pop(); ok {
		e.Value <- struct{}{}
		return
	}
	p.busy--
}

// Waiting is the number of requests in the queue, all classes.
func (p *Pool) Waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue.Total()
}

// WaitingClass is the number of requests of class c in the queue.
func (p *Pool) WaitingClass(c tenant.Class) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue.Len(c)
}

// Busy is the number of workers taken.
func (p *Pool) Busy() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy
}

// StatusClientClosed is nginx's code for a client that went away; it is only
// logged, never sent.
const StatusClientClosed = 499

func contextError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errs.Wrap(http.StatusGatewayTimeout, ctx.Err(), "processing timed out")
	}
	return errs.Wrap(StatusClientClosed, ctx.Err(), "client closed request")
}
