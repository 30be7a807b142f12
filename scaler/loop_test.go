package scaler

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/cluster/local"
	"github.com/qufop/qufop/ufop"
)

type fakeSource struct {
	mu   sync.Mutex
	figs map[string]Figures
	err  error
}

func (f *fakeSource) Figures(context.Context) (map[string]Figures, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]Figures{}
	for k, v := range f.figs {
		out[k] = v
	}
	return out, f.err
}

func (f *fakeSource) set(name string, fig Figures) {
	f.mu.Lock()
	f.figs[name] = fig
	f.mu.Unlock()
}

type scaleCall struct {
	name   string
	count  int
	reason string
	meta   map[string]string
}

type fakeTarget struct {
	mu    sync.Mutex
	calls []scaleCall
	err   error
}

func (f *fakeTarget) Scale(_ context.Context, name string, count int, reason string, meta map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, scaleCall{name, count, reason, meta})
	return f.err
}

func (f *fakeTarget) counts() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for _, c := range f.calls {
		out = append(out, c.count)
	}
	return out
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

type fixture struct {
	s      *Scaler
	src    *fakeSource
	target *fakeTarget
	keeper *ufop.Keeper
	clock  *clock
}

func newFixture(t *testing.T, recs ...ufop.Record) *fixture {
	kv, err := local.NewKV(filepath.Join(t.TempDir(), "kv.json"))
	require.NoError(t, err)
	keeper := ufop.NewKeeper(kv)
	for _, r := range recs {
		require.NoError(t, keeper.Create(context.Background(), r))
	}
	f := &fixture{src: &fakeSource{figs: map[string]Figures{}}, target: &fakeTarget{}, keeper: keeper, clock: &clock{t: t0}}
	f.s = New(Config{Now: f.clock.now}, f.src, nil, f.target, keeper)
	return f
}

func (f *fixture) round(woken ...string) {
	w := map[string]bool{}
	for _, n := range woken {
		w[n] = true
	}
	f.s.Round(context.Background(), w)
}

func (f *fixture) rec(t *testing.T, name string) *ufop.Record {
	r, err := f.keeper.Get(context.Background(), name)
	require.NoError(t, err)
	return r
}

func slow(desired int, p *ufop.ScalePolicy) ufop.Record {
	return ufop.Record{Name: "slow", Owner: "admin", Mode: ufop.Public, Current: 1, Deployed: 1, Desired: desired, MaxInstances: 8, Scale: p}
}

func TestLoopBurstThenIdle(t *testing.T) {
	p := &ufop.ScalePolicy{Min: 1, Max: 6, Target: 2}
	f := newFixture(t, slow(1, p), ufop.Record{Name: "manual", Owner: "admin", Deployed: 1, Desired: 1, MaxInstances: 5})
	f.src.set("manual", Figures{Pending: 50})

	// A burst: 8 clients on one instance of concurrency 2.
	f.src.set("slow", Figures{Pending: 6, InFlight: 2, Capacity: 2, Healthy: 1})
	f.round()
	require.Equal(t, []int{4}, f.target.counts(), "one step up, straight to 4; the UFOP without a policy is left alone")
	r := f.rec(t, "slow")
	assert.Equal(t, 4, r.Desired)
	require.Len(t, r.ScaleHistory, 1)
	ev := r.ScaleHistory[0]
	assert.Equal(t, ufop.ScaleEvent{Time: t0, From: 1, To: 4, By: ufop.ByScaler, Pending: 6, InFlight: 2, Capacity: 2, Reason: ev.Reason}, ev)
	assert.Contains(t, ev.Reason, "6 waiting + 2 in flight")
	c := f.target.calls[0]
	assert.Equal(t, "6", c.meta["qufop.scaler.pending"])
	assert.Contains(t, c.reason, "1 -> 4")

	// Instances start: still 8 of work, capacity growing. No second step.
	for i := range 10 {
		f.clock.advance(2 * time.Second)
		f.src.set("slow", Figures{Pending: float64(6 - min(6, 2*i)), InFlight: float64(2 + min(6, 2*i)), Capacity: float64(2 * min(4, 1+i)), Healthy: float64(min(4, 1+i))})
		f.round()
	}
	assert.Equal(t, []int{4}, f.target.counts())

	// The burst ends: held for the window, then down to min once.
	f.src.set("slow", Figures{Capacity: 8, Healthy: 4})
	for range 30 {
		f.clock.advance(2 * time.Second)
		f.round()
	}
	assert.Equal(t, []int{4, 1}, f.target.counts())
	r = f.rec(t, "slow")
	assert.Equal(t, 1, r.Desired)
	assert.Len(t, r.ScaleHistory, 2)
	assert.Equal(t, 1.0, testutil.ToFloat64(f.s.m.decisions.WithLabelValues("slow", "up", "done")))
	assert.Equal(t, 1.0, testutil.ToFloat64(f.s.m.decisions.WithLabelValues("slow", "down", "done")))
	assert.Equal(t, 1.0, testutil.ToFloat64(f.s.m.current.WithLabelValues("slow")))
}

func TestLoopSkipsDuringDeployment(t *testing.T) {
	f := newFixture(t, slow(1, &ufop.ScalePolicy{Min: 1, Max: 6, Target: 2}))
	f.src.set("slow", Figures{Pending: 6, InFlight: 2})
	f.target.err = fmt.Errorf("nomad: scaling blocked due to active deployment: %w", cluster.ErrSkipped)
	for range 3 {
		f.round()
		f.clock.advance(2 * time.Second)
	}
	r := f.rec(t, "slow")
	assert.Equal(t, 1, r.Desired, "a skip changes nothing")
	require.Len(t, r.ScaleHistory, 1, "repeated skips are one entry")
	assert.True(t, r.ScaleHistory[0].Skipped)
	assert.Equal(t, 2, r.ScaleHistory[0].Repeats)
	assert.Contains(t, r.ScaleHistory[0].Reason, "active deployment")
	assert.Equal(t, 3.0, testutil.ToFloat64(f.s.m.decisions.WithLabelValues("slow", "up", "skipped")))

	f.target.err = nil
	f.round()
	r = f.rec(t, "slow")
	assert.Equal(t, 4, r.Desired, "retried at the next interval")
	assert.Len(t, r.ScaleHistory, 2)
}

func TestLoopTargetErrorIsCountedNotRecorded(t *testing.T) {
	f := newFixture(t, slow(1, &ufop.ScalePolicy{Min: 1, Max: 6, Target: 2}))
	f.src.set("slow", Figures{Pending: 6, InFlight: 2})
	f.target.err = errors.New("nomad: connection refused")
	f.round()
	r := f.rec(t, "slow")
	assert.Equal(t, 1, r.Desired)
	assert.Empty(t, r.ScaleHistory)
	assert.Equal(t, 1.0, testutil.ToFloat64(f.s.m.errors.WithLabelValues("target")))
}

// A wake evaluates at once, without waiting for the interval.
func TestLoopWake(t *testing.T) {
	f := newFixture(t, slow(0, &ufop.ScalePolicy{Min: 0, Max: 4, Target: 2}))
	f.round() // idle: evaluated, nothing to do
	assert.Empty(t, f.target.counts())
	f.clock.advance(150 * time.Millisecond)
	f.src.set("slow", Figures{Pending: 1, NoInstance: 1})
	f.round() // not due: the interval is 2 s
	assert.Empty(t, f.target.counts())
	f.round("slow")
	assert.Equal(t, []int{1}, f.target.counts(), "the first waiting step starts an instance")
}

// A resize by the user inside the range: the scaler goes on from it, and
// its cooldown runs from the user's change.
func TestLoopGoesOnFromAUserResize(t *testing.T) {
	f := newFixture(t, slow(2, &ufop.ScalePolicy{Min: 1, Max: 6, Target: 2}))
	f.src.set("slow", Figures{InFlight: 6})
	f.round()
	assert.Equal(t, []int{3}, f.target.counts())

	_, err := f.keeper.Update(context.Background(), "slow", func(r *ufop.Record) error {
		r.AddScaleEvent(ufop.ScaleEvent{Time: f.clock.t, From: r.Desired, To: 5, By: ufop.ByUser, User: "admin"})
		r.Desired = 5
		return nil
	})
	require.NoError(t, err)
	f.src.set("slow", Figures{InFlight: 12})
	f.clock.advance(time.Second)
	f.round("slow")
	assert.Equal(t, []int{3}, f.target.counts(), "inside the up cooldown of the scaler's own 2 -> 3")
	f.clock.advance(2 * time.Second)
	f.round()
	assert.Equal(t, []int{3, 6}, f.target.counts(), "from the user's 5 to 6")
	assert.Equal(t, 5, f.rec(t, "slow").ScaleHistory[2].From)

}

// The down cooldown runs from a user's change: a count set by hand is not
// undone at once.
func TestLoopDownCooldownFromAUserResize(t *testing.T) {
	p := &ufop.ScalePolicy{Min: 1, Max: 6, Target: 2, DownWindow: ufop.Duration(time.Second)}
	f := newFixture(t, slow(2, p))
	f.round()
	f.clock.advance(5 * time.Second)
	_, err := f.keeper.Update(context.Background(), "slow", func(r *ufop.Record) error {
		r.AddScaleEvent(ufop.ScaleEvent{Time: f.clock.t, From: r.Desired, To: 5, By: ufop.ByUser, User: "admin"})
		r.Desired = 5
		return nil
	})
	require.NoError(t, err)
	for range 7 { // 14 s: inside the 15 s down cooldown
		f.clock.advance(2 * time.Second)
		f.round()
	}
	assert.Empty(t, f.target.counts())
	f.clock.advance(2 * time.Second)
	f.round()
	assert.Equal(t, []int{1}, f.target.counts())
}

// When some gateways do not answer, the scaler goes up on what it knows
// but never down.
func TestLoopPartialFiguresNeverScaleDown(t *testing.T) {
	f := newFixture(t, slow(4, &ufop.ScalePolicy{Min: 1, Max: 6, Target: 2}))
	f.src.err = fmt.Errorf("gateway 10.0.0.2:8080: timeout: %w", ErrPartial)
	for range 40 {
		f.round()
		f.clock.advance(2 * time.Second)
	}
	assert.Empty(t, f.target.counts())
	f.src.set("slow", Figures{Pending: 10, InFlight: 2})
	f.round()
	assert.Equal(t, []int{6}, f.target.counts())
}

func TestLoopRun(t *testing.T) {
	f := newFixture(t, slow(1, &ufop.ScalePolicy{Min: 1, Max: 6, Target: 2}))
	f.s.cfg.Now = time.Now
	f.src.set("slow", Figures{Pending: 6, InFlight: 2})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.s.Run(ctx) }()
	f.s.Wake("slow")
	deadline := time.Now().Add(30 * time.Second)
	for f.rec(t, "slow").Desired != 4 {
		require.True(t, time.Now().Before(deadline), "the scaler never scaled")
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	require.NoError(t, <-done)
}
