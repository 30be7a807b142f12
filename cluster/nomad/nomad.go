// Package nomad implements cluster.Orchestrator on a Nomad cluster: a UFOP
// is the Nomad job jobspecs.JobID(name) ("ufop-<name>"), rendered by
// jobspecs.UFOPJob, with one group jobspecs.GroupName and one task
// jobspecs.TaskName.
//
//   - Deploy registers the job. A first deployment (no job, or a stopped
//     one) is registered with canary 0. An upgrade is rendered with the
//     current count (brought into Workload.Scaling, the group's scaling
//     block, when a new policy's range no longer holds it), registered
//     with EnforceIndex on the job modify index it was read at (a Scale in
//     between makes Deploy read the job again and retry), so Nomad starts
//     the canaries next to the old allocations. The same version again
//     with only the scaling block changed updates the allocations in place
//     (checked on Nomad 1.6.5: none is replaced; a deployment runs for
//     min_healthy_time, during which Nomad refuses to scale). Deploy
//     waits for the registration's evaluation: when Nomad could not place every
//     allocation (no node with the CPU, memory or driver), it fails the
//     deployment at once and returns an *errs.Error (503) saying why.
//     Otherwise it follows the deployment with blocking queries (bounded by
//     WaitTime and ctx) until the canaries are healthy, promotes it, and
//     waits for it to succeed. A canary marked unhealthy (or ctx ending
//     first) fails the deployment: with auto_revert Nomad rolls back, and
//     the old version keeps serving.
//   - Scale calls Jobs().Scale with a message and the meta; Nomad's 400
//     "job scaling blocked due to active deployment" becomes
//     cluster.ErrSkipped, a 404 cluster.ErrNotFound, a count outside the
//     group's scaling block (400 "group count was greater than scaling
//     policy maximum: 6 > 5") an *errs.Error 400 saying so; instances its
//     evaluation could not place are a 503 saying why, at once.
//   - Instances lists the allocations that are not terminal, with the
//     host:port of their "http" port.
//   - Stop deregisters (purge optional).
//   - Logs streams the task's stdout and stderr through the client FS API
//     (AllocFS().Logs), from their start; with follow, until ctx ends.
package nomad

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/jobspecs"
)

// Orchestrator runs UFOPs as Nomad jobs.
type Orchestrator struct {
	client *api.Client
	opts   jobspecs.Options

	// WaitTime bounds each blocking query Deploy makes while it waits for
	// an evaluation or a deployment (default 30 s). Nomad answers as soon
	// as the state changes; ctx ending cancels a query at once.
	WaitTime time.Duration
	// FailTimeout bounds the request that fails a deployment after ctx
	// ended (default 10 s).
	FailTimeout time.Duration

	// addrs caches the address of each allocation by job: it is read from
	// the full allocation (one request each) and never changes.
	mu    sync.Mutex
	addrs map[string]map[string]string
}

var _ cluster.Orchestrator = (*Orchestrator)(nil)

// New returns an Orchestrator that talks to Nomad through client and
// renders jobs with opts.
func New(client *api.Client, opts jobspecs.Options) *Orchestrator {
	return &Orchestrator{
		client: client, opts: opts, WaitTime: 30 * time.Second, FailTimeout: 10 * time.Second,
		addrs: map[string]map[string]string{},
	}
}

// JobID is the Nomad job of UFOP name (jobspecs.JobID).
func JobID(name string) string { return jobspecs.JobID(name) }

const (
	scaleBlocked = "scaling blocked due to active deployment"
	// Nomad 1.6.5's texts for a Scale outside the scaling block:
	// "group count was less than scaling policy minimum: 0 < 1" and
	// "group count was greater than scaling policy maximum: 6 > 5".
	scaleOutOfRange = "than scaling policy m"
	// A register with EnforceIndex after the job changed: "Enforcing job
	// modify index 12: job exists with conflicting job modify index: 13".
	indexConflict = "conflicting job modify index"
)

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
		case ue.StatusCode() == 400 && strings.Contains(ue.Body(), scaleOutOfRange):
			return errs.Wrap(http.StatusBadRequest, fmt.Errorf("nomad: %d", ue.StatusCode()),
				"%s: outside the job's scaling block (the UFOP's scale policy): %s", what, ue.Body())
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

// registerTries bounds how often Deploy reads the job again when it
// changed between the read and the registration (a Scale in between).
const registerTries = 5

// Deploy implements cluster.Orchestrator.
func (o *Orchestrator) Deploy(ctx context.Context, w cluster.Workload) error {
	id := JobID(w.Name)
	var (
		cur   *api.Job
		first bool
		resp  *api.JobRegisterResponse
	)
	for try := 1; ; try++ {
		var err error
		cur, err = o.current(ctx, id)
		if err != nil {
			return err
		}
		first = cur == nil || (cur.Stop != nil && *cur.Stop)
		rw := w
		if !first {
			// The count is the running one (the scaler's or the user's
			// last), within the scaling range (UFOPJob brings it in).
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
			// Not PreserveCounts: Nomad applies it after checking the
			// count against the new scaling block, and would keep a count
			// the new range excludes (seen on 1.6.5: count 3 under min 4).
			ropts.EnforceIndex, ropts.ModifyIndex = true, *cur.JobModifyIndex
		}
		resp, _, err = o.client.Jobs().RegisterOpts(job, ropts, o.w(ctx))
		var ue api.UnexpectedResponseError
		if err != nil && !first && try < registerTries && errors.As(err, &ue) && strings.Contains(ue.Body(), indexConflict) {
			continue // scaled in between: read the new count
		}
		if err != nil {
			return classify(err, "nomad: register "+id)
		}
		break
	}
	r := &rollout{o: o, id: id, version: w.Version, jobModifyIndex: resp.JobModifyIndex, old: oldVersion(cur, first)}
	if err := r.placed(ctx, resp.EvalID); err != nil {
		return err
	}
	return r.await(ctx)
}

// oldVersion names what keeps serving when an upgrade fails ("" for a
// first deployment: nothing does).
func oldVersion(prev *api.Job, first bool) string {
	switch {
	case first:
		return ""
	case prev.Meta != nil && prev.Meta[jobspecs.MetaVersion] != "":
		return "version " + prev.Meta[jobspecs.MetaVersion]
	}
	return "the old version"
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
func (o *Orchestrator) Scale(ctx context.Context, name string, count int, reason string, meta map[string]string) error {
	id := JobID(name)
	msg := "qufop: " + reason
	if reason == "" {
		msg = "qufop: scale"
	}
	m := map[string]any{"qufop.ufop": name}
	for k, v := range meta {
		m[k] = v
	}
	resp, _, err := o.client.Jobs().Scale(id, jobspecs.GroupName, &count, msg, false, m, o.w(ctx))
	if err != nil {
		return classify(err, fmt.Sprintf("nomad: scale %s to %d", id, count))
	}
	return o.scalePlaced(ctx, id, count, resp)
}

// scalePlaced reports at once, as Deploy does, when the evaluation of a
// scaling could not place every instance, instead of leaving the caller to
// wait for instances that will not come. Nomad keeps the count and places
// the rest when capacity frees up. Not knowing (the evaluation could not
// be read) is not a failure of the scaling.
func (o *Orchestrator) scalePlaced(ctx context.Context, id string, count int, resp *api.JobRegisterResponse) error {
	if resp == nil || resp.EvalID == "" {
		return nil
	}
	ev, err := o.evaluated(ctx, resp.EvalID)
	if err != nil || len(ev.FailedTGAllocs) == 0 {
		return nil
	}
	return errs.Wrap(http.StatusServiceUnavailable, fmt.Errorf("nomad: evaluation %s", short(ev.ID)),
		"no node could place %s of %s scaled to %d: %s; Nomad places them when capacity frees up",
		plural(unplacedCount(ev), "instance"), id, count, placementReasons(ev))
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
	if _, _, err := o.client.Jobs().Deregister(id, purge, o.w(ctx)); err != nil {
		return classify(err, "nomad: stop "+id)
	}
	// Nomad stops the allocations after it answered: wait for them, as the
	// local orchestrator does, so that what comes next (unreg removing the
	// UFOP's images) finds no instance holding them. Waiting is a courtesy:
	// the job is stopped either way.
	wctx, cancel := context.WithTimeout(ctx, StopWait)
	defer cancel()
	o.stopped(wctx, id)
	return nil
}

// StopWait bounds how long Stop waits for the allocations to stop.
var StopWait = 2 * time.Minute

// stopped waits, with blocking queries, until no allocation of job id runs
// any more, or ctx ends.
func (o *Orchestrator) stopped(ctx context.Context, id string) {
	var wt watch
	for ctx.Err() == nil {
		began := time.Now()
		allocs, meta, err := o.client.Jobs().Allocations(id, false, wt.opts(o, ctx))
		if err != nil {
			return
		}
		running := false
		for _, a := range allocs {
			switch a.ClientStatus {
			case api.AllocClientStatusComplete, api.AllocClientStatusFailed, api.AllocClientStatusLost:
			default:
				running = true
			}
		}
		if !running {
			return
		}
		wt.next(ctx, meta, began)
	}
}
