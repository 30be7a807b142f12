// Package dispatch runs the UFOP steps of a chain: it finds the UFOP's
// record (cached), checks who may call it, picks a healthy instance from the
// Catalog with free capacity (least busy first), queues the step in a bounded
// per-UFOP queue when every instance is full, and calls the instance over
// its protocol (package ufop). The gateway asks it about every command name
// that is not built in.
package dispatch

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/ufop"
)

// Config of the dispatcher.
type Config struct {
	// QueueSize is how many steps may wait per UFOP when all its instances
	// are busy; past it, 503 at once.
	QueueSize int
	// RecordTTL is how long a UFOP record is cached.
	RecordTTL time.Duration
	// BlobTTL is how long a blob URL given to a UFOP is valid.
	BlobTTL time.Duration
}

// NewDefaultConfig returns the defaults.
func NewDefaultConfig() Config {
	return Config{QueueSize: 64, RecordTTL: time.Second, BlobTTL: 2 * time.Minute}
}

// Records finds UFOP records (ufop.Keeper does).
type Records interface {
	Get(ctx context.Context, name string) (*ufop.Record, error)
}

// Dispatcher runs UFOP steps.
type Dispatcher struct {
	cfg     Config
	records Records
	catalog cluster.Catalog
	caller  *ufop.Caller
	blobs   *Blobs

	mu       sync.Mutex
	cache    map[string]cached
	pools    map[string]*pool
	blobBase string
}

type cached struct {
	rec     *ufop.Record // nil: no such UFOP
	fetched time.Time
}

// New returns a dispatcher.
func New(cfg Config, records Records, catalog cluster.Catalog, caller *ufop.Caller) *Dispatcher {
	if caller == nil {
		caller = &ufop.Caller{}
	}
	return &Dispatcher{
		cfg: cfg, records: records, catalog: catalog, caller: caller,
		blobs: NewBlobs(cfg.BlobTTL),
		cache: map[string]cached{}, pools: map[string]*pool{},
	}
}

// Blobs is the store the gateway serves at BlobPath.
func (d *Dispatcher) Blobs() *Blobs { return d.blobs }

// SetBlobBase sets the scheme://host:port at which instances reach the
// gateway's blob route (the orchestrator's network decides it).
func (d *Dispatcher) SetBlobBase(base string) {
	d.mu.Lock()
	d.blobBase = base
	d.mu.Unlock()
}

// record returns the cached record of name (nil if there is none).
func (d *Dispatcher) record(ctx context.Context, name string) (*ufop.Record, error) {
	d.mu.Lock()
	c, ok := d.cache[name]
	d.mu.Unlock()
	if ok && time.Since(c.fetched) < d.cfg.RecordTTL {
		return c.rec, nil
	}
	rec, err := d.records.Get(ctx, name)
	if errors.Is(err, ufop.ErrNoSuchUFOP) {
		rec, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.cache[name] = cached{rec: rec, fetched: time.Now()}
	d.mu.Unlock()
	return rec, nil
}

// refresh reads the record of name again, bypassing the cache.
func (d *Dispatcher) refresh(ctx context.Context, name string) (*ufop.Record, error) {
	d.mu.Lock()
	delete(d.cache, name)
	d.mu.Unlock()
	return d.record(ctx, name)
}

// Resolve returns the processor of a UFOP step, or (nil, nil) when no UFOP
// is called cmd.Name. caller is who asks (the owner of the bucket the chain
// reads): a private UFOP serves only its owner.
func (d *Dispatcher) Resolve(ctx context.Context, cmd fop.Cmd, caller string) (fop.Processor, error) {
	rec, err := d.record(ctx, cmd.Name)
	if err != nil || rec == nil {
		return nil, err
	}
	if rec.Mode != ufop.Public && rec.Owner != caller {
		return nil, errs.New(http.StatusForbidden, "ufop %q is private to its owner", rec.Name)
	}
	return &step{d: d, rec: rec}, nil
}

// step is one UFOP step, a fop.Processor.
type step struct {
	d   *Dispatcher
	rec *ufop.Record
}

func (s *step) Process(ctx context.Context, cmd fop.Cmd, in fop.Blob) (fop.Blob, error) {
	return s.d.run(ctx, s.rec, cmd, in)
}

// spec is the ufop.yaml of the version an endpoint runs.
func spec(rec *ufop.Record, version int) *ufop.Spec {
	if v := rec.Version(version); v != nil && v.Spec != nil {
		return v.Spec
	}
	return &ufop.Spec{Protocol: ufop.DefaultProtocol, Concurrency: ufop.DefaultConcurrency, Timeout: ufop.DefaultTimeout}
}

func (d *Dispatcher) pool(name string) *pool {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.pools[name]
	if p == nil {
		p = newPool()
		d.pools[name] = p
	}
	return p
}

func (d *Dispatcher) run(ctx context.Context, rec *ufop.Record, cmd fop.Cmd, in fop.Blob) (fop.Blob, error) {
	endpoints := func() []cluster.Endpoint { return d.catalog.Healthy(rec.Name) }
	capacity := func(ep cluster.Endpoint) int { return spec(rec, ep.Version).Concurrency }
	ep, release, err := d.pool(rec.Name).acquire(ctx, rec.Name, endpoints, capacity, d.cfg.QueueSize)
	if err != nil {
		return fop.Blob{}, err
	}
	defer release()

	if rec.Version(ep.Version) == nil {
		// An instance of a version newer than the cached record (an
		// upgrade right after a build): read the record again rather than
		// guess the version's protocol.
		if fresh, err := d.refresh(ctx, rec.Name); err == nil && fresh != nil {
			rec = fresh
		}
	}
	sp := spec(rec, ep.Version)
	// The UFOP's own timeout, unless the request's deadline comes first
	// anyway (then a second timer would only cost).
	cctx := ctx
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > sp.Timeout {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, sp.Timeout)
		defer cancel()
	}
	input := ufop.Input{
		MIME: in.MIME, Size: int64(len(in.Data)), Bucket: in.Bucket, Key: in.Key, ReqID: fop.ReqID(ctx),
	}
	if sp.Protocol == ufop.ProtocolUOP {
		d.mu.Lock()
		base := d.blobBase
		d.mu.Unlock()
		if base == "" {
			return fop.Blob{}, errs.Failed(errors.New("no blob address"), "ufop %q: the gateway has no address its instances can reach", rec.Name)
		}
		path, remove := d.blobs.Put(in.Data, in.MIME, time.Now())
		defer remove()
		input.URL = base + path
	} else {
		// The handler protocol takes the input as the body: no fetch back.
		input.Data = in.Data
	}
	out, err := d.caller.Call(cctx, ep.Addr, sp.Protocol, cmd.Raw, input)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fop.Blob{}, errs.Wrap(http.StatusGatewayTimeout, err, "ufop %q did not answer within %s", rec.Name, sp.Timeout)
		}
		return fop.Blob{}, err
	}
	return fop.Blob{Data: out.Data, MIME: out.MIME}, nil
}

// pool tracks the steps in flight per instance of one UFOP and the steps
// waiting for a free instance.
type pool struct {
	mu       sync.Mutex
	inflight map[string]int
	waiting  int
	wake     chan struct{} // closed when a slot frees
	// next is where the search for the least busy instance starts, moved
	// on at every pick: among equally busy instances successive steps go
	// round the instances instead of all to the first one.
	next int
}

func newPool() *pool { return &pool{inflight: map[string]int{}, wake: make(chan struct{})} }

// refreshEvery bounds how long a waiting step takes to notice a new
// instance (the Catalog does not notify).
const refreshEvery = 200 * time.Millisecond

// acquire picks the least busy healthy instance with a free slot, waiting
// in the bounded queue while all are full.
func (p *pool) acquire(ctx context.Context, name string, endpoints func() []cluster.Endpoint,
	capacity func(cluster.Endpoint) int, queueSize int) (cluster.Endpoint, func(), error) {
	queued := false
	defer func() {
		if queued {
			p.mu.Lock()
			p.waiting--
			p.mu.Unlock()
		}
	}()
	for {
		eps := endpoints()
		p.mu.Lock()
		best, bestLoad := -1, 0
		for k := range eps {
			i := (p.next + k) % len(eps)
			ep := eps[i]
			load := p.inflight[ep.ID]
			if load < capacity(ep) && (best < 0 || load < bestLoad) {
				best, bestLoad = i, load
			}
		}
		if best >= 0 {
			ep := eps[best]
			p.next = best + 1
			p.inflight[ep.ID]++
			p.mu.Unlock()
			return ep, func() { p.release(ep.ID) }, nil
		}
		if len(eps) == 0 && !queued {
			p.mu.Unlock()
			return cluster.Endpoint{}, nil, errs.New(http.StatusServiceUnavailable,
				"ufop %q has no healthy instance (start some with `qufop resize %s -n N`)", name, name)
		}
		if !queued {
			if p.waiting >= queueSize {
				p.mu.Unlock()
				return cluster.Endpoint{}, nil, errs.New(http.StatusServiceUnavailable, "ufop %q is busy: its queue is full, retry later", name)
			}
			p.waiting++
			queued = true
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-time.After(refreshEvery):
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return cluster.Endpoint{}, nil, errs.Wrap(http.StatusGatewayTimeout, ctx.Err(), "timed out waiting for an instance of ufop %q", name)
			}
			return cluster.Endpoint{}, nil, errs.Wrap(499, ctx.Err(), "client closed request")
		}
	}
}

func (p *pool) release(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inflight[id]--; p.inflight[id] <= 0 {
		delete(p.inflight, id)
	}
	close(p.wake)
	p.wake = make(chan struct{})
}

// Waiting is the number of queued steps of name (for metrics and tests).
func (d *Dispatcher) Waiting(name string) int {
	p := d.pool(name)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting
}
