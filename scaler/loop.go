package scaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/ufop"
)

// Target applies a count (cluster.Orchestrator is one). ErrSkipped from it
// (wrapped) means "not now": a deployment is active.
type Target interface {
	Scale(ctx context.Context, name string, count int, reason string, meta map[string]string) error
}

// Records are the UFOP records with their policies and histories
// (ufop.Keeper).
type Records interface {
	List(ctx context.Context) ([]ufop.Record, error)
	Get(ctx context.Context, name string) (*ufop.Record, error)
	Update(ctx context.Context, name string, fn func(*ufop.Record) error) (*ufop.Record, error)
}

// Config of a Scaler.
type Config struct {
	// Tick is how often the loop looks for UFOPs due for evaluation (each
	// has its own interval); default 100 ms.
	Tick time.Duration
	// Timeout bounds one evaluation round (source, orchestrator, Keeper);
	// default 30 s.
	Timeout time.Duration
	Logger  *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time
}

// Scaler evaluates every UFOP with a scale policy.
type Scaler struct {
	cfg      Config
	src      Source
	strategy Strategy
	target   Target
	records  Records
	m        *Metrics
	wake     chan string

	mu       sync.Mutex
	state    map[string]*ufopState
	lastList time.Time
}

// ufopState is what the scaler remembers of a UFOP between evaluations.
type ufopState struct {
	policy   ufop.ScalePolicy
	since    time.Time // when wants began (start, or the policy changed)
	wants    []Want
	lastEval time.Time
}

// New returns a scaler. strategy nil is TargetValue.
func New(cfg Config, src Source, strategy Strategy, target Target, records Records) *Scaler {
	if cfg.Tick <= 0 {
		cfg.Tick = 100 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if strategy == nil {
		strategy = TargetValue{}
	}
	return &Scaler{
		cfg: cfg, src: src, strategy: strategy, target: target, records: records,
		m: NewMetrics(), wake: make(chan string, 64), state: map[string]*ufopState{},
	}
}

// Metrics are the scaler's own series (register them where /metrics is
// served).
func (s *Scaler) Metrics() *Metrics { return s.m }

// Wake asks for an evaluation of name now instead of at its next interval
// (a step of it had to wait). It never blocks.
func (s *Scaler) Wake(name string) {
	select {
	case s.wake <- name:
	default: // a wake is already pending; the round reads every UFOP
	}
}

// Run evaluates until ctx ends. A wake is served at the next tick, not at
// once: the steps of a burst arrive within milliseconds of each other, and
// deciding on the first one alone would ask for too little and then wait
// out the up cooldown for the rest.
func (s *Scaler) Run(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	s.cfg.Logger.Info("scaler started")
	woken := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			s.cfg.Logger.Info("scaler stopped")
			return nil
		case name := <-s.wake:
			woken[name] = true
		case <-tick.C:
			s.Round(ctx, woken)
			woken = map[string]bool{}
		}
	}
}

// Round evaluates the UFOPs that are due (their interval has passed) or
// woken. It is Run's body, exported for tests that drive the clock.
func (s *Scaler) Round(ctx context.Context, woken map[string]bool) {
	now := s.cfg.Now()
	s.mu.Lock()
	due := len(woken) > 0
	for _, st := range s.state {
		if now.Sub(st.lastEval) >= st.policy.Interval.D() {
			due = true
		}
	}
	if now.Sub(s.lastList) >= ufop.DefaultScaleInterval {
		due = true // look for new policies
	}
	s.mu.Unlock()
	if !due {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	recs, err := s.records.List(ctx)
	if err != nil {
		s.m.errors.WithLabelValues("keeper").Inc()
		s.cfg.Logger.Warn("scaler: listing ufops", "err", err)
		return
	}
	var todo []ufop.Record
	s.mu.Lock()
	s.lastList = now
	seen := map[string]bool{}
	for _, rec := range recs {
		if rec.Scale == nil {
			continue
		}
		seen[rec.Name] = true
		pol := rec.Scale.WithDefaults()
		st := s.state[rec.Name]
		if st == nil || st.policy != pol {
			st = &ufopState{policy: pol, since: now}
			s.state[rec.Name] = st
		}
		// A wake evaluates at once, but a UFOP whose steps keep waiting
		// wakes the loop with every step: once per Tick is enough.
		if (woken[rec.Name] && now.Sub(st.lastEval) >= s.cfg.Tick) || now.Sub(st.lastEval) >= pol.Interval.D() {
			todo = append(todo, rec)
		}
	}
	for name := range s.state {
		if !seen[name] {
			delete(s.state, name)
			s.m.forget(name)
		}
	}
	s.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	figs, err := s.src.Figures(ctx)
	partial := false
	if err != nil {
		if !errors.Is(err, ErrPartial) {
			s.m.errors.WithLabelValues("source").Inc()
			s.cfg.Logger.Warn("scaler: reading the figures", "err", err)
			return
		}
		// Some gateways did not answer: their work is unknown, so scale
		// up on what is known but never down this round.
		partial = true
		s.m.errors.WithLabelValues("source").Inc()
		s.cfg.Logger.Warn("scaler: figures from some gateways only", "err", err)
	}
	for _, rec := range todo {
		s.evaluate(ctx, rec, figs[rec.Name], partial, now)
	}
}

func (s *Scaler) evaluate(ctx context.Context, rec ufop.Record, f Figures, partial bool, now time.Time) {
	s.mu.Lock()
	st := s.state[rec.Name]
	if st == nil {
		s.mu.Unlock()
		return
	}
	st.lastEval = now
	window := st.policy.DownWindow.D()
	for len(st.wants) > 0 && now.Sub(st.wants[0].At) > window {
		st.wants = st.wants[1:]
	}
	in := Input{
		Policy: st.policy, Current: rec.Desired, Figures: f, Now: now,
		Wants: append([]Want(nil), st.wants...), Since: st.since,
	}
	s.mu.Unlock()
	if last, ok := rec.LastChange(); ok {
		in.LastChange = last.Time
	}
	for _, e := range rec.ScaleHistory {
		if e.By == ufop.ByScaler && !e.Skipped && e.To > e.From {
			in.LastUp = e.Time
		}
	}
	if rec.Deployed == 0 {
		s.m.errors.WithLabelValues("not_deployed").Inc()
		return
	}
	d := s.strategy.Decide(in)
	s.mu.Lock()
	st.wants = append(st.wants, Want{At: now, N: d.Want})
	s.mu.Unlock()
	s.m.desired.WithLabelValues(rec.Name).Set(float64(d.Want))
	s.m.current.WithLabelValues(rec.Name).Set(float64(rec.Desired))
	dir := d.Direction(rec.Desired)
	if dir == "down" && partial {
		return
	}
	if dir == "none" {
		return
	}
	ev := ufop.ScaleEvent{
		Time: now.UTC(), From: rec.Desired, To: d.To, By: ufop.ByScaler,
		Pending: f.Pending, InFlight: f.InFlight, Capacity: f.Capacity, Reason: d.Reason,
	}
	meta := map[string]string{
		"qufop.scaler.pending":   strconv.FormatFloat(f.Pending, 'f', -1, 64),
		"qufop.scaler.in_flight": strconv.FormatFloat(f.InFlight, 'f', -1, 64),
		"qufop.scaler.capacity":  strconv.FormatFloat(f.Capacity, 'f', -1, 64),
		"qufop.scaler.target":    strconv.FormatFloat(st.policy.Target, 'f', -1, 64),
		"qufop.scaler.from":      strconv.Itoa(rec.Desired),
	}
	reason := fmt.Sprintf("qufop scaler: %d -> %d: %s", rec.Desired, d.To, d.Reason)
	err := s.target.Scale(ctx, rec.Name, d.To, reason, meta)
	switch {
	case errors.Is(err, cluster.ErrSkipped):
		s.m.decisions.WithLabelValues(rec.Name, dir, "skipped").Inc()
		s.cfg.Logger.Info("scaler: skipped", "ufop", rec.Name, "from", rec.Desired, "to", d.To, "why", err)
		ev.Skipped, ev.Reason = true, fmt.Sprintf("%s (skipped: %v)", d.Reason, err)
		s.record(ctx, rec.Name, ev, false)
		return
	case err != nil:
		s.m.decisions.WithLabelValues(rec.Name, dir, "failed").Inc()
		s.m.errors.WithLabelValues("target").Inc()
		s.cfg.Logger.Warn("scaler: scale failed", "ufop", rec.Name, "from", rec.Desired, "to", d.To, "err", err)
		return
	}
	s.m.decisions.WithLabelValues(rec.Name, dir, "done").Inc()
	s.m.current.WithLabelValues(rec.Name).Set(float64(d.To))
	s.cfg.Logger.Info("scaler: scaled", "ufop", rec.Name, "from", rec.Desired, "to", d.To, "reason", d.Reason)
	s.record(ctx, rec.Name, ev, true)
}

// record keeps ev in the UFOP's history and, for a change, its new count.
func (s *Scaler) record(ctx context.Context, name string, ev ufop.ScaleEvent, change bool) {
	_, err := s.records.Update(ctx, name, func(r *ufop.Record) error {
		if change {
			r.Desired = ev.To
		}
		r.AddScaleEvent(ev)
		return nil
	})
	if err != nil {
		s.m.errors.WithLabelValues("keeper").Inc()
		s.cfg.Logger.Warn("scaler: recording the decision", "ufop", name, "err", err)
	}
}
