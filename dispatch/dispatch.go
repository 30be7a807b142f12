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

	"github.com/qufop/qufop/classq"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/ufop"
)

// Config of the dispatcher.
type Config struct {
	// QueueSize is how many steps may wait per UFOP when all its instances
	// are busy; past it, 503 at once. It bounds each class's queue (paid,
	// free; see classq) unless QueueSizeFree or QueueSizePaid, when
	// positive, sets that class's.
	QueueSize                    int
	QueueSizeFree, QueueSizePaid int
	// QueueWeights is how a freed slot is shared between the classes that
	// wait (zero: classq.DefaultWeights, paid:free = 4:1).
	QueueWeights classq.Weights
	// RecordTTL is how long a UFOP record is cached, RecordCacheSize how
	// many are.
	RecordTTL       time.Duration
	RecordCacheSize int
	// MissTTL is how long "no UFOP has this name" is cached (a UFOP just
	// created is found after at most that), MissCacheSize for how many
	// names (apart from the records: made-up names cannot push real
	// records out).
	MissTTL       time.Duration
	MissCacheSize int
	// LookupTimeout bounds each read of a record (a Consul GET in qufop
	// gateway): past it the step fails with 504 and nothing is cached.
	LookupTimeout time.Duration
	// MaxLookups is how many reads of records may run at once.
	MaxLookups int
}

// QueueBounds are the bounds of the classes' queues of each UFOP.
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

// NewDefaultConfig returns the defaults.
func NewDefaultConfig() Config {
	return Config{
		QueueSize: 64,
		RecordTTL: time.Second, RecordCacheSize: 1024,
		MissTTL: time.Second, MissCacheSize: 4096,
		LookupTimeout: 5 * time.Second, MaxLookups: 64,
	}
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
	cache   *recordCache
	now     func() time.Time // the clock of the caches (tests move it)

	mu       sync.Mutex
	pools    map[string]*pool
	blobBase string
	onWait   func(name string)
}

// New returns a dispatcher.
func New(cfg Config, records Records, catalog cluster.Catalog, caller *ufop.Caller) *Dispatcher {
	if caller == nil {
		caller = &ufop.Caller{}
	}
	d := &Dispatcher{
		cfg: cfg, records: records, catalog: catalog, caller: caller,
		blobs: NewBlobs(),
		now:   time.Now, pools: map[string]*pool{},
	}
	d.cache = newRecordCache(records, cfg, &d.now)
	return d
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

// record returns the cached record of name (nil if there is none); see
// recordCache for the bounds.
func (d *Dispatcher) record(ctx context.Context, name string) (*ufop.Record, error) {
	return d.cache.get(ctx, name)
}

// refresh reads the record of name again, bypassing the cache.
func (d *Dispatcher) refresh(ctx context.Context, name string) (*ufop.Record, error) {
	d.cache.forget(name)
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
		p = newPool(func() []cluster.Endpoint { return d.catalog.Healthy(name) })
		p.queue = classq.New[*waiter](d.cfg.QueueWeights)
		d.pools[name] = p
	}
	return p
}

// SetOnWait sets a function called (on its own goroutine's time: it must
// not block) each time a step of a UFOP has to wait for an instance. The
// in-process scaler uses it to evaluate that UFOP at once instead of at its
// next interval.
func (d *Dispatcher) SetOnWait(fn func(name string)) {
	d.mu.Lock()
	d.onWait = fn
	d.mu.Unlock()
}

func (d *Dispatcher) notifyWait(name string) {
	d.mu.Lock()
	fn := d.onWait
	d.mu.Unlock()
	if fn != nil {
		fn(name)
	}
}

func (d *Dispatcher) run(ctx context.Context, rec *ufop.Record, cmd fop.Cmd, in fop.Blob) (fop.Blob, error) {
	p := d.pool(rec.Name)
	p.setRecord(rec)
	ep, release, err := p.acquire(ctx, rec.Name, d.cfg.QueueBounds(), rec.Scale != nil, d.notifyWait)
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
		// The URL lives as long as the step may run, and no longer.
		deadline, _ := cctx.Deadline() // always set: the UFOP's timeout at most
		path, remove := d.blobs.Put(in.Data, in.MIME, deadline)
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
		return fop.Blob{}, d.explainDeath(ctx, rec.Name, ep, err)
	}
	res := fop.Blob{Data: out.Data, MIME: out.MIME}
	if ep.Version > 0 { // 0: the Catalog does not say (no version tag)
		res.Version = versionOf(rec, ep.Version)
	}
	return res, nil
}
