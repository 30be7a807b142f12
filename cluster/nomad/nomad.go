// Package nomad implements cluster.Orchestrator on a Nomad cluster: a UFOP
// is the Nomad job jobspecs.JobID(name) ("ufop-<name>"), rendered by
// jobspecs.UFOPJob, with one group jobspecs.GroupName.
//
//   - Deploy registers the job. A first deployment (no job, or a stopped
//     one) is registered with canary 0. An upgrade is rendered with the
//     current count and registered with PreserveCounts, so Nomad starts
//     the canaries next to the old allocations; Deploy waits (polling,
//     bounded by ctx) until they are healthy and promotes the deployment,
//     then waits for it to succeed. A canary marked unhealthy (or ctx
//     ending first) fails the deployment: with auto_revert Nomad rolls
//     back, and the old version keeps serving.
//   - Scale calls Jobs().Scale with a message; Nomad's 400 "job scaling
//     blocked due to active deployment" becomes cluster.ErrSkipped, a 404
//     cluster.ErrNotFound.
//   - Instances lists the allocations that are not terminal.
//   - Stop deregisters (purge optional).
//   - Logs is not implemented: it names the allocation to read with
//     `nomad alloc logs`.
package nomad

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/jobspecs"
)

// Orchestrator runs UFOPs as Nomad jobs.
type Orchestrator struct {
	client *api.Client
	opts   jobspecs.Options

	// PollInterval is how often Deploy reads the deployment while it
	// waits (default 1 s).
	PollInterval time.Duration
	// FailTimeout bounds the request that fails a deployment after ctx
	// ended (default 10 s).
	FailTimeout time.Duration
}

var _ cluster.Orchestrator = (*Orchestrator)(nil)

// New returns an Orchestrator that talks to Nomad through client and
// renders jobs with opts.
func New(client *api.Client, opts jobspecs.Options) *Orchestrator {
	return &Orchestrator{client: client, opts: opts, PollInterval: time.Second, FailTimeout: 10 * time.Second}
}

// JobID is the Nomad job of UFOP name (jobspecs.JobID).
func JobID(name string) string { return jobspecs.JobID(name) }

const scaleBlocked = "scaling blocked due to active deployment"

// classify maps Nomad's HTTP errors to the cluster sentinels.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	var ue api.UnexpectedResponseError
	if errors.As(err, &ue) {
		switch {
		case ue.StatusCode() == 404:
			return fmt.Errorf("%s: %w (nomad: %s)", what, cluster.ErrNotFound, ue.Body())
		case ue.StatusCode() == 400 && strings.Contains(ue.Body(), scaleBlocked):
			return fmt.Errorf("%s: %w: nomad: %s", what, cluster.ErrSkipped, ue.Body())
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (o *Orchestrator) q(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{Namespace: o.opts.Namespace, Region: o.opts.Region}).WithContext(ctx)
}

func (o *Orchestrator) w(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{Namespace: o.opts.Namespace, Region: o.opts.Region}).WithContext(ctx)
}

// current returns the registered job, or nil if there is none.
func (o *Orchestrator) current(ctx context.Context, id string) (*api.Job, error) {
	job, _, err := o.client.Jobs().Info(id, o.q(ctx))
	if err != nil {
		err = classify(err, "nomad: job "+id)
		if errors.Is(err, cluster.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	return job, nil
}

// Deploy implements cluster.Orchestrator.
func (o *Orchestrator) Deploy(ctx context.Context, w cluster.Workload) error {
	id := JobID(w.Name)
	cur, err := o.current(ctx, id)
	if err != nil {
		return err
	}
	first := cur == nil || (cur.Stop != nil && *cur.Stop)
	rw := w
	if !first {
		rw.Count = groupCount(cur)
	}
	job, err := jobspecs.UFOPJob(rw, o.opts)
	if err != nil {
		return err
	}
	ropts := &api.RegisterOptions{}
	if first {
		for _, g := range job.TaskGroups {
			if g.Update != nil && g.Update.Canary != nil {
				g.Update.Canary = new(0)
			}
		}
	} else {
		ropts.PreserveCounts = true
	}
	resp, _, err := o.client.Jobs().RegisterOpts(job, ropts, o.w(ctx))
	if err != nil {
		return classify(err, "nomad: register "+id)
	}
	if err := o.await(ctx, id, resp.JobModifyIndex, cur, w.Version); err != nil {
		return err
	}
	return nil
}

// await follows the deployment of the job version registered at
// jobModifyIndex: promotes healthy canaries, fails it on an unhealthy one
// or when ctx ends, and returns when it succeeded.
func (o *Orchestrator) await(ctx context.Context, id string, jobModifyIndex uint64, prev *api.Job, version int) error {
	old := "the old version"
	if prev != nil && prev.Meta != nil && prev.Meta[jobspecs.MetaVersion] != "" {
		old = "version " + prev.Meta[jobspecs.MetaVersion]
	}
	tick := time.NewTicker(o.PollInterval)
	defer tick.Stop()
	var dep *api.Deployment
	for {
		d, _, err := o.client.Jobs().LatestDeployment(id, o.q(ctx))
		if err != nil && ctx.Err() == nil {
			return classify(err, "nomad: deployment of "+id)
		}
		if err == nil && d != nil && d.JobModifyIndex >= jobModifyIndex {
			dep = d
			switch d.Status {
			case api.DeploymentStatusSuccessful:
				return nil
			case api.DeploymentStatusFailed, api.DeploymentStatusCancelled:
				return fmt.Errorf("nomad: deployment %s of %s v%d %s: %s; %s keeps serving", short(d.ID), id, version, d.Status, d.StatusDescription, old)
			}
			if prom, unhealthy := canaryState(d); unhealthy {
				return o.fail(ctx, d, fmt.Sprintf("a canary of %s v%d is unhealthy", id, version), old)
			} else if prom {
				if _, _, err := o.client.Deployments().PromoteAll(d.ID, o.w(ctx)); err != nil && ctx.Err() == nil {
					return classify(err, "nomad: promote "+short(d.ID))
				}
			}
		}
		select {
		case <-ctx.Done():
			if dep != nil && needsPromotion(dep) {
				return o.fail(ctx, dep, fmt.Sprintf("canaries of %s v%d not healthy in time (%v)", id, version, ctx.Err()), old)
			}
			return fmt.Errorf("nomad: waiting for the deployment of %s v%d: %w", id, version, ctx.Err())
		case <-tick.C:
		}
	}
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

func (o *Orchestrator) fail(ctx context.Context, d *api.Deployment, why, old string) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.FailTimeout)
	defer cancel()
	resp, _, err := o.client.Deployments().Fail(d.ID, o.w(fctx))
	if err != nil {
		return fmt.Errorf("nomad: %s; failing deployment %s: %w", why, short(d.ID), err)
	}
	rev := ""
	if resp.RevertedJobVersion != nil {
		rev = fmt.Sprintf(", rolled back to job version %d", *resp.RevertedJobVersion)
	}
	return fmt.Errorf("nomad: %s: deployment %s failed%s; %s keeps serving", why, short(d.ID), rev, old)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func groupCount(j *api.Job) int {
	for _, g := range j.TaskGroups {
		if g.Name != nil && *g.Name == jobspecs.GroupName && g.Count != nil {
			return *g.Count
		}
	}
	return 0
}

// Scale implements cluster.Orchestrator.
func (o *Orchestrator) Scale(ctx context.Context, name string, count int, reason string) error {
	id := JobID(name)
	msg := "qufop: " + reason
	if reason == "" {
		msg = "qufop: scale"
	}
	_, _, err := o.client.Jobs().Scale(id, jobspecs.GroupName, &count, msg, false,
		map[string]any{"qufop.ufop": name}, o.w(ctx))
	return classify(err, fmt.Sprintf("nomad: scale %s to %d", id, count))
}

var nameIndex = regexp.MustCompile(`\[(\d+)\]$`)

// Instances implements cluster.Orchestrator.
func (o *Orchestrator) Instances(ctx context.Context, name string) ([]cluster.Instance, error) {
	id := JobID(name)
	cur, _, err := o.client.Jobs().Info(id, o.q(ctx))
	if err != nil {
		return nil, classify(err, "nomad: job "+id)
	}
	allocs, _, err := o.client.Jobs().Allocations(id, false, o.q(ctx))
	if err != nil {
		return nil, classify(err, "nomad: allocations of "+id)
	}
	versions := map[uint64]int{}
	if v, ok := ufopVersion(cur); ok {
		versions[*cur.Version] = v
	}
	var out []cluster.Instance
	for _, a := range allocs {
		if terminal(a) {
			continue
		}
		if _, ok := versions[a.JobVersion]; !ok {
			if err := o.loadVersions(ctx, id, versions); err != nil {
				return nil, err
			}
		}
		out = append(out, instance(a, versions[a.JobVersion]))
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Index != out[j].Index {
			return out[i].Index < out[j].Index
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

func ufopVersion(j *api.Job) (int, bool) {
	if j == nil || j.Version == nil || j.Meta == nil {
		return 0, false
	}
	v, err := strconv.Atoi(j.Meta[jobspecs.MetaVersion])
	return v, err == nil
}

func (o *Orchestrator) loadVersions(ctx context.Context, id string, into map[uint64]int) error {
	vs, _, _, err := o.client.Jobs().Versions(id, false, o.q(ctx))
	if err != nil {
		return classify(err, "nomad: versions of "+id)
	}
	for _, j := range vs {
		if v, ok := ufopVersion(j); ok {
			into[*j.Version] = v
		}
	}
	return nil
}

func terminal(a *api.AllocationListStub) bool {
	switch a.ClientStatus {
	case api.AllocClientStatusComplete, api.AllocClientStatusLost:
		return true
	case api.AllocClientStatusFailed:
		// A failed allocation that is replaced (or not wanted) is history.
		return a.DesiredStatus != api.AllocDesiredStatusRun || a.NextAllocation != ""
	}
	return false
}

func instance(a *api.AllocationListStub, version int) cluster.Instance {
	in := cluster.Instance{ID: a.ID, Version: version, Message: a.ClientDescription}
	if m := nameIndex.FindStringSubmatch(a.Name); m != nil {
		in.Index, _ = strconv.Atoi(m[1])
	}
	switch {
	case a.DesiredStatus != api.AllocDesiredStatusRun:
		in.State = "stopping"
	case a.ClientStatus == api.AllocClientStatusPending:
		in.State = "starting"
	case a.ClientStatus == api.AllocClientStatusRunning:
		in.State = "running"
	default:
		in.State = "failed"
	}
	if ds := a.DeploymentStatus; ds != nil && ds.Healthy != nil {
		in.Healthy = *ds.Healthy && in.State == "running"
		if !*ds.Healthy {
			in.Message = "unhealthy"
		}
	} else {
		in.Healthy = in.State == "running"
	}
	var last *api.TaskEvent
	for _, ts := range a.TaskStates {
		in.Restarts += int(ts.Restarts)
		if in.Started.IsZero() || (!ts.StartedAt.IsZero() && ts.StartedAt.Before(in.Started)) {
			in.Started = ts.StartedAt
		}
		if n := len(ts.Events); n > 0 && (last == nil || ts.Events[n-1].Time > last.Time) {
			last = ts.Events[n-1]
		}
	}
	if last != nil && last.DisplayMessage != "" && in.Message != "unhealthy" {
		in.Message = last.DisplayMessage
	}
	return in
}

// Stop implements cluster.Orchestrator. Stopping an unknown job returns
// an error wrapping cluster.ErrNotFound, unless purge is set (Nomad
// accepts purging a purged job).
func (o *Orchestrator) Stop(ctx context.Context, name string, purge bool) error {
	id := JobID(name)
	if !purge {
		cur, err := o.current(ctx, id)
		if err != nil {
			return err
		}
		if cur == nil {
			return fmt.Errorf("nomad: stop %s: %w", id, cluster.ErrNotFound)
		}
	}
	_, _, err := o.client.Jobs().Deregister(id, purge, o.w(ctx))
	return classify(err, "nomad: stop "+id)
}

// Logs implements cluster.Orchestrator. Not implemented yet: it returns an
// error naming the allocation to read with `nomad alloc logs`.
func (o *Orchestrator) Logs(ctx context.Context, name string, index int, follow bool, w io.Writer) error {
	ins, err := o.Instances(ctx, name)
	if err != nil {
		return err
	}
	for i := len(ins) - 1; i >= 0; i-- {
		if ins[i].Index == index {
			return fmt.Errorf("nomad: logs are not implemented yet; use `nomad alloc logs %s` (%s[%d])", ins[i].ID, JobID(name), index)
		}
	}
	return fmt.Errorf("nomad: instance %s[%d]: %w", JobID(name), index, cluster.ErrNotFound)
}
