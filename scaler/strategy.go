package scaler

import (
	"fmt"
	"math"
	"time"

	"github.com/qufop/qufop/ufop"
)

// Strategy turns a UFOP's figures and policy into the count it should run.
type Strategy interface {
	Decide(in Input) Decision
}

// Input is everything a decision is made from.
type Input struct {
	Policy ufop.ScalePolicy // defaults filled
	// Current is the count asked for last (the record's Desired), not the
	// instances running: instances still starting are already requested,
	// so a burst is not answered twice while containers start.
	Current int
	Figures Figures
	Now     time.Time
	// LastChange is when the count last changed, by the scaler or a user
	// (zero: never); the down cooldown runs from it, so a count a user set
	// is not undone at once.
	LastChange time.Time
	// LastUp is when the scaler last raised the count (zero: never); the
	// up cooldown runs from it. A user's resize does not hold a scale-up
	// back: the user may have guessed low just before a burst.
	LastUp time.Time
	// Wants are the counts wanted at earlier evaluations, oldest first
	// (the scale-down stabilisation window reads them).
	Wants []Want
	// Since is when these Wants began to be collected (the scaler's start,
	// or the policy's last change): a scale-down needs a full window of
	// them.
	Since time.Time
}

// Want is the count wanted at one evaluation.
type Want struct {
	At time.Time
	N  int
}

// Decision is what to do.
type Decision struct {
	// Want is the count the figures ask for now, within [min, max].
	Want int
	// To is the count to set; To == Current: no change.
	To int
	// Reason says why in one line (kept in the history and sent to the
	// orchestrator).
	Reason string
}

// Direction of a decision: "up", "down" or "none".
func (d Decision) Direction(current int) string {
	switch {
	case d.To > current:
		return "up"
	case d.To < current:
		return "down"
	}
	return "none"
}

// TargetValue is the strategy of nomad-autoscaler's target-value plugin
// made absolute: desired = ceil((pending + in flight) / target), within
// [min, max]. It goes up at once (after the up cooldown; from 0 at the
// first waiting step), and down only to the highest count wanted during
// the down window, after the down cooldown.
type TargetValue struct{}

func (TargetValue) Decide(in Input) Decision {
	p := in.Policy
	work := in.Figures.Work()
	raw := 0
	if work > 0 {
		raw = int(math.Ceil(work/p.Target - 1e-9))
		raw = max(raw, 1)
	}
	want := p.Clamp(raw)
	d := Decision{Want: want, To: in.Current}
	fig := fmt.Sprintf("%g waiting + %g in flight, target %g per instance", in.Figures.Pending, in.Figures.InFlight, p.Target)
	since := in.Now.Sub(in.LastChange)
	switch {
	case in.Current < p.Min || in.Current > p.Max:
		d.To = p.Clamp(in.Current)
		d.Reason = fmt.Sprintf("count %d is outside the policy's range [%d, %d]", in.Current, p.Min, p.Max)
	case want > in.Current && in.Current == 0:
		// Steps are waiting with nothing to run them: no cooldown.
		d.To = want
		d.Reason = "activation: " + fig
	case want > in.Current:
		if sinceUp := in.Now.Sub(in.LastUp); !in.LastUp.IsZero() && sinceUp < p.UpCooldown.D() {
			d.Reason = fmt.Sprintf("up to %d held: up cooldown (%s left)", want, (p.UpCooldown.D() - sinceUp).Round(time.Millisecond))
			return d
		}
		d.To = want
		d.Reason = fig
	case want < in.Current:
		window := p.DownWindow.D()
		if in.Since.IsZero() || in.Now.Sub(in.Since) < window {
			d.Reason = fmt.Sprintf("down to %d held: the down window of %s is not full yet", want, window)
			return d
		}
		stable := want
		for _, w := range in.Wants {
			if in.Now.Sub(w.At) <= window {
				stable = max(stable, w.N)
			}
		}
		if stable >= in.Current {
			d.Reason = fmt.Sprintf("down to %d held: %d wanted within the last %s", want, stable, window)
			return d
		}
		if !in.LastChange.IsZero() && since < p.DownCooldown.D() {
			d.Reason = fmt.Sprintf("down to %d held: down cooldown (%s left)", stable, (p.DownCooldown.D() - since).Round(time.Millisecond))
			return d
		}
		d.To = stable
		d.Reason = fmt.Sprintf("%s; at most %d wanted within the last %s", fig, stable, window)
	}
	return d
}
