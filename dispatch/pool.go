package dispatch

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/qufop/qufop/classq"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/tenant"
	"github.com/qufop/qufop/ufop"
)

// pool tracks the steps in flight at each instance of one UFOP and the
// steps waiting for a free instance, in arrival order within each class of
// service (tenant.From(ctx).Class): a slot that frees goes to the oldest
// waiter of the class whose turn it is (classq: paid before free, 4:1, free
// never starved), never to a newer arrival (which would leave the oldest
// to time out with 504). With no tenant every step is free: one FIFO.
type pool struct {
	endpoints func() []cluster.Endpoint // the Catalog's healthy instances (from memory)
	// gone is told the addresses of the instances that left the Catalog
	// since the last look, and a drained instance's again as each of its
	// last steps ends (its connection went back to the transport's pool
	// after it left): the transport closes its idle connections to them,
	// which would sit in CLOSE_WAIT once the instance is stopped.
	gone func(addrs []string)

	mu       sync.Mutex
	rec      *ufop.Record // latest record seen: the capacity of each version
	known    []string     // the addresses of the last look at the Catalog
	inflight map[string]int
	queue    *classq.Queue[*waiter]
	// next is where the search for the least busy instance starts, moved
	// on at every pick: among equally busy instances successive steps go
	// round the instances instead of all to the first one.
	next int
	// Counters, for the metrics.
	noInstance     uint64 // steps that found no healthy instance on arrival
	rejectedFull   uint64 // refused: queue full
	rejectedNoInst uint64 // refused: no instance, and no scaler to start one
}

// waiter is one queued step; ready receives the instance it was given.
type waiter struct {
	ready chan cluster.Endpoint // buffered 1
}

func newPool(endpoints func() []cluster.Endpoint) *pool {
	return &pool{endpoints: endpoints, gone: ufop.ForgetInstances, inflight: map[string]int{},
		queue: classq.New[*waiter](classq.DefaultWeights)}
}

// liveLocked reads the Catalog's healthy instances and tells gone about
// those that left since the last read.
func (p *pool) liveLocked() []cluster.Endpoint {
	eps := p.endpoints()
	same := len(eps) == len(p.known)
	for i := 0; same && i < len(eps); i++ {
		same = eps[i].Addr == p.known[i]
	}
	if same {
		return eps // the common case: no allocation
	}
	var gone []string
	for _, a := range p.known {
		if !hasAddr(eps, a) {
			gone = append(gone, a)
		}
	}
	p.known = p.known[:0]
	for _, e := range eps {
		p.known = append(p.known, e.Addr)
	}
	if len(gone) > 0 && p.gone != nil {
		p.gone(gone)
	}
	return eps
}

func hasAddr(eps []cluster.Endpoint, addr string) bool {
	for _, e := range eps {
		if e.Addr == addr {
			return true
		}
	}
	return false
}

func (p *pool) setRecord(rec *ufop.Record) {
	p.mu.Lock()
	p.rec = rec
	p.mu.Unlock()
}

// capacityLocked is the concurrency of the version ep runs.
func (p *pool) capacityLocked(ep cluster.Endpoint) int {
	if p.rec == nil {
		return ufop.DefaultConcurrency
	}
	return spec(p.rec, ep.Version).Concurrency
}

// refreshEvery bounds how long a waiting step takes to notice a new
// instance (the Catalog does not notify; reading it is a copy from
// memory).
const refreshEvery = 50 * time.Millisecond

// pickLocked returns the least busy instance of eps with a free slot, and
// counts the step in flight there.
func (p *pool) pickLocked(eps []cluster.Endpoint) (cluster.Endpoint, bool) {
	best, bestLoad := -1, 0
	for k := range eps {
		i := (p.next + k) % len(eps)
		load := p.inflight[eps[i].ID]
		if load < p.capacityLocked(eps[i]) && (best < 0 || load < bestLoad) {
			best, bestLoad = i, load
		}
	}
	if best < 0 {
		return cluster.Endpoint{}, false
	}
	ep := eps[best]
	p.next = best + 1
	p.inflight[ep.ID]++
	return ep, true
}

// handOffLocked gives free slots to the waiters, in the queue's order.
func (p *pool) handOffLocked(eps []cluster.Endpoint) {
	for p.queue.Total() > 0 {
		ep, ok := p.pickLocked(eps)
		if !ok {
			return
		}
		e, _ := p.queue.Pop()
		e.Value.ready <- ep
	}
}

// acquire picks the least busy healthy instance with a free slot, waiting
// in the bounded FIFO queue of the step's class while all are full. With no healthy instance
// at all the step waits too when a scaler will start one (wait), and is
// refused at once otherwise. onWait is told the UFOP's name when the step
// queues.
func (p *pool) acquire(ctx context.Context, name string, bounds classq.Bounds, wait bool, onWait func(string)) (cluster.Endpoint, func(), error) {
	release := func(ep cluster.Endpoint) func() { return func() { p.release(ep) } }
	// The Catalog is read under the pool's lock: an orchestrator draining
	// an instance takes it out of the Catalog, then asks InFlight (same
	// lock) until it is idle, so a step is either counted there or never
	// picks the leaving instance.
	p.mu.Lock()
	eps := p.liveLocked()
	if p.queue.Total() == 0 {
		if ep, ok := p.pickLocked(eps); ok {
			p.mu.Unlock()
			return ep, release(ep), nil
		}
	}
	if len(eps) == 0 {
		p.noInstance++
		if !wait {
			p.rejectedNoInst++
			p.mu.Unlock()
			return cluster.Endpoint{}, nil, errs.New(http.StatusServiceUnavailable,
				"ufop %q has no healthy instance (start some with `qufop resize %s -n N`, or give it a scale policy)", name, name)
		}
	}
	class := tenant.From(ctx).Class
	w := &waiter{ready: make(chan cluster.Endpoint, 1)}
	e, ok := p.queue.Push(class, w, bounds.Of(class))
	if !ok {
		p.rejectedFull++
		p.mu.Unlock()
		return cluster.Endpoint{}, nil, errs.New(http.StatusServiceUnavailable,
			"ufop %q is busy: its %s queue is full (%d steps waiting), retry later", name, class, bounds.Of(class))
	}
	p.mu.Unlock()
	if onWait != nil {
		onWait(name)
	}

	tick := time.NewTicker(refreshEvery)
	defer tick.Stop()
	for {
		select {
		case ep := <-w.ready:
			return ep, release(ep), nil
		case <-tick.C:
			// New instances appear only in the Catalog: look again.
			p.mu.Lock()
			p.handOffLocked(p.liveLocked())
			p.mu.Unlock()
		case <-ctx.Done():
			p.mu.Lock()
			p.queue.Remove(e) // false: handed a slot already (below)
			p.mu.Unlock()
			select {
			case ep := <-w.ready: // given a slot as the context ended: give it back
				p.release(ep)
			default:
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return cluster.Endpoint{}, nil, errs.Wrap(http.StatusGatewayTimeout, ctx.Err(), "timed out waiting for an instance of ufop %q", name)
			}
			return cluster.Endpoint{}, nil, errs.Wrap(499, ctx.Err(), "client closed request")
		}
	}
}

func (p *pool) release(ep cluster.Endpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inflight[ep.ID]--; p.inflight[ep.ID] <= 0 {
		delete(p.inflight, ep.ID)
	}
	eps := p.liveLocked()
	if p.gone != nil && !hasAddr(eps, ep.Addr) {
		p.gone([]string{ep.Addr})
	}
	p.handOffLocked(eps)
}

// Stats are one UFOP's figures at one moment, as this gateway sees them.
type Stats struct {
	Pending int // steps waiting for an instance, all classes
	// PendingPaid is the part of Pending of the paid class (the rest is
	// free).
	PendingPaid int
	InFlight    int // steps running at its instances
	Capacity    int // sum of concurrency over the healthy instances
	Healthy     int // healthy instances
	// NoInstanceWaiting is Pending while there is no healthy instance at
	// all (the demand that must start the first one).
	NoInstanceWaiting int
	// Counters since the gateway started.
	NoInstance     uint64 // steps that found no healthy instance on arrival
	RejectedFull   uint64 // 503: the queue was full
	RejectedNoInst uint64 // 503: no instance and no scale policy to start one
}

func (p *pool) stats() Stats {
	eps := p.endpoints()
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Stats{
		Pending: p.queue.Total(), PendingPaid: p.queue.Len(tenant.Paid), Healthy: len(eps),
		NoInstance: p.noInstance, RejectedFull: p.rejectedFull, RejectedNoInst: p.rejectedNoInst,
	}
	for _, n := range p.inflight {
		st.InFlight += n
	}
	for _, ep := range eps {
		st.Capacity += p.capacityLocked(ep)
	}
	if len(eps) == 0 {
		st.NoInstanceWaiting = p.queue.Total()
	}
	return st
}

func (p *pool) inFlight() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.inflight))
	for id, n := range p.inflight {
		out[id] = n
	}
	return out
}

// Waiting is the number of queued steps of name (for metrics and tests).
func (d *Dispatcher) Waiting(name string) int {
	p := d.pool(name)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue.Total()
}

// InFlight implements cluster.Load: the steps in flight at each instance
// of name, by endpoint ID.
func (d *Dispatcher) InFlight(name string) map[string]int { return d.pool(name).inFlight() }

// Stats returns the figures of every UFOP this dispatcher has run steps
// of, read at the moment of the call (exact: no gauge set from racing
// updates).
func (d *Dispatcher) Stats() map[string]Stats {
	d.mu.Lock()
	pools := make(map[string]*pool, len(d.pools))
	for name, p := range d.pools {
		pools[name] = p
	}
	d.mu.Unlock()
	out := make(map[string]Stats, len(pools))
	for name, p := range pools {
		out[name] = p.stats()
	}
	return out
}
