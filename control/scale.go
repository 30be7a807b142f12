package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

// opScalePolicy is the kind of the operation a change of policy starts.
const opScalePolicy = "scale-policy"

// A scale policy (ufop.ScalePolicy) lives in the UFOP's record; the scaler
// (package scaler) reads it and changes Desired within [Min, Max]. Setting
// one here clamps the count into the range, deploys a UFOP never deployed
// at Min (so that the scaler can scale it, from zero too), and carries the
// range to the orchestrator (Nomad's scaling block) when it changed.

// parsePolicy reads the API's policy, durations as Go strings ("" or "0s":
// the default), and fills the defaults.
func parsePolicy(in api.ScalePolicy) (ufop.ScalePolicy, error) {
	p := ufop.ScalePolicy{Min: in.Min, Max: in.Max, Target: in.Target}
	for _, d := range []struct {
		name, val string
		to        *ufop.Duration
	}{
		{"interval", in.Interval, &p.Interval},
		{"up_cooldown", in.UpCooldown, &p.UpCooldown},
		{"down_cooldown", in.DownCooldown, &p.DownCooldown},
		{"down_window", in.DownWindow, &p.DownWindow},
	} {
		if d.val == "" {
			continue
		}
		v, err := time.ParseDuration(d.val)
		if err != nil {
			return p, errs.BadRequest("bad %s %q: want a duration such as 2s or 1m30s", d.name, d.val)
		}
		*d.to = ufop.Duration(v)
	}
	return p.WithDefaults(), nil
}

// policyView is p as the API shows it, defaults filled in.
func policyView(p *ufop.ScalePolicy) *api.ScalePolicy {
	if p == nil {
		return nil
	}
	d := p.WithDefaults()
	return &api.ScalePolicy{
		Min: d.Min, Max: d.Max, Target: d.Target,
		Interval: d.Interval.D().String(), UpCooldown: d.UpCooldown.D().String(),
		DownCooldown: d.DownCooldown.D().String(), DownWindow: d.DownWindow.D().String(),
	}
}

// maxScaleEvents is how many events the API shows.
const maxScaleEvents = 20

// scaleEventViews are the last maxScaleEvents events, oldest first.
func scaleEventViews(es []ufop.ScaleEvent) []api.ScaleEvent {
	if len(es) == 0 {
		return nil
	}
	es = es[max(0, len(es)-maxScaleEvents):]
	out := make([]api.ScaleEvent, 0, len(es))
	for _, e := range es {
		out = append(out, api.ScaleEvent{
			Time: e.Time, From: e.From, To: e.To, By: e.By, User: e.User,
			Pending: e.Pending, InFlight: e.InFlight, Capacity: e.Capacity, Reason: e.Reason,
			Skipped: e.Skipped, Repeats: e.Repeats,
		})
	}
	return out
}

// scalingOf is the range a workload carries to the orchestrator.
func scalingOf(p *ufop.ScalePolicy) *cluster.Scaling {
	if p == nil {
		return nil
	}
	return &cluster.Scaling{Min: p.Min, Max: p.Max}
}

func sameScaling(a, b *cluster.Scaling) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// checkPolicyRange refuses a count that a policy's range leaves out.
func checkPolicyRange(rec *ufop.Record, count int) error {
	p := rec.Scale
	if p == nil || (count >= p.Min && count <= p.Max) {
		return nil
	}
	return errs.BadRequest("instance count %d is outside the scale policy of %q, [%d, %d]: resize within it, or return to manual counts with `qufop scale-policy %s --off`",
		count, rec.Name, p.Min, p.Max, rec.Name)
}

// policyPlan is what setting policy p (nil: off) on a record asks of the
// orchestrator.
type policyPlan struct {
	from, to int
	// w is the workload to deploy (first deployment, carrying the range,
	// or deploying again a workload the orchestrator lost); nil when the
	// UFOP cannot be deployed.
	w *cluster.Workload
	// first: never deployed, deploy w. carry: the range changed, deploy
	// w (the same version) to carry it; carryFirst: before scaling, as the
	// new count is outside the old range. scale: set the count to `to`.
	first, carry, carryFirst, scale bool
	version                         int
	notes                           []string
}

func (pl *policyPlan) needsOp() bool { return pl.first || pl.carry || pl.scale }

// planPolicy works out what setting p on rec asks for; it changes nothing.
func (s *Server) planPolicy(rec *ufop.Record, p *ufop.ScalePolicy) (policyPlan, error) {
	pl := policyPlan{from: rec.Desired, to: rec.Desired}
	if p != nil {
		pl.to = p.Clamp(rec.Desired)
	}
	next := *rec
	next.Scale = p
	if rec.Deployed == 0 {
		pl.to = rec.Desired
		if p == nil {
			return pl, nil
		}
		v, err := deployable(rec)
		if err != nil {
			pl.notes = append(pl.notes, fmt.Sprintf("not deployed: %s; then `qufop resize %s -n %d` deploys it", errs.Public(err), rec.Name, p.Min))
			return pl, nil
		}
		w, err := s.workload(&next, v, p.Min)
		if err != nil {
			return pl, err
		}
		pl.to, pl.w, pl.first, pl.version = p.Min, &w, true, v.N
		pl.notes = append(pl.notes, fmt.Sprintf("deploying version %d at %d instance(s), the minimum", v.N, p.Min))
		return pl, nil
	}
	if v := rec.Version(rec.Deployed); v != nil && v.Spec != nil {
		w, err := s.workload(&next, v, pl.to)
		if err != nil {
			return pl, err
		}
		pl.w = &w
	}
	pl.scale = pl.to != pl.from
	if pl.scale {
		pl.notes = append(pl.notes, fmt.Sprintf("instance count %d -> %d, into [%d, %d]", pl.from, pl.to, p.Min, p.Max))
	}
	if !sameScaling(scalingOf(rec.Scale), scalingOf(p)) {
		if pl.w == nil {
			return pl, errs.New(errs.StatusProcessingFailed, "ufop %q: the running version %d cannot be found to carry the new range", rec.Name, rec.Deployed)
		}
		pl.carry = true
		old := rec.Scale
		pl.carryFirst = pl.scale && old != nil && (pl.to < old.Min || pl.to > old.Max)
		if p != nil {
			pl.notes = append(pl.notes, fmt.Sprintf("redeploying version %d to give the orchestrator the range [%d, %d]", rec.Deployed, p.Min, p.Max))
		} else {
			pl.notes = append(pl.notes, fmt.Sprintf("redeploying version %d without a range", rec.Deployed))
		}
	}
	if pl.needsOp() {
		pl.version = rec.Deployed
	}
	return pl, nil
}

func (s *Server) setScalePolicy(c *gin.Context) {
	var req api.ScalePolicy
	if !bindJSON(c, &req) {
		return
	}
	p, err := parsePolicy(req)
	if err != nil {
		fail(c, err)
		return
	}
	s.applyPolicy(c, &p)
}

func (s *Server) scalePolicyOff(c *gin.Context) { s.applyPolicy(c, nil) }

// applyPolicy stores p (nil: off) in the record and starts what it asks of
// the orchestrator.
func (s *Server) applyPolicy(c *gin.Context, p *ufop.ScalePolicy) {
	name, user := record(c).Name, c.GetString(ctxUser)
	var pl policyPlan
	op := &ufop.Operation{Kind: opScalePolicy}
	_, err := s.keeper.Update(c.Request.Context(), name, func(r *ufop.Record) error {
		if p != nil {
			if err := p.Check(r.MaxInstances); err != nil {
				return errs.BadRequest("%v", err)
			}
		}
		var err error
		if pl, err = s.planPolicy(r, p); err != nil {
			return err
		}
		if pl.needsOp() {
			// In the same write: no other operation runs, this one does.
			op.Version, op.Count = pl.version, pl.to
			if err := s.takeOp(r, op); err != nil {
				return err
			}
		}
		r.Scale = p
		r.Desired = pl.to
		if pl.first {
			r.Deployed = pl.version
		}
		if pl.to != pl.from {
			r.AddScaleEvent(ufop.ScaleEvent{
				Time: s.now().UTC(), From: pl.from, To: pl.to, By: ufop.ByUser, User: user,
				Reason: fmt.Sprintf("qufop scale-policy --min %d --max %d", p.Min, p.Max),
			})
		}
		return nil
	})
	if err != nil {
		fail(c, err)
		return
	}
	res := api.ScalePolicySet{Name: name, Policy: policyView(p), From: pl.from, To: pl.to, Version: pl.version}
	if p == nil {
		pl.notes = append([]string{fmt.Sprintf("manual counts: the instance count stays %d (qufop resize changes it)", pl.to)}, pl.notes...)
	}
	res.Message = strings.Join(pl.notes, "; ")
	s.log.Info("scale policy set", "ufop", name, "policy", p != nil, "from", pl.from, "to", pl.to, "first", pl.first, "carry", pl.carry)
	if !pl.needsOp() {
		c.JSON(http.StatusOK, res)
		return
	}
	reason := fmt.Sprintf("qufop scale-policy %s by %s", name, user)
	s.runOp(name, op, func(ctx context.Context) error {
		deployed := false
		deploy := func() error {
			deployed = true
			return s.orch.Deploy(ctx, *pl.w)
		}
		if pl.first {
			return deploy()
		}
		if pl.carryFirst {
			if err := deploy(); err != nil {
				return err
			}
		}
		if pl.scale {
			err := s.orch.Scale(ctx, name, pl.to, reason, nil)
			switch {
			// The orchestrator lost the workload: deploy it again.
			case errors.Is(err, cluster.ErrNotFound) && pl.w != nil && !deployed:
				return deploy()
			case err != nil:
				return err
			}
		}
		if pl.carry && !deployed {
			return deploy()
		}
		return nil
	})
	c.JSON(http.StatusAccepted, res)
}
