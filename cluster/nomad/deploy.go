package nomad

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/errs"
)

// rollout follows one registration of a UFOP version: its evaluation,
// then its deployment.
type rollout struct {
	o              *Orchestrator
	id             string // Nomad job
	version        int    // UFOP version
	jobModifyIndex uint64 // of the registration
	old            string // what keeps serving if it fails ("" on a first deployment)
}

// keeps is the end of a failure message: what still serves.
func (r *rollout) keeps() string {
	if r.old == "" {
		return ""
	}
	return "; " + r.old + " keeps serving"
}

// placed waits for evaluation evalID and, when Nomad could not place
// every allocation it asked for, fails the deployment and returns why.
func (r *rollout) placed(ctx context.Context, evalID string) error {
	if evalID == "" {
		return nil
	}
	ev, err := r.o.evaluated(ctx, evalID)
	switch {
	case err != nil:
		return fmt.Errorf("%w (%s v%d)", err, r.id, r.version)
	case ev.Status == api.EvalStatusFailed:
		return fmt.Errorf("nomad: evaluation %s of %s v%d failed: %s", short(ev.ID), r.id, r.version, ev.StatusDescription)
	case len(ev.FailedTGAllocs) == 0:
		return nil
	}
	return r.unplaced(ctx, ev)
}

// unplaced fails the running deployment of this version, so that Nomad
// rolls back to the old version (auto_revert) and does not refuse to
// scale until the progress deadline, and returns a 503 whose public
// message says what could not be placed and why. Nomad keeps trying to
// place it (a blocked evaluation) when capacity frees up.
func (r *rollout) unplaced(ctx context.Context, ev *api.Evaluation) error {
	msg := fmt.Sprintf("no node could place %s of %s v%d: %s%s",
		plural(unplacedCount(ev), "instance"), r.id, r.version, placementReasons(ev), r.keeps())
	cause := fmt.Errorf("nomad: evaluation %s", short(ev.ID))
	if d := r.running(ctx); d != nil {
		note, err := r.failDeployment(ctx, d)
		if err != nil {
			cause = fmt.Errorf("%w; %w", cause, err)
		} else {
			cause = fmt.Errorf("%w; %s", cause, note)
		}
	}
	return errs.Wrap(http.StatusServiceUnavailable, cause, "%s", msg)
}

// running returns the deployment of this version if it is still running.
func (r *rollout) running(ctx context.Context) *api.Deployment {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.FailTimeout)
	defer cancel()
	d, _, err := r.o.client.Jobs().LatestDeployment(r.id, r.o.q(fctx))
	if err != nil || d == nil || d.JobModifyIndex < r.jobModifyIndex ||
		(d.Status != api.DeploymentStatusRunning && d.Status != api.DeploymentStatusPaused) {
		return nil
	}
	return d
}

// await follows the deployment of the registered version with blocking
// queries: it promotes healthy canaries, fails the deployment on an
// unhealthy one or when ctx ends, and returns when it succeeded.
func (r *rollout) await(ctx context.Context) error {
	var wt watch
	var dep *api.Deployment
	for {
		began := time.Now()
		d, meta, err := r.o.client.Jobs().LatestDeployment(r.id, wt.opts(r.o, ctx))
		if ctx.Err() != nil {
			return r.timedOut(ctx, dep)
		}
		if err != nil {
			return classify(err, "nomad: deployment of "+r.id)
		}
		if d != nil && d.JobModifyIndex >= r.jobModifyIndex {
			dep = d
			if done, err := r.step(ctx, d); done {
				return err
			}
		}
		wt.next(ctx, meta, began)
	}
}

// step acts on the deployment as it is now; done says await is over.
func (r *rollout) step(ctx context.Context, d *api.Deployment) (done bool, err error) {
	switch d.Status {
	case api.DeploymentStatusSuccessful:
		return true, nil
	case api.DeploymentStatusFailed, api.DeploymentStatusCancelled:
		return true, fmt.Errorf("nomad: deployment %s of %s v%d %s: %s%s", short(d.ID), r.id, r.version, d.Status, d.StatusDescription, r.keeps())
	}
	promote, unhealthy := canaryState(d)
	switch {
	case unhealthy:
		return true, r.fail(ctx, d, fmt.Sprintf("a canary of %s v%d is unhealthy", r.id, r.version))
	case promote:
		return r.promote(ctx, d)
	}
	return false, nil
}

// promote promotes the healthy canaries; the promotion's evaluation
// places the rest of the new version, which may not fit either.
func (r *rollout) promote(ctx context.Context, d *api.Deployment) (done bool, err error) {
	resp, _, err := r.o.client.Deployments().PromoteAll(d.ID, r.o.w(ctx))
	if ctx.Err() != nil {
		return false, nil // await reports the end of ctx
	}
	if err != nil {
		return true, classify(err, "nomad: promote "+short(d.ID))
	}
	if err := r.placed(ctx, resp.EvalID); err != nil && ctx.Err() == nil {
		return true, err
	}
	return false, nil
}

func (r *rollout) timedOut(ctx context.Context, dep *api.Deployment) error {
	if dep != nil && needsPromotion(dep) {
		return r.fail(ctx, dep, fmt.Sprintf("canaries of %s v%d not healthy in time (%v)", r.id, r.version, ctx.Err()))
	}
	return fmt.Errorf("nomad: waiting for the deployment of %s v%d: %w", r.id, r.version, ctx.Err())
}

func needsPromotion(d *api.Deployment) bool {
	for _, st := range d.TaskGroups {
		if st.DesiredCanaries > 0 && !st.Promoted {
			return true
		}
	}
	return false
}

// canaryState says whether all canaries are healthy and waiting for a
// promotion, and whether one is unhealthy.
func canaryState(d *api.Deployment) (promote, unhealthy bool) {
	waiting := false
	all := true
	for _, st := range d.TaskGroups {
		if st.UnhealthyAllocs > 0 {
			unhealthy = true
		}
		if st.DesiredCanaries > 0 && !st.Promoted {
			waiting = true
			if st.HealthyAllocs < st.DesiredCanaries {
				all = false
			}
		}
	}
	return waiting && all, unhealthy
}

// fail fails deployment d for the reason why.
func (r *rollout) fail(ctx context.Context, d *api.Deployment, why string) error {
	note, err := r.failDeployment(ctx, d)
	if err != nil {
		return fmt.Errorf("nomad: %s; %w", why, err)
	}
	return fmt.Errorf("nomad: %s: %s%s", why, note, r.keeps())
}

// failDeployment fails d, even after ctx ended (bounded by FailTimeout),
// and says what Nomad did.
func (r *rollout) failDeployment(ctx context.Context, d *api.Deployment) (string, error) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.FailTimeout)
	defer cancel()
	resp, _, err := r.o.client.Deployments().Fail(d.ID, r.o.w(fctx))
	if err != nil {
		return "", fmt.Errorf("failing deployment %s: %w", short(d.ID), err)
	}
	note := "deployment " + short(d.ID) + " failed"
	if resp.RevertedJobVersion != nil {
		note += fmt.Sprintf(", rolled back to job version %d", *resp.RevertedJobVersion)
	}
	return note, nil
}

// evaluated waits, with blocking queries, until evaluation id is no
// longer pending: the scheduler takes a moment after a write.
func (o *Orchestrator) evaluated(ctx context.Context, id string) (*api.Evaluation, error) {
	var wt watch
	for {
		began := time.Now()
		ev, meta, err := o.client.Evaluations().Info(id, wt.opts(o, ctx))
		if err != nil {
			return nil, classify(err, "nomad: evaluation "+short(id))
		}
		if ev.Status != api.EvalStatusPending {
			return ev, nil
		}
		wt.next(ctx, meta, began)
	}
}

// quickPause follows a query that answered at once without a change.
const quickPause = 100 * time.Millisecond

// watch is a series of blocking queries on one resource: each waits until
// the index the previous one answered with changes.
type watch struct{ index uint64 }

func (wt *watch) opts(o *Orchestrator, ctx context.Context) *api.QueryOptions {
	q := o.q(ctx)
	q.WaitIndex, q.WaitTime = wt.index, o.WaitTime
	return q
}

// next records the index of the answer to a query that began at began.
// An answer that came at once without a change (a server that does not
// block, or no index yet) is followed by a pause, so that the loop does
// not spin.
func (wt *watch) next(ctx context.Context, meta *api.QueryMeta, began time.Time) {
	var last uint64
	if meta != nil {
		last = meta.LastIndex
	}
	changed := last != wt.index
	wt.index = last
	if (changed && last != 0) || time.Since(began) >= quickPause {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(quickPause):
	}
}
