package ufop

import (
	"fmt"
	"math"
	"time"
)

// ScalePolicy is how the scaler sizes a UFOP. It lives in the UFOP's record;
// nil means manual counts (`qufop resize` only).
type ScalePolicy struct {
	Min int `json:"min"`
	Max int `json:"max"`
	// Target is the work (steps waiting plus steps in flight) one healthy
	// instance should carry; desired = ceil(work / Target).
	Target float64 `json:"target"`
	// Interval is how often the scaler evaluates the UFOP (it is also woken
	// when a step has to wait).
	Interval Duration `json:"interval"`
	// UpCooldown and DownCooldown are the quiet times after a change of
	// count before the next change up or down.
	UpCooldown   Duration `json:"upCooldown"`
	DownCooldown Duration `json:"downCooldown"`
	// DownWindow is the scale-down stabilisation window: the count goes
	// down only to the highest count wanted during the last DownWindow.
	DownWindow Duration `json:"downWindow"`
}

// Duration is a time.Duration kept as its string ("30s") in JSON.
type Duration time.Duration

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Policy defaults: quick up, slow and stabilised down.
const (
	DefaultScaleInterval     = 2 * time.Second
	DefaultScaleUpCooldown   = 2 * time.Second
	DefaultScaleDownCooldown = 15 * time.Second
	DefaultScaleDownWindow   = 30 * time.Second
)

// WithDefaults fills the durations left at zero.
func (p ScalePolicy) WithDefaults() ScalePolicy {
	if p.Interval == 0 {
		p.Interval = Duration(DefaultScaleInterval)
	}
	if p.UpCooldown == 0 {
		p.UpCooldown = Duration(DefaultScaleUpCooldown)
	}
	if p.DownCooldown == 0 {
		p.DownCooldown = Duration(DefaultScaleDownCooldown)
	}
	if p.DownWindow == 0 {
		p.DownWindow = Duration(DefaultScaleDownWindow)
	}
	return p
}

// Check validates p for a UFOP whose instance limit is maxInstances.
func (p ScalePolicy) Check(maxInstances int) error {
	switch {
	case p.Min < 0:
		return fmt.Errorf("--min must not be negative, got %d", p.Min)
	case p.Max < 1:
		return fmt.Errorf("--max must be at least 1, got %d", p.Max)
	case p.Min > p.Max:
		return fmt.Errorf("--min %d is over --max %d", p.Min, p.Max)
	case p.Max > maxInstances:
		return fmt.Errorf("--max %d is over the limit of %d instances for this ufop", p.Max, maxInstances)
	case !(p.Target > 0) || math.IsInf(p.Target, 1):
		return fmt.Errorf("--target must be a number more than 0 (steps per instance), got %g", p.Target)
	case p.Interval.D() < 100*time.Millisecond:
		return fmt.Errorf("--interval must be at least 100ms, got %s", p.Interval.D())
	}
	for _, d := range []struct {
		flag string
		d    Duration
	}{{"--up-cooldown", p.UpCooldown}, {"--down-cooldown", p.DownCooldown}, {"--down-window", p.DownWindow}} {
		if d.d < 0 {
			return fmt.Errorf("%s must not be negative, got %s", d.flag, d.d.D())
		}
	}
	return nil
}

// Clamp returns n within [Min, Max].
func (p ScalePolicy) Clamp(n int) int { return min(max(n, p.Min), p.Max) }

// Who changed a count.
const (
	ByScaler = "scaler"
	ByUser   = "user"
)

// ScaleEvent is one change of a UFOP's instance count (or a change the
// scaler wanted and the orchestrator declined: Skipped).
type ScaleEvent struct {
	Time time.Time `json:"time"`
	From int       `json:"from"`
	To   int       `json:"to"`
	By   string    `json:"by"` // ByScaler, or ByUser
	// User is who resized (By == ByUser).
	User string `json:"user,omitempty"`
	// The figures behind a scaler's decision.
	Pending  float64 `json:"pending"`
	InFlight float64 `json:"inFlight"`
	Capacity float64 `json:"capacity"`
	Reason   string  `json:"reason,omitempty"`
	// Skipped: the orchestrator declined (an active deployment); Repeats
	// counts the same skip seen again since (kept as one entry).
	Skipped bool `json:"skipped,omitempty"`
	Repeats int  `json:"repeats,omitempty"`
}

// MaxScaleHistory is how many events a record keeps.
const MaxScaleHistory = 20

// AddScaleEvent appends e to the record's history, keeping the last
// MaxScaleHistory; a skip repeating the last skip updates it instead.
func (r *Record) AddScaleEvent(e ScaleEvent) {
	if n := len(r.ScaleHistory); n > 0 && e.Skipped {
		last := &r.ScaleHistory[n-1]
		if last.Skipped && last.From == e.From && last.To == e.To {
			repeats := last.Repeats + 1
			*last = e
			last.Repeats = repeats
			return
		}
	}
	r.ScaleHistory = append(r.ScaleHistory, e)
	if n := len(r.ScaleHistory); n > MaxScaleHistory {
		r.ScaleHistory = append([]ScaleEvent(nil), r.ScaleHistory[n-MaxScaleHistory:]...)
	}
}

// LastChange is the time of the last change of count (not a skip), zero
// if there was none.
func (r *Record) LastChange() (ScaleEvent, bool) {
	for i := len(r.ScaleHistory) - 1; i >= 0; i-- {
		if !r.ScaleHistory[i].Skipped {
			return r.ScaleHistory[i], true
		}
	}
	return ScaleEvent{}, false
}
