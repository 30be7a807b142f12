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
	client *api.Client
	net    *cutter
	cancel context.CancelFunc
	done   chan error
	terms  atomic.Int32 // times lead was called
	inLead atomic.Bool

	mu               sync.Mutex
	started, stopped time.Time // of the last term's lead function
}

func (c *candidate) times() (started, stopped time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started, c.stopped
}

// race is the shared state of the electors of one test.
type race struct {
	t      *testing.T
	s      *consulfake.Server
	key    string
	ttl    time.Duration // of every elector (0: the default)
	active atomic.Int32  // lead functions running
}

// fastTTL is the TTL of the tests that wait for a check to run out: short,
// yet its StepDown (3/10) leaves a loaded machine more than a second.
const fastTTL = 4 * time.Second

func (r *race) start(name string) *candidate {
	r.t.Helper()
	c := &candidate{name: name, net: newCutter(), done: make(chan error, 1)}
	var err error
	c.client, err = api.NewClient(&api.Config{Address: r.s.Addr(), Scheme: "http", HttpClient: &http.Client{Transport: c.net}})
	if err != nil {
		r.t.Fatal(err)
	}
	c.e = NewElector(c.client, r.key, ElectorOptions{
		TTL:   r.ttl,
		Value: []byte(name),
		Logf:  func(f string, a ...any) { r.t.Logf(name+": "+f, a...) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		c.done <- c.e.Run(ctx, func(ctx context.Context) {
			c.terms.Add(1)
			c.mu.Lock()
			c.started = time.Now()
			c.mu.Unlock()
			c.inLead.Store(true)
			if n := r.active.Add(1); n > 1 {
				r.t.Errorf("%s leads while %d others do", name, n-1)
			}
			<-ctx.Done()
			r.active.Add(-1)
			c.inLead.Store(false)
			c.mu.Lock()
			c.stopped = time.Now()
			c.mu.Unlock()
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

func newRace(t *testing.T, ttl time.Duration) *race {
	s := consulfake.New()
	t.Cleanup(s.Close)
	return &race{t: t, s: s, key: "qufop/scaler/lock", ttl: ttl}
}

// two starts a and b and waits until one leads and the other waits on the
// lock (a blocking query on the key, besides the leader's watch). It
// returns them leader first.
func (r *race) two() (leader, waiter *candidate) {
	r.t.Helper()
	a := r.start("a")
	eventuallyLeads(r.t, a)
	b := r.start("b")
	eventually(r.t, "b waits", handover, func() bool { return r.s.Waiting() >= 2 })
	leader, waiter = a, b
	if b.e.Leading() { // a stepped down meanwhile (a very slow machine)
		leader, waiter = b, a
	}
	if !r.heldBy(leader.name) {
		r.t.Fatalf("the lock is not held by the leader %s", leader.name)
	}
	return leader, waiter
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

// sessionOf returns the lock holder's session as Consul shows it.
func (r *race) holderSession() *api.SessionEntry {
	r.t.Helper()
	c, err := api.NewClient(&api.Config{Address: r.s.Addr(), Scheme: "http"})
	if err != nil {
		r.t.Fatal(err)
	}
	id := r.s.LockHolder(r.key)
	if id == "" {
		r.t.Fatal("nobody holds the lock")
	}
	se, _, err := c.Session().Info(id, nil)
	if err != nil || se == nil {
		r.t.Fatalf("session %s: %v %v", id, se, err)
	}
	return se
}

// The timings keep the promises made in their doc, for any TTL.
func TestLockTimings(t *testing.T) {
	for _, ttl := range []time.Duration{MinLockTTL, fastTTL, DefaultLockTTL, 25 * time.Second, time.Hour, MaxLockTTL} {
		tm := LockTimings(ttl)
		t.Logf("TTL %s: check %s, lock delay %s, step down %s, heartbeat %s, session TTL %s",
			ttl, tm.CheckTTL, tm.LockDelay, tm.StepDown, tm.Heartbeat, tm.SessionTTL)
		switch {
		case tm.Heartbeat*2 > tm.StepDown:
			t.Errorf("TTL %s: step down %s leaves no room for a failed heartbeat (%s)", ttl, tm.StepDown, tm.Heartbeat)
		case tm.StepDown >= tm.CheckTTL:
			t.Errorf("TTL %s: the check (%s) may go critical before the leader steps down (%s)", ttl, tm.CheckTTL, tm.StepDown)
		case tm.StepDown+tm.Heartbeat > tm.LockDelay:
			t.Errorf("TTL %s: after another invalidation the lock delay %s ends before the leader has stepped down (%s) and stopped", ttl, tm.LockDelay, tm.StepDown)
		case tm.CheckTTL+tm.LockDelay+tm.poll() > ttl:
			t.Errorf("TTL %s: a takeover after a crash may take %s", ttl, tm.CheckTTL+tm.LockDelay+tm.poll())
		case 2*tm.SessionTTL < ttl || tm.SessionTTL < 10*time.Second || tm.SessionTTL > MaxLockTTL:
			t.Errorf("TTL %s: session TTL %s", ttl, tm.SessionTTL)
		}
	}
}

// What an elector registers: a service of its own with a passing TTL check
// on the agent, and a session tied to that check and serfHealth, with the
// lock delay and backstop TTL of its timings; a clean stop removes it all.
func TestElectorRegistersItsCheck(t *testing.T) {
	t.Parallel()
	r := newRace(t, 0)
	a := r.start("a")
	eventuallyLeads(t, a)
	tm := a.e.Timings()
	se := r.holderSession()
	if len(se.ServiceChecks) != 1 || len(se.NodeChecks) != 1 || se.NodeChecks[0] != "serfHealth" {
		t.Fatalf("the session's checks: node %v, service %v; want serfHealth and the elector's", se.NodeChecks, se.ServiceChecks)
	}
	check := se.ServiceChecks[0].ID
	if got := r.s.Checks(); len(got) != 1 || got[check] != "passing" {
		t.Errorf("agent checks %v, want %s passing", got, check)
	}
	if got := r.s.AgentServices(); len(got) != 1 || got[0] != check || !strings.HasPrefix(check, DefaultLockService+"-") {
		t.Errorf("agent services %v, want %s (under %s)", got, check, DefaultLockService)
	}
	if se.LockDelay != tm.LockDelay || se.TTL != tm.SessionTTL.String() || se.Behavior != "release" {
		t.Errorf("session lock delay %s TTL %s behavior %s, want %s %s release", se.LockDelay, se.TTL, se.Behavior, tm.LockDelay, tm.SessionTTL)
	}
	checks, err := newClient(t, r.s).Agent().Checks()
	if err != nil || checks[check] == nil || checks[check].ServiceName != DefaultLockService || checks[check].Type != "ttl" {
		t.Errorf("agent checks %v: %v", checks, err)
	}
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
	if len(r.s.Checks()) != 0 || len(r.s.AgentServices()) != 0 || len(r.s.Sessions()) != 0 {
		t.Errorf("left after a clean stop: checks %v, services %v, sessions %v", r.s.Checks(), r.s.AgentServices(), r.s.Sessions())
	}
}

// Two electors: one leads, its process dies (no more requests reach
// Consul: no check update, no renewal, no release), its check runs out,
// Consul invalidates its session, and the other takes over once the lock
// delay is over.
func TestElectorTakeoverWhenTheLeaderDies(t *testing.T) {
	t.Parallel()
	r := newRace(t, fastTTL)
	leader, other := r.two()
	sess := r.s.LockHolder(r.key)
	check := r.holderSession().ServiceChecks[0].ID

	// The leader dies: nothing it sends reaches Consul any more; its lead
	// stops with the process.
	died := time.Now()
	leader.net.Cut()
	if err := leader.stop(t); err != nil {
		t.Fatalf("%s's Run: %v", leader.name, err)
	}
	if r.s.Checks()[check] == "" {
		t.Fatalf("%s's check is gone, want it still there (nothing reached Consul)", leader.name)
	}
	eventually(t, "the dead leader's session invalidated", handover, func() bool {
		for _, id := range r.s.Sessions() {
			if id == sess {
				return false
			}
		}
		return true
	})
	invalidated := time.Now()
	if got := r.s.Checks()[check]; got != "critical" {
		t.Errorf("the dead leader's check is %q once its session is gone, want critical", got)
	}
	eventuallyLeads(t, other)
	tm := other.e.Timings()
	t.Logf("%s leads %s after %s died; its session went %s after (check TTL %s), then %s (lock delay %s)",
		other.name, time.Since(died).Round(10*time.Millisecond), leader.name, invalidated.Sub(died).Round(10*time.Millisecond),
		tm.CheckTTL, time.Since(invalidated).Round(10*time.Millisecond), tm.LockDelay)
	if !r.heldBy(other.name) {
		t.Errorf("the lock key does not hold %s's value", other.name)
	}
}

// A leader that stops releases the lock: the next one takes it without a
// lock delay, and the stopped one leads no more; it leaves nothing
// registered.
func TestElectorHandoverOnStop(t *testing.T) {
	t.Parallel()
	r := newRace(t, 0)
	a, b := r.two()
	if err := a.stop(t); err != nil {
		t.Fatalf("%s's Run: %v", a.name, err)
	}
	if a.e.Leading() || a.inLead.Load() {
		t.Errorf("%s still leads after Run returned", a.name)
	}
	eventuallyLeads(t, b)
	if len(r.s.Sessions()) != 1 || len(r.s.Checks()) != 1 || len(r.s.AgentServices()) != 1 {
		t.Errorf("sessions %v, checks %v, services %v: want only %s's (the other removes its own)",
			r.s.Sessions(), r.s.Checks(), r.s.AgentServices(), b.name)
	}
	if err := b.stop(t); err != nil {
		t.Fatalf("%s's Run: %v", b.name, err)
	}
	eventually(t, "sessions destroyed, checks deregistered", handover, func() bool {
		return len(r.s.Sessions()) == 0 && len(r.s.Checks()) == 0 && len(r.s.AgentServices()) == 0
	})
	if r.s.LockHolder(r.key) != "" {
		t.Error("the lock is still held after both stopped")
	}
}

// The leader's session is invalidated under it (an operator's
// `consul session destroy`, its node's agent failing): its lead is
// cancelled, the other takes over, and the first competes again.
func TestElectorSessionInvalidatedUnderTheLeader(t *testing.T) {
	t.Parallel()
	r := newRace(t, 0)
	a, b := r.two()
	r.s.ExpireSession(r.s.LockHolder(r.key))
	eventually(t, "the leader's lead cancelled", handover, func() bool { return !a.inLead.Load() && !a.e.Leading() })
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
		t.Errorf("%s led %d times, want 2", a.name, a.terms.Load())
	}
}

// The leader's check goes critical under it (an operator, or the agent
// failing it): Consul invalidates the session, the leader stops, and
// another term begins.
func TestElectorCheckCriticalUnderTheLeader(t *testing.T) {
	t.Parallel()
	r := newRace(t, 0)
	a, b := r.two()
	sess := r.s.LockHolder(r.key)
	if !r.s.SetCheck(r.holderSession().ServiceChecks[0].ID, "critical") {
		t.Fatal("no such check")
	}
	eventually(t, "the leader's lead cancelled", handover, func() bool { return !a.inLead.Load() && !a.e.Leading() })
	eventually(t, "one of them leads again", handover, func() bool {
		return (a.e.Leading() || b.e.Leading()) && r.s.LockHolder(r.key) != sess
	})
}

// A leader cut off from Consul (a network partition) stops leading by
// itself once Consul has confirmed nothing for StepDown, before its check
// runs out, and the other one takes over only after that.
func TestElectorLeaderCutOffStepsDown(t *testing.T) {
	t.Parallel()
	r := newRace(t, fastTTL)
	leader, other := r.two()
	cut := time.Now()
	leader.net.Cut()
	eventually(t, leader.name+" steps down", handover, func() bool { return !leader.inLead.Load() && !leader.e.Leading() })
	eventuallyLeads(t, other) // r.active checks that they never overlap
	_, stopped := leader.times()
	started, _ := other.times()
	if !stopped.Before(started) {
		t.Errorf("%s started leading at %s, before %s stopped at %s", other.name, started, leader.name, stopped)
	}
	t.Logf("%s stopped leading %s after it was cut off (step down %s); %s led %s after that",
		leader.name, stopped.Sub(cut).Round(10*time.Millisecond), leader.e.Timings().StepDown,
		other.name, started.Sub(stopped).Round(10*time.Millisecond))
}

// The agent loses its servers (no leader): the electors' check updates
// still succeed (they are the agent's own), but the renewals fail, so the
// leader steps down; nobody can take the lock meanwhile. Once the servers
// are back one of them leads again. Never two at once.
func TestElectorAgentWithoutServers(t *testing.T) {
	t.Parallel()
	r := newRace(t, fastTTL)
	leader, other := r.two()
	down := time.Now()
	r.s.SetDown(true)
	eventually(t, leader.name+" steps down", handover, func() bool { return !leader.inLead.Load() && !leader.e.Leading() })
	_, stopped := leader.times()
	t.Logf("%s stopped leading %s after the agent lost its servers (step down %s)",
		leader.name, stopped.Sub(down).Round(10*time.Millisecond), leader.e.Timings().StepDown)
	if other.e.Leading() {
		t.Errorf("%s leads while the agent has no servers", other.name)
	}
	r.s.SetDown(false)
	eventually(t, "one of them leads again", handover, func() bool {
		return (leader.e.Leading() && leader.inLead.Load()) || (other.e.Leading() && other.inLead.Load())
	})
}

func TestElectorNotALock(t *testing.T) {
	t.Parallel()
	r := newRace(t, 0)
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
	eventually(t, "session destroyed, check deregistered", handover, func() bool {
		return len(r.s.Sessions()) == 0 && len(r.s.Checks()) == 0
	})
}

func TestElectorBadTTL(t *testing.T) {
	r := newRace(t, 0)
	e := NewElector(newClient(t, r.s), "", ElectorOptions{TTL: time.Second})
	if e.Key() != DefaultLockKey {
		t.Errorf("key %q, want %q", e.Key(), DefaultLockKey)
	}
	err := e.Run(context.Background(), func(context.Context) {})
	if err == nil || !strings.Contains(err.Error(), "between 2s and 24h0m0s") {
		t.Fatalf("Run with a 1 s TTL: %v", err)
	}
	if len(r.s.Checks()) != 0 {
		t.Errorf("checks %v registered by a refused Run", r.s.Checks())
	}
}

// lead returning by itself gives the lock up; with no one else waiting
// the elector takes it again.
func TestElectorLeadReturns(t *testing.T) {
	t.Parallel()
	r := newRace(t, 0)
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
