package scaler

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/qufop/qufop/ufop"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func policy(min, max int, target float64) ufop.ScalePolicy {
	return ufop.ScalePolicy{Min: min, Max: max, Target: target}.WithDefaults()
}

func TestTargetValueDecide(t *testing.T) {
	p := policy(1, 6, 2) // interval 2s, up cooldown 2s, down cooldown 15s, window 30s
	long := t0.Add(-time.Hour)
	wants := func(n ...int) []Want { // one a second, ending now
		var out []Want
		for i, v := range n {
			out = append(out, Want{At: t0.Add(time.Duration(i-len(n)) * time.Second), N: v})
		}
		return out
	}
	tests := []struct {
		name   string
		in     Input
		to     int
		want   int
		reason string
	}{
		{name: "burst: 8 clients on 1 instance of concurrency 2 asks for 4 at once",
			in: Input{Current: 1, Figures: Figures{Pending: 6, InFlight: 2, Capacity: 2, Healthy: 1}, LastChange: long, Since: long},
			to: 4, want: 4},
		{name: "burst over max is clamped",
			in: Input{Current: 1, Figures: Figures{Pending: 40, InFlight: 2}, LastChange: long, Since: long},
			to: 6, want: 6},
		{name: "steady load at the target holds",
			in: Input{Current: 4, Figures: Figures{InFlight: 8, Capacity: 8, Healthy: 4}, LastChange: long, Since: long, Wants: wants(4, 4, 4)},
			to: 4, want: 4},
		{name: "warm-up: requested instances count, starting ones are not capacity, no second step up",
			in: Input{Current: 4, Figures: Figures{Pending: 6, InFlight: 2, Capacity: 2, Healthy: 1}, LastChange: t0.Add(-500 * time.Millisecond), LastUp: t0.Add(-500 * time.Millisecond), Since: long},
			to: 4, want: 4},
		{name: "more during the up cooldown waits",
			in: Input{Current: 4, Figures: Figures{Pending: 4, InFlight: 8}, LastChange: t0.Add(-time.Second), LastUp: t0.Add(-time.Second), Since: long},
			to: 4, want: 6, reason: "up cooldown"},
		{name: "more after the up cooldown goes up",
			in: Input{Current: 4, Figures: Figures{Pending: 4, InFlight: 8}, LastChange: t0.Add(-3 * time.Second), LastUp: t0.Add(-3 * time.Second), Since: long},
			to: 6, want: 6},
		{name: "a user's resize just before does not hold a scale-up",
			in: Input{Current: 2, Figures: Figures{Pending: 4, InFlight: 4}, LastChange: t0.Add(-100 * time.Millisecond), LastUp: long, Since: long},
			to: 4, want: 4},
		{name: "noise just under the target after a burst: the window holds the count",
			in: Input{Current: 5, Figures: Figures{InFlight: 7}, LastChange: t0.Add(-time.Minute), Since: long, Wants: wants(5, 4, 5, 4, 4)},
			to: 5, want: 4, reason: "wanted within the last"},
		{name: "idle after the window and the cooldown goes to min",
			in: Input{Current: 4, Figures: Figures{}, LastChange: t0.Add(-time.Minute), Since: long, Wants: wants(1, 1, 1)},
			to: 1, want: 1},
		{name: "down goes to the highest want of the window, not straight to min",
			in: Input{Current: 6, Figures: Figures{InFlight: 1}, LastChange: t0.Add(-time.Minute), Since: long, Wants: wants(3, 2, 1)},
			to: 3, want: 1},
		{name: "down during the down cooldown waits",
			in: Input{Current: 4, Figures: Figures{}, LastChange: t0.Add(-10 * time.Second), Since: long, Wants: wants(1, 1)},
			to: 4, want: 1, reason: "down cooldown"},
		{name: "down before a full window (scaler just started) waits",
			in: Input{Current: 4, Figures: Figures{}, LastChange: long, Since: t0.Add(-5 * time.Second)},
			to: 4, want: 1, reason: "not full yet"},
		{name: "count under min (policy just set) goes to min",
			in: Input{Current: 0, Figures: Figures{}, LastChange: t0, Since: t0},
			to: 1, want: 1, reason: "outside"},
		{name: "count over max (policy just set) goes to max at once",
			in: Input{Current: 9, Figures: Figures{InFlight: 30}, LastChange: t0, Since: t0},
			to: 6, want: 6, reason: "outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.Policy, in.Now = p, t0
			d := TargetValue{}.Decide(in)
			assert.Equal(t, tt.to, d.To, d.Reason)
			assert.Equal(t, tt.want, d.Want, d.Reason)
			if tt.reason != "" {
				assert.Contains(t, d.Reason, tt.reason)
			}
		})
	}
}

func TestTargetValueFromZero(t *testing.T) {
	p := policy(0, 4, 2)
	tests := []struct {
		name string
		in   Input
		to   int
	}{
		{"idle at 0 stays", Input{Current: 0}, 0},
		{"the first waiting step starts one, cooldown or not", Input{Current: 0, Figures: Figures{Pending: 1, NoInstance: 1}, LastChange: t0.Add(-time.Millisecond)}, 1},
		{"five waiting start three", Input{Current: 0, Figures: Figures{Pending: 5, NoInstance: 5}}, 3},
		{"idle for a window goes back to 0", Input{Current: 1, LastChange: t0.Add(-time.Minute), Since: t0.Add(-time.Hour), Wants: []Want{{t0.Add(-time.Second), 0}}}, 0},
		{"fractional target", Input{Current: 1, Figures: Figures{InFlight: 3}, LastChange: t0.Add(-time.Minute)}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.Policy, in.Now = p, t0
			assert.Equal(t, tt.to, TargetValue{}.Decide(in).To)
		})
	}
}

// A noisy load around the target, evaluated every interval for ten
// minutes, never goes down and up again: no flapping.
func TestNoFlappingUnderNoise(t *testing.T) {
	p := policy(1, 10, 2)
	cur, last := 4, t0.Add(-time.Hour)
	since := t0 // the scaler starts with the noise
	var wants []Want
	var dirs []string
	for i := range 300 {
		now := t0.Add(time.Duration(i) * p.Interval.D())
		work := 8.0 + float64((i*7)%5) - 2 // 6..10 around 8: 3 to 5 instances
		for len(wants) > 0 && now.Sub(wants[0].At) > p.DownWindow.D() {
			wants = wants[1:]
		}
		d := TargetValue{}.Decide(Input{Policy: p, Current: cur, Figures: Figures{InFlight: work}, Now: now, LastChange: last, Wants: wants, Since: since})
		wants = append(wants, Want{At: now, N: d.Want})
		if dir := d.Direction(cur); dir != "none" {
			dirs = append(dirs, dir)
			cur, last = d.To, now
		}
	}
	assert.Equal(t, []string{"up"}, dirs, "one step up to the peak, then steady")
	assert.Equal(t, 5, cur)
}
