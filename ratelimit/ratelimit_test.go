package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/tenant"
)

// clock is a fake clock the tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// mutablePolicy is a store whose limits a test edits while the limiter runs.
type mutablePolicy struct {
	mu sync.Mutex
	m  map[string]tenant.Limits
}

func (p *mutablePolicy) Limits(user string) tenant.Limits {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[user]
}

func (p *mutablePolicy) set(user string, l tenant.Limits) {
	p.mu.Lock()
	p.m[user] = l
	p.mu.Unlock()
}

func ctxOf(user string, class tenant.Class) context.Context {
	return tenant.With(context.Background(), tenant.Tenant{User: user, Class: class})
}

func chainOf(t *testing.T, q string) fop.Chain {
	t.Helper()
	c, err := fop.Parse(q)
	require.NoError(t, err)
	return c
}

// admitted runs Admit and releases at once; it reports whether the
// request was admitted, and checks a refusal's form.
func admitted(t *testing.T, l *Limiter, ctx context.Context, chain fop.Chain) (bool, *Refused) {
	t.Helper()
	release, err := l.Admit(ctx, chain)
	if err == nil {
		release()
		return true, nil
	}
	var r *Refused
	require.True(t, errors.As(err, &r), "not a *Refused: %v", err)
	assert.Equal(t, errs.StatusTooFrequent, errs.Status(err))
	return false, r
}

func TestTokenBucketPerUser(t *testing.T) {
	type req struct {
		user  string
		class tenant.Class
		after time.Duration // clock moves this much first
		ok    bool
	}
	tests := []struct {
		name     string
		policy   StaticPolicy
		defaults map[tenant.Class]tenant.Limits
		reqs     []req
	}{
		{
			name: "no limits: everything passes",
			reqs: []req{{"a", tenant.Free, 0, true}, {"a", tenant.Free, 0, true}, {"a", tenant.Free, 0, true}},
		},
		{
			name:   "burst then refused, refilled at the rate",
			policy: StaticPolicy{"a": {RPS: 2, Burst: 2}},
			reqs: []req{
				{"a", tenant.Free, 0, true}, {"a", tenant.Free, 0, true}, {"a", tenant.Free, 0, false},
				{"a", tenant.Free, 499 * time.Millisecond, false}, // not yet a token
				{"a", tenant.Free, time.Millisecond, true},        // 0.5 s: one token
				{"a", tenant.Free, 0, false},
			},
		},
		{
			name:   "users have their own buckets",
			policy: StaticPolicy{"a": {RPS: 1, Burst: 1}, "b": {RPS: 1, Burst: 1}},
			reqs:   []req{{"a", tenant.Free, 0, true}, {"a", tenant.Free, 0, false}, {"b", tenant.Free, 0, true}, {"b", tenant.Free, 0, false}},
		},
		{
			name:     "class defaults: free limited, paid not",
			defaults: map[tenant.Class]tenant.Limits{tenant.Free: {RPS: 1, Burst: 1}},
			reqs:     []req{{"f", tenant.Free, 0, true}, {"f", tenant.Free, 0, false}, {"p", tenant.Paid, 0, true}, {"p", tenant.Paid, 0, true}},
		},
		{
			name:     "a user's own limit over its class's",
			policy:   StaticPolicy{"big": {Burst: 3}},
			defaults: map[tenant.Class]tenant.Limits{tenant.Free: {RPS: 1, Burst: 1}},
			reqs: []req{
				{"big", tenant.Free, 0, true}, {"big", tenant.Free, 0, true}, {"big", tenant.Free, 0, true}, {"big", tenant.Free, 0, false},
				{"small", tenant.Free, 0, true}, {"small", tenant.Free, 0, false},
			},
		},
		{
			name:   "no burst set: one second's worth",
			policy: StaticPolicy{"a": {RPS: 2.5}},
			reqs:   []req{{"a", tenant.Free, 0, true}, {"a", tenant.Free, 0, true}, {"a", tenant.Free, 0, true}, {"a", tenant.Free, 0, false}},
		},
		{
			name:     "the unknown user is limited like any user",
			defaults: map[tenant.Class]tenant.Limits{tenant.Free: {RPS: 1, Burst: 1}},
			reqs:     []req{{"", tenant.Free, 0, true}, {"", tenant.Free, 0, false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			l := New(tt.policy, Options{Defaults: tt.defaults, Now: clk.now})
			for i, r := range tt.reqs {
				clk.advance(r.after)
				ok, ref := admitted(t, l, ctxOf(r.user, r.class), fop.Chain{})
				require.Equal(t, r.ok, ok, "request %d (%s)", i, r.user)
				if !ok {
					assert.Equal(t, ReasonRPS, ref.RefusedReason())
				}
			}
		})
	}
}

func TestRefusalNamesTheLimit(t *testing.T) {
	l := New(StaticPolicy{"alice": {RPS: 10, Burst: 20}}, Options{Now: newClock().now})
	ctx := ctxOf("alice", tenant.Free)
	for range 20 {
		ok, _ := admitted(t, l, ctx, fop.Chain{})
		require.True(t, ok)
	}
	_, err := l.Admit(ctx, fop.Chain{})
	require.Error(t, err)
	assert.Equal(t, 573, errs.Status(err))
	assert.Equal(t, `user "alice": over 10 requests per second (burst 20), slow down`, errs.Public(err))
}

func TestLimitsChangeWithoutRestart(t *testing.T) {
	clk := newClock()
	p := &mutablePolicy{m: map[string]tenant.Limits{"a": {RPS: 1, Burst: 1}}}
	l := New(p, Options{Now: clk.now})
	ctx := ctxOf("a", tenant.Free)
	ok, _ := admitted(t, l, ctx, fop.Chain{})
	require.True(t, ok)
	ok, _ = admitted(t, l, ctx, fop.Chain{})
	require.False(t, ok, "over 1 rps")

	// Raised: at 100 rps, 10 ms brings a token back, where 1 rps would
	// need a second. The limiter learns of the change at the user's next
	// request (refused: the time before it filled at the old rate), and
	// from then on the new rate is in force.
	p.set("a", tenant.Limits{RPS: 100, Burst: 1})
	ok, _ = admitted(t, l, ctx, fop.Chain{})
	require.False(t, ok)
	clk.advance(10 * time.Millisecond)
	ok, _ = admitted(t, l, ctx, fop.Chain{})
	require.True(t, ok, "the raised rate is in force")

	// A bigger burst is in force too: tokens fill up to it.
	p.set("a", tenant.Limits{RPS: 100, Burst: 5})
	clk.advance(time.Second)
	ok, _ = admitted(t, l, ctx, fop.Chain{}) // learns of it (the old burst's token)
	require.True(t, ok)
	clk.advance(time.Second)
	for i := range 5 {
		ok, _ = admitted(t, l, ctx, fop.Chain{})
		require.True(t, ok, "request %d of the burst of 5", i)
	}
	ok, _ = admitted(t, l, ctx, fop.Chain{})
	require.False(t, ok)

	// Removed: no limit at all.
	p.set("a", tenant.Limits{})
	for range 10 {
		ok, _ = admitted(t, l, ctx, fop.Chain{})
		require.True(t, ok)
	}
}

func TestBucketsBoundedByLRU(t *testing.T) {
	clk := newClock()
	l := New(nil, Options{Defaults: map[tenant.Class]tenant.Limits{tenant.Free: {RPS: 1, Burst: 1}}, Users: 3, Now: clk.now})
	for i := range 100 {
		ok, _ := admitted(t, l, ctxOf(fmt.Sprint("u", i), tenant.Free), fop.Chain{})
		require.True(t, ok)
	}
	assert.Equal(t, 3, l.Users(), "buckets kept")
	// The most recent users keep their (empty) buckets...
	ok, _ := admitted(t, l, ctxOf("u99", tenant.Free), fop.Chain{})
	assert.False(t, ok)
	// ...an evicted one comes back with a full one.
	ok, _ = admitted(t, l, ctxOf("u0", tenant.Free), fop.Chain{})
	assert.True(t, ok)
}

func TestCommandConcurrency(t *testing.T) {
	p := StaticPolicy{"a": {Commands: map[string]int{"imageMogr2": 2, "slow": 1}}}
	type step struct {
		user, chain string
		ok          bool
		release     int // release the slots of request #release (1-based) first; 0: none
	}
	tests := []struct {
		name  string
		steps []step
		after map[string]int // cmd -> slots of "a" held at the end
	}{
		{
			name: "up to the cap, then refused",
			steps: []step{
				{"a", "imageMogr2/thumbnail/10x", true, 0},
				{"a", "imageMogr2/thumbnail/10x", true, 0},
				{"a", "imageMogr2/thumbnail/10x", false, 0},
			},
			after: map[string]int{"imageMogr2": 2},
		},
		{
			name: "a release frees a slot",
			steps: []step{
				{"a", "imageMogr2/rotate/90", true, 0},
				{"a", "imageMogr2/rotate/90", true, 0},
				{"a", "imageMogr2/rotate/90", true, 1},
			},
			after: map[string]int{"imageMogr2": 2},
		},
		{
			name: "other users and uncapped commands are not counted",
			steps: []step{
				{"a", "slow", true, 0},
				{"b", "slow", true, 0},
				{"b", "slow", true, 0},
				{"a", "imageView2/2/w/10", true, 0},
				{"a", "imageView2/2/w/10", true, 0},
			},
			after: map[string]int{"slow": 1, "imageView2": 0},
		},
		{
			name: "one slot per distinct command of a chain",
			steps: []step{
				{"a", "imageMogr2/rotate/90|imageMogr2/rotate/90", true, 0},
				{"a", "imageMogr2/rotate/90", true, 0},
				{"a", "imageMogr2/rotate/90", false, 0},
			},
			after: map[string]int{"imageMogr2": 2},
		},
		{
			name: "a refused chain holds nothing",
			steps: []step{
				{"a", "slow", true, 0},
				{"a", "imageMogr2/rotate/90|slow", false, 0},
			},
			after: map[string]int{"slow": 1, "imageMogr2": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(p, Options{})
			var releases []func()
			for i, s := range tt.steps {
				if s.release > 0 {
					releases[s.release-1]()
					releases[s.release-1]() // twice: a second call gives nothing back
				}
				rel, err := l.Admit(ctxOf(s.user, tenant.Free), chainOf(t, s.chain))
				releases = append(releases, rel)
				if !s.ok {
					require.Error(t, err, "step %d", i)
					var r *Refused
					require.True(t, errors.As(err, &r))
					assert.Equal(t, ReasonCommand, r.RefusedReason())
					assert.Equal(t, 573, errs.Status(err))
					assert.Contains(t, errs.Public(err), fmt.Sprintf("user %q: over", s.user))
					continue
				}
				require.NoError(t, err, "step %d", i)
			}
			for cmd, n := range tt.after {
				assert.Equal(t, n, l.Running("a", cmd), cmd)
			}
			for _, rel := range releases {
				if rel != nil {
					rel()
				}
			}
			for cmd := range tt.after {
				assert.Zero(t, l.Running("a", cmd), "%s after every release", cmd)
			}
			assert.Empty(t, l.running, "no entries left once nothing runs")
		})
	}
}

func TestCommandRefusalMessage(t *testing.T) {
	l := New(StaticPolicy{"bob": {Commands: map[string]int{"imageMogr2": 1}}}, Options{})
	ctx := ctxOf("bob", tenant.Paid)
	rel, err := l.Admit(ctx, chainOf(t, "imageMogr2/rotate/90"))
	require.NoError(t, err)
	defer rel()
	_, err = l.Admit(ctx, chainOf(t, "imageMogr2/rotate/90"))
	assert.Equal(t, `user "bob": over 1 imageMogr2 steps at once, slow down`, errs.Public(err))
}

// A request that panics gives its slots back when its release is deferred,
// as the gateway's handlers do.
func TestReleaseOnPanic(t *testing.T) {
	l := New(StaticPolicy{"a": {Commands: map[string]int{"imageMogr2": 1}}}, Options{})
	ctx := ctxOf("a", tenant.Free)
	func() {
		defer func() { _ = recover() }()
		rel, err := l.Admit(ctx, chainOf(t, "imageMogr2/rotate/90"))
		require.NoError(t, err)
		defer rel()
		panic("step failed")
	}()
	assert.Zero(t, l.Running("a", "imageMogr2"))
	rel, err := l.Admit(ctx, chainOf(t, "imageMogr2/rotate/90"))
	require.NoError(t, err)
	rel()
}

// Many requests at once never hold more than the cap (run with -race).
func TestCommandCapUnderConcurrency(t *testing.T) {
	const cap = 3
	l := New(StaticPolicy{"a": {Commands: map[string]int{"imageMogr2": cap}}}, Options{})
	ctx := ctxOf("a", tenant.Free)
	chain := chainOf(t, "imageMogr2/rotate/90")
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		now, top int
	)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				rel, err := l.Admit(ctx, chain)
				if err != nil {
					continue
				}
				mu.Lock()
				now++
				top = max(top, now)
				mu.Unlock()
				mu.Lock()
				now--
				mu.Unlock()
				rel()
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, top, cap)
	assert.Zero(t, l.Running("a", "imageMogr2"))
}

// The cost of admission per request: a token and a command slot of one
// user among many, the release included.
func BenchmarkAdmit(b *testing.B) {
	l := New(StaticPolicy{}, Options{Defaults: map[tenant.Class]tenant.Limits{
		tenant.Free: {RPS: 1e9, Burst: 1e9, Commands: map[string]int{"imageMogr2": 1 << 30}},
	}})
	chain, err := fop.Parse("imageMogr2/rotate/90")
	require.NoError(b, err)
	ctxs := make([]context.Context, 1000)
	for i := range ctxs {
		ctxs[i] = ctxOf(fmt.Sprint("user", i), tenant.Free)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		rel, err := l.Admit(ctxs[i%len(ctxs)], chain)
		if err != nil {
			b.Fatal(err)
		}
		rel()
	}
}
