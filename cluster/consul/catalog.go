package consul

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/qufop/qufop/cluster"
)

// CatalogOptions tune a Catalog. Zero values pick the defaults.
type CatalogOptions struct {
	// ServicePrefix turns a UFOP name into its Consul service name
	// (default "ufop-": UFOP "demo" is service "ufop-demo").
	ServicePrefix string
	// WaitTime is the wait of each blocking query (default 5 min, Consul's
	// own default; Consul caps it at 10 min).
	WaitTime time.Duration
	// FirstWait is how long the very first Healthy(name) call waits for the
	// first answer from Consul (default 1 s; negative: do not wait). Later
	// calls never wait.
	FirstWait time.Duration
	// MinInterval is the least time between two queries of one watcher
	// (default 100 ms), so a flapping service cannot turn the watcher into a
	// busy loop.
	MinInterval time.Duration
	// BackoffBase and BackoffMax bound the retry delay while Consul is away
	// (defaults 250 ms and 1 min); the delay doubles per failure and is
	// jittered (between half and all of it).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Logf, if set, receives one line when a watcher loses and regains
	// Consul.
	Logf func(format string, args ...any)
}

func (o *CatalogOptions) defaults() {
	if o.ServicePrefix == "" {
		o.ServicePrefix = "ufop-"
	}
	if o.WaitTime <= 0 {
		o.WaitTime = 5 * time.Minute
	}
	if o.FirstWait == 0 {
		o.FirstWait = time.Second
	}
	if o.MinInterval <= 0 {
		o.MinInterval = 100 * time.Millisecond
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 250 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = time.Minute
	}
	if o.BackoffMax < o.BackoffBase {
		o.BackoffMax = o.BackoffBase
	}
}

// Catalog is a cluster.Catalog fed by Consul's health endpoint.
//
// The first Healthy(name) starts a watcher goroutine for service
// "ufop-<name>" that keeps a blocking query
// (/v1/health/service/ufop-<name>?passing=1&index=…&wait=…) open for the
// life of the Catalog and swaps in a new view whenever Consul answers.
// Healthy itself only reads that view: no network call, no lock held across
// I/O. While Consul is away the watcher backs off (with jitter) and the last
// good view keeps serving.
type Catalog struct {
	c    *api.Client
	opts CatalogOptions

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.RWMutex
	watchers map[string]*watcher
	closed   bool
}

var _ cluster.Catalog = (*Catalog)(nil)

// watcher follows one service.
type watcher struct {
	name    string // UFOP name
	service string // Consul service name
	view    atomic.Pointer[[]cluster.Endpoint]
	ready   chan struct{} // closed after the first answer
	started time.Time
	status  atomic.Pointer[WatchStatus]
}

// WatchStatus describes a watcher, for diagnostics.
type WatchStatus struct {
	Service   string    // Consul service name
	Index     uint64    // X-Consul-Index of the current view
	Updated   time.Time // when Consul last answered
	Failures  int       // consecutive failed queries (0: healthy)
	LastError string    // of the last failed query
}

// NewCatalog returns a Catalog on client. Close it to stop its watchers.
func NewCatalog(client *api.Client, opts CatalogOptions) *Catalog {
	opts.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Catalog{c: client, opts: opts, ctx: ctx, cancel: cancel, watchers: map[string]*watcher{}}
}

// Healthy returns the passing instances of UFOP name from the local view,
// sorted by ID. The first call for a name starts its watcher; calls within
// FirstWait of that start wait for Consul's first answer (at most until
// FirstWait has passed), later ones never wait. Without an answer the view
// is empty.
// The caller may keep and modify the slice.
func (c *Catalog) Healthy(name string) []cluster.Endpoint {
	c.mu.RLock()
	w := c.watchers[name]
	c.mu.RUnlock()
	if w == nil {
		if w, _ = c.watch(name); w == nil {
			return nil
		}
	}
	select {
	case <-w.ready:
	default:
		// No answer yet: callers within FirstWait of the watcher's start
		// wait for it (all of them, not only the one that started it).
		if rem := c.opts.FirstWait - time.Since(w.started); rem > 0 {
			t := time.NewTimer(rem)
			select {
			case <-w.ready:
			case <-t.C:
			case <-c.ctx.Done():
			}
			t.Stop()
		}
	}
	v := w.view.Load()
	if v == nil {
		return nil
	}
	return slices.Clone(*v)
}

// Watch starts the watchers of names now (Healthy would start them on
// first use), without waiting for Consul.
func (c *Catalog) Watch(names ...string) {
	for _, n := range names {
		c.watch(n)
	}
}

// Status reports the state of the watcher of name; ok is false if there is
// none.
func (c *Catalog) Status(name string) (st WatchStatus, ok bool) {
	c.mu.RLock()
	w := c.watchers[name]
	c.mu.RUnlock()
	if w == nil {
		return WatchStatus{}, false
	}
	return *w.status.Load(), true
}

// watch returns the watcher of name, starting it if needed. After Close it
// returns a nil watcher (or the stopped one, still holding its last view).
func (c *Catalog) watch(name string) (*watcher, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.watchers[name]; w != nil || c.closed {
		return w, false
	}
	w := &watcher{name: name, service: c.opts.ServicePrefix + name, ready: make(chan struct{}), started: time.Now()}
	w.status.Store(&WatchStatus{Service: w.service})
	c.watchers[name] = w
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run(w)
	}()
	return w, true
}

// Close stops every watcher and waits for them. Healthy keeps answering
// from the last views afterwards, but starts no new watcher.
func (c *Catalog) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

// run is the watcher loop: blocking queries, view swaps, back-off.
func (c *Catalog) run(w *watcher) {
	var (
		index    uint64 // 0: next query does not block
		first    = true
		failures int
		lastErr  string
		last     time.Time // start of the previous query
	)
	for {
		// Never query more often than MinInterval.
		if wait := c.opts.MinInterval - time.Since(last); !last.IsZero() && wait > 0 {
			if !sleep(c.ctx, wait) {
				return
			}
		}
		last = time.Now()
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: c.opts.WaitTime}).WithContext(c.ctx)
		entries, meta, err := c.c.Health().Service(w.service, "", true, q)
		if c.ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			lastErr = err.Error()
			if failures == 1 && c.opts.Logf != nil {
				c.opts.Logf("consul catalog: %s: %v (keeping the last view, retrying with back-off)", w.service, err)
			}
			st := *w.status.Load()
			st.Failures, st.LastError = failures, lastErr
			w.status.Store(&st)
			if !sleep(c.ctx, c.backoff(failures)) {
				return
			}
			continue
		}
		if failures > 0 && c.opts.Logf != nil {
			c.opts.Logf("consul catalog: %s: Consul is back after %d failed queries", w.service, failures)
		}
		failures = 0

		// A return does not mean a change: swap the view only on a new
		// index (or the first answer). An index that went backwards (a
		// restored snapshot, another server) resets the watch: take the
		// answer and ask again without blocking.
		next := meta.LastIndex
		changed := first || next != index
		switch {
		case next < index:
			next = 0
		case next == 0:
			// Consul should never answer 0; blocking on it would spin.
			next = 1
		}
		if changed {
			v := endpoints(entries)
			w.view.Store(&v)
		}
		index = next
		w.status.Store(&WatchStatus{Service: w.service, Index: meta.LastIndex, Updated: time.Now()})
		if first {
			first = false
			close(w.ready)
		}
	}
}

// backoff is the delay after the n-th consecutive failure: base·2^(n-1)
// capped at max, jittered into [d/2, d].
func (c *Catalog) backoff(n int) time.Duration {
	d := c.opts.BackoffBase
	for i := 1; i < n && d < c.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, c.opts.BackoffMax)
	half := d / 2
	return half + rand.N(d-half+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// endpoints turns Consul's health entries into the gateway's view: only
// instances whose checks all pass, Service.Address (or the node's address)
// plus the port, the version from the "v<N>" tag, sorted by ID.
func endpoints(entries []*api.ServiceEntry) []cluster.Endpoint {
	out := make([]cluster.Endpoint, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil || !allPassing(e.Checks) {
			continue
		}
		addr := e.Service.Address
		if addr == "" && e.Node != nil {
			addr = e.Node.Address
		}
		if addr == "" || e.Service.Port <= 0 {
			continue
		}
		out = append(out, cluster.Endpoint{
			ID:      e.Service.ID,
			Addr:    net.JoinHostPort(addr, strconv.Itoa(e.Service.Port)),
			Version: version(e.Service.Tags),
		})
	}
	slices.SortFunc(out, func(a, b cluster.Endpoint) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func allPassing(checks api.HealthChecks) bool {
	for _, c := range checks {
		if c != nil && c.Status != api.HealthPassing {
			return false
		}
	}
	return true
}

// version reads the first "v<N>" tag; 0 if there is none.
func version(tags []string) int {
	for _, t := range tags {
		if n, ok := strings.CutPrefix(t, "v"); ok {
			if v, err := strconv.Atoi(n); err == nil && v > 0 {
				return v
			}
		}
	}
	return 0
}

// String describes a status in one line.
func (s WatchStatus) String() string {
	if s.Failures > 0 {
		return fmt.Sprintf("%s: index %d, %d failed queries: %s", s.Service, s.Index, s.Failures, s.LastError)
	}
	return fmt.Sprintf("%s: index %d, updated %s", s.Service, s.Index, s.Updated.Format(time.RFC3339))
}
