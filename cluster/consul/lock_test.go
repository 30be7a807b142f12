package consul

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/qufop/qufop/cluster/consul/consulfake"
)

// The waits below are generous (a loaded machine is slow); nothing asserts
// how long a handover took, only that it happens and that two electors
// never lead at once.
const handover = 2 * time.Minute

// cutter is an http.RoundTripper that can be cut off: from then on every
// request fails and those in flight are aborted, as for a process that died
// or lost its network.
type cutter struct {
	next http.RoundTripper
	mu   sync.Mutex
	cut  bool
	ctx  context.Context
	stop context.CancelFunc
}

func newCutter() *cutter {
	ctx, stop := context.WithCancel(context.Background())
	return &cutter{next: http.DefaultTransport, ctx: ctx, stop: stop}
}

func (c *cutter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	cut := c.cut
	c.mu.Unlock()
	if cut {
		return nil, errors.New("cut off")
	}
	ctx, cancel := context.WithCancel(r.Context())
	stopAfter := context.AfterFunc(c.ctx, cancel)
	resp, err := c.next.RoundTrip(r.WithContext(ctx))
	if err != nil {
		stopAfter()
		cancel()
		return nil, err
	}
	resp.Body = &onClose{resp.Body, func() { stopAfter(); cancel() }}
	return resp, nil
}

func (c *cutter) Cut() {
	c.mu.Lock()
	c.cut = true
	c.mu.Unlock()
	c.stop()
}

type onClose struct {
	body interface {
		Read([]byte) (int, error)
		Close() error
	}
	done func()
}

func (o *onClose) Read(p []byte) (int, error) { return o.body.Read(p) }
func (o *onClose) Close() error               { err := o.body.Close(); o.done(); return err }

// candidate is one elector running in the test, with its own client.
type candidate struct {
	name   string
	e      *Elector
	net    *cutter
	cancel context.CancelFunc
	done   chan error
	terms  atomic.Int32 // times lead was called
	inLead atomic.Bool
}

// race is the shared state of the electors of one test.
type race struct {
	t      *testing.T
	s      *consulfake.Server
	key    string
	active atomic.Int32 // lead functions running
}

func (r *race) start(name string) *candidate {
	r.t.Helper()
	c := &candidate{name: name, net: newCutter(), done: make(chan error, 1)}
	client, err := api.NewClient(&api.Config{Address: r.s.Addr(), Scheme: "http", HttpClient: &http.Client{Transport: c.net}})
	if err != nil {
		r.t.Fatal(err)
	}
	c.e = NewElector(client, r.key, ElectorOptions{
		Value: []byte(name),
		Logf:  func(f string, a ...any) { r.t.Logf(name+": "+f, a...) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		c.done <- c.e.Run(ctx, func(ctx context.Context) {
			c.terms.Add(1)
			c.inLead.Store(true)
			if n := r.active.Add(1); n > 1 {
				r.t.Errorf("%s leads while %d others do", name, n-1)
			}
			<-ctx.Done()
			r.active.Add(-1)
			c.inLead.Store(false)
		})
	}()
	r.t.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(handover):
			r.t.Errorf("%s: Run did not return", name)
		}
	})
	return c
}

// stop ends c's Run and returns its result.
func (c *candidate) stop(t *testing.T) error {
	t.Helper()
	c.cancel()
	select {
	case err := <-c.done:
		c.done <- err // for the clean-up
		return err
	case <-time.After(handover):
		t.Fatalf("%s: Run did not return within %s of its ctx ending", c.name, handover)
		return nil
	}
}

func eventuallyLeads(t *testing.T, c *candidate) {
	t.Helper()
	eventually(t, c.name+" leads", handover, func() bool { return c.e.Leading() && c.inLead.Load() })
}

func newRace(t *testing.T) *race {
	s := consulfake.New()
	t.Cleanup(s.Close)
	return &race{t: t, s: s, key: "qufop/scaler/lock"}
}

// heldBy reports whether the lock key holds name's value under a session.
func (r *race) heldBy(name string) bool {
	c, err := api.NewClient(&api.Config{Address: r.s.Addr(), Scheme: "http"})
	if err != nil {
		return false
	}
	p, _, err := c.KV().Get(r.key, nil)
	return err == nil && p != nil && p.Session != "" && string(p.Value) == name && p.Flags == api.LockFlagValue
}

// Two electors: one leads, its process dies (no more requests reach
// Consul: no renewal, no release), Consul expires its session, and the
// other takes over.
func TestElectorTakeoverWhenTheLeaderDies(t *testing.T) {
	t.Parallel()
	r := newRace(t)
	a := r.start("a")
	eventuallyLeads(t, a)
	b := r.start("b")
	// b waits on the held lock (a blocking query on the key).
	eventually(t, "b waits", handover, func() bool { return r.s.Waiting() >= 2 })
	if b.e.Leading() || !r.heldBy("a") {
		t.Fatalf("b leads %v, lock held by a %v", b.e.Leading(), r.heldBy("a"))
	}

	// a dies: nothing it sends reaches Consul any more; its lead stops
	// with the process.
	sess := r.s.LockHolder(r.key)
	a.net.Cut()
	if err := a.stop(t); err != nil {
		t.Fatalf("a's Run: %v", err)
	}
	if got := r.s.LockHolder(r.key); got != sess {
		t.Fatalf("the lock is held by %q after a died, want a's session %s still (nothing reached Consul)", got, sess)
	}
	// Consul invalidates the session 2 × TTL after its last renewal.
	start := time.Now()
	if !r.s.ExpireSession(sess) {
		t.Fatal("a's session was already gone")
	}
	eventuallyLeads(t, b)
	t.Logf("b leads %s after a's session expired (lock delay %s, then consul/api retries after 5 s)",
		time.Since(start).Round(100*time.Millisecond), DefaultLockDelay)
	if !r.heldBy("b") {
		t.Error("the lock key does not hold b's value")
	}
}

// A leader that stops releases the lock: the next one takes it without a
// lock delay, and the stopped one leads no more.
func TestElectorHandoverOnStop(t *testing.T) {
	t.Parallel()
	r := newRace(t)
	a := r.start("a")
	eventuallyLeads(t, a)
	b := r.start("b")
	eventually(t, "b waits", handover, func() bool { return r.s.Waiting() >= 2 })
	if err := a.stop(t); err != nil {
		t.Fatalf("a's Run: %v", err)
	}
	if a.e.Leading() || a.inLead.Load() {
		t.Error("a still leads after Run returned")
	}
	eventuallyLeads(t, b)
	if len(r.s.Sessions()) != 1 {
		t.Errorf("sessions %v: want only b's (a destroys its own)", r.s.Sessions())
	}
	if err := b.stop(t); err != nil {
		t.Fatalf("b's Run: %v", err)
	}
	eventually(t, "sessions destroyed", handover, func() bool { return len(r.s.Sessions()) == 0 })
	if r.s.LockHolder(r.key) != "" {
		t.Error("the lock is still held after both stopped")
	}
}

// The leader's session is invalidated under it (an operator's
// `consul session destroy`, its node's agent failing): its lead is
// cancelled, the other takes over, and the first competes again.
func TestElectorSessionInvalidatedUnderTheLeader(t *testing.T) {
	t.Parallel()
	r := newRace(t)
	a := r.start("a")
	eventuallyLeads(t, a)
	b := r.start("b")
	eventually(t, "b waits", handover, func() bool { return r.s.Waiting() >= 2 })
	r.s.ExpireSession(r.s.LockHolder(r.key))
	eventually(t, "a's lead cancelled", handover, func() bool { return !a.inLead.Load() && !a.e.Leading() })
	eventually(t, "one of them leads again", handover, func() bool { return a.e.Leading() || b.e.Leading() })
	first, second := a, b
	if b.e.Leading() {
		first, second = b, a
	}
	// The one that does not lead waits again; stopping the leader hands
	// over at once.
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	eventuallyLeads(t, second)
	if first == a && a.terms.Load() < 2 {
		t.Errorf("a led %d times, want 2", a.terms.Load())
	}
}

// A leader cut off from Consul (a network partition) stops leading by
// itself once it could not renew its session for a TTL, before Consul
// (2 × TTL) lets the other one in.
func TestElectorLeaderCutOffStepsDown(t *testing.T) {
	t.Parallel()
	r := newRace(t)
	a := r.start("a")
	eventuallyLeads(t, a)
	b := r.start("b")
	eventually(t, "b waits", handover, func() bool { return r.s.Waiting() >= 2 })
	a.net.Cut()
	eventually(t, "a steps down", handover, func() bool { return !a.inLead.Load() && !a.e.Leading() })
	eventuallyLeads(t, b) // r.active checks that they never overlap
}

func TestElectorNotALock(t *testing.T) {
	t.Parallel()
	r := newRace(t)
	c := newClient(t, r.s)
	if _, err := c.KV().Put(&api.KVPair{Key: r.key, Value: []byte("plain")}, nil); err != nil {
		t.Fatal(err)
	}
	e := NewElector(c, r.key, ElectorOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), handover)
	defer cancel()
	err := e.Run(ctx, func(context.Context) { t.Error("led on a key that is not a lock") })
	if !errors.Is(err, ErrNotALock) || !strings.Contains(err.Error(), r.key) {
		t.Fatalf("Run: %v, want ErrNotALock naming the key", err)
	}
	eventually(t, "session destroyed", handover, func() bool { return len(r.s.Sessions()) == 0 })
}

func TestElectorBadTTL(t *testing.T) {
	r := newRace(t)
	e := NewElector(newClient(t, r.s), "", ElectorOptions{TTL: 5 * time.Second})
	if e.Key() != DefaultLockKey {
		t.Errorf("key %q, want %q", e.Key(), DefaultLockKey)
	}
	err := e.Run(context.Background(), func(context.Context) {})
	if err == nil || !strings.Contains(err.Error(), "10s to 24h") {
		t.Fatalf("Run with a 5 s TTL: %v", err)
	}
}

// lead returning by itself gives the lock up; with no one else waiting
// the elector takes it again.
func TestElectorLeadReturns(t *testing.T) {
	t.Parallel()
	r := newRace(t)
	c := newClient(t, r.s)
	e := NewElector(c, r.key, ElectorOptions{Retry: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- e.Run(ctx, func(context.Context) {
			if n.Add(1) == 2 {
				cancel()
			}
		})
	}()
	select {
	case err := <-done:
		if err != nil || n.Load() < 2 {
			t.Fatalf("Run: %v after %d terms", err, n.Load())
		}
	case <-time.After(handover):
		t.Fatal("Run did not return")
	}
	if e.Leading() {
		t.Error("Leading after Run returned")
	}
}
