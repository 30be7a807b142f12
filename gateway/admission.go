package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
//
// While paid work is about (a paid step asked for a worker within the last
// reserve window), the last Reserve workers are kept for it: free work
// runs on the others, so a paid step never waits behind a pool full of
// free ones. A node without paid users lends every worker to free work.
type Pool struct {
	mu       sync.Mutex
	queue    *classq.Queue[chan struct{}] // a waiter's channel receives its worker
	bounds   classq.Bounds
	busy     int // workers taken: running fn, or handed to a waiter about to
	busyFree int // of which by work other than paid
	size     int

	reserve  int           // workers kept for paid work while it is about
	window   time.Duration // how long a paid step keeps the reserve up
	lastPaid time.Time     // when a paid step last asked for a worker
	now      func() time.Time

	full *prometheus.CounterVec // steps refused for a full queue, by class (nil: not counted)
}

// DefaultReserveWindow is how long the paid reserve holds after a paid step
// asked for a worker: long enough to span the gaps of a steady paid user,
// short enough that free work gets the whole pool back soon after.
const DefaultReserveWindow = 10 * time.Second

// errQueueFull is the 503 of a class whose queue has no room.
func errQueueFull(c tenant.Class, bound int) error {
	return errs.New(http.StatusServiceUnavailable, "server busy: the %s queue is full (%d waiting), retry later", c, bound)
}

// NewPool returns a pool of workers with a wait queue per class of the
// given bounds, served with the weights w (zero: classq.DefaultWeights).
func NewPool(workers int, bounds classq.Bounds, w classq.Weights, m *metrics) *Pool {
	p := &Pool{queue: classq.New[chan struct{}](w), bounds: bounds, size: workers, now: time.Now}
	if m != nil {
		m.poolGauges(p)
	}
	return p
}

// ReservePaid keeps n of the workers (at most all but one: free work always
// has a worker) for paid steps while a paid step asked for one within
// window (zero: DefaultReserveWindow). It is set before the pool is used.
func (p *Pool) ReservePaid(n int, window time.Duration) *Pool {
	if window <= 0 {
		window = DefaultReserveWindow
	}
	p.reserve, p.window = min(max(n, 0), p.size-1), window
	return p
}

// freeCap is how many workers work other than paid may hold now. p.mu is held.
func (p *Pool) freeCap() int {
	if p.reserve > 0 && !p.lastPaid.IsZero() && p.now().Sub(p.lastPaid) < p.window {
		return p.size - p.reserve
	}
	return p.size
}

// may reports whether a step of class c may take a free worker now. p.mu is held.
func (p *Pool) may(c tenant.Class) bool {
	return p.busy < p.size && (c == tenant.Paid || p.busyFree < p.freeCap())
}

// take gives a worker to a step of class c. p.mu is held.
func (p *Pool) take(c tenant.Class) {
	p.busy++
	if c != tenant.Paid {
		p.busyFree++
	}
}

// Run runs fn on a worker. It returns a 503 when the queue of the request's
// class is full, and the context's error wrapped as 504/499 when ctx ends
// first. fn keeps its worker until it returns even if ctx ends meanwhile (a
// libvips call cannot be interrupted), so the pool never runs more than its
// size at once.
func (p *Pool) Run(ctx context.Context, fn func() error) error {
	class := tenant.From(ctx).Class
	if class != tenant.Paid {
		class = tenant.Free
	}
	if err := p.acquire(ctx, class); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		defer p.release(class)
		done <- fn()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return contextError(ctx)
	}
}

// acquire takes a worker for a step of class c, waiting in the class's
// queue while none it may have is free.
func (p *Pool) acquire(ctx context.Context, c tenant.Class) error {
	p.mu.Lock()
	if c == tenant.Paid {
		p.lastPaid = p.now()
	}
	// A worker this class may have with nobody of the class waiting: take
	// it. (While a class waits no worker is free for it: release hands it
	// over instead.)
	if p.may(c) && p.queue.Len(c) == 0 {
		p.take(c)
		p.mu.Unlock()
		return nil
	}
	ready := make(chan struct{}, 1)
	e, ok := p.queue.Push(c, ready, p.bounds.Of(c))
	p.mu.Unlock()
	if !ok {
		if p.full != nil {
			p.full.WithLabelValues(string(c)).Inc()
		}
		return errQueueFull(c, p.bounds.Of(c))
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
			p.release(c)
		}
		return contextError(ctx)
	}
}

// release gives back a worker held by a step of class c and hands free
// workers to the waiters that may have them, in the queue's order.
func (p *Pool) release(c tenant.Class) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.busy--
	if c != tenant.Paid {
		p.busyFree--
	}
	// Usually one hand-off; more when the reserve has just lapsed and free
	// waiters may now have the workers it kept.
	for p.busy < p.size {
		e, ok := p.queue.PopIf(p.may)
		if !ok {
			return
		}
		p.take(e.Class)
		e.Value <- struct{}{}
	}
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
