package nomadfake

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// The group scaling block, as Nomad 1.6.5 handles it (recorded on a dev
// agent): a registration whose count is outside [min, max] is refused by
// the job's validation (500, nested multierror text), the block is stored
// with Nomad's defaults filled in (enabled true, min the count, type
// horizontal) and an ID kept across versions, and a Scale outside the
// range is a 400 — whether the block is enabled or not: enabled only tells
// nomad-autoscaler to act on it. The range is checked before the active
// deployment, so an out-of-range count is refused as such even during a
// deployment. PreserveCounts is applied after the validation, so a
// registration with a new range and PreserveCounts keeps a count the range
// excludes.

// Nomad's texts for a Scale outside the block (400, text/plain).
const (
	ErrScaleBelowMin = "group count was less than scaling policy minimum: %d < %d"
	ErrScaleAboveMax = "group count was greater than scaling policy maximum: %d > %d"
)

// multierror formats errs as hashicorp/go-multierror does (what Nomad's
// job validation answers, nested one level per multierror).
func multierror(errs ...string) string {
	if len(errs) == 1 {
		return fmt.Sprintf("1 error occurred:\n\t* %s\n\n", errs[0])
	}
	return fmt.Sprintf("%d errors occurred:\n\t* %s\n\n", len(errs), strings.Join(errs, "\n\t* "))
}

// validateScaling checks the scaling block of every group of v against its
// count as Nomad's job validation does, and returns the body of the 500
// Nomad answers, or "".
func validateScaling(v *api.Job) string {
	var groups []string
	for _, g := range v.TaskGroups {
		sp := g.Scaling
		if sp == nil {
			continue
		}
		count := 1 // Nomad's default group count
		if g.Count != nil {
			count = *g.Count
		}
		lo, hi := int64(count), int64(-1)
		if sp.Min != nil {
			lo = *sp.Min
		}
		if sp.Max != nil {
			hi = *sp.Max
		}
		var es []string
		switch {
		case hi < 0:
			es = append(es, "Scaling policy invalid: maximum count must be specified and non-negative")
		case hi < lo:
			es = append(es, "Scaling policy invalid: maximum count must not be less than minimum count")
		}
		if hi < int64(count) {
			es = append(es, "Scaling policy invalid: task group count must not be greater than maximum count in scaling policy")
		}
		if int64(count) < lo {
			es = append(es, "Scaling policy invalid: task group count must not be less than minimum count in scaling policy")
		}
		if len(es) > 0 {
			groups = append(groups, fmt.Sprintf("Task group %s validation failed: %s", *g.Name,
				multierror("Task group scaling policy validation failed: "+multierror(es...))))
		}
	}
	if len(groups) == 0 {
		return ""
	}
	return multierror(groups...)
}

// canonicalScaling fills the server's fields of the scaling blocks of v
// (registered at index ix): Nomad's defaults, the target, and the ID and
// create index of the same group's block in prev, whose modify index stays
// unless the block changed.
func (s *Server) canonicalScaling(v, prev *api.Job, ix uint64) {
	for _, g := range v.TaskGroups {
		sp := g.Scaling
		if sp == nil {
			continue
		}
		if sp.Enabled == nil {
			sp.Enabled = new(true)
		}
		if sp.Min == nil {
			sp.Min = new(int64(groupCountOf(g)))
		}
		if sp.Type == "" {
			sp.Type = api.ScalingPolicyTypeHorizontal
		}
		sp.Namespace = ""
		sp.Target = map[string]string{"Namespace": *v.Namespace, "Job": *v.ID, "Group": *g.Name}
		sp.ID, sp.CreateIndex, sp.ModifyIndex = uuid(), ix, ix
		if old := prevScaling(prev, *g.Name); old != nil {
			sp.ID, sp.CreateIndex = old.ID, old.CreateIndex
			if sameScaling(old, sp) {
				sp.ModifyIndex = old.ModifyIndex
			}
		}
	}
}

func groupCountOf(g *api.TaskGroup) int {
	if g.Count == nil {
		return 1
	}
	return *g.Count
}

func prevScaling(prev *api.Job, group string) *api.ScalingPolicy {
	if prev == nil {
		return nil
	}
	for _, g := range prev.TaskGroups {
		if *g.Name == group {
			return g.Scaling
		}
	}
	return nil
}

func sameScaling(a, b *api.ScalingPolicy) bool {
	return *a.Min == *b.Min && *a.Max == *b.Max && *a.Enabled == *b.Enabled && a.Type == b.Type &&
		string(encode(a.Policy)) == string(encode(b.Policy))
}

// scaleRange answers Nomad's 400 if count is outside group g's scaling
// block; it reports whether it did.
func scaleRange(w http.ResponseWriter, g *api.TaskGroup, count int64) bool {
	sp := g.Scaling
	switch {
	case sp == nil:
		return false
	case sp.Min != nil && count < *sp.Min:
		writeErr(w, http.StatusBadRequest, fmt.Sprintf(ErrScaleBelowMin, count, *sp.Min))
	case sp.Max != nil && *sp.Max < count:
		writeErr(w, http.StatusBadRequest, fmt.Sprintf(ErrScaleAboveMax, count, *sp.Max))
	default:
		return false
	}
	return true
}

// ScaleEvents returns the scaling events of the job's group, newest first
// (as GET /v1/job/<id>/scale lists them): accepted scales and event-only
// requests, each with its message and meta.
func (s *Server) ScaleEvents(jobID string) []api.ScalingEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[jobID]
	if j == nil {
		return nil
	}
	out := make([]api.ScalingEvent, 0, len(j.scaleEvents))
	for i := len(j.scaleEvents) - 1; i >= 0; i-- {
		e := j.scaleEvents[i]
		e.Meta = copyMeta(e.Meta)
		out = append(out, e)
	}
	return out
}

func copyMeta(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// scaleStatus answers GET /v1/job/<id>/scale.
func (s *Server) scaleStatus(w http.ResponseWriter, id string) {
	j := s.liveJob(id)
	if j == nil {
		s.readErr(w, http.StatusNotFound, ErrJobNotFound)
		return
	}
	cur := j.latest()
	groups := map[string]api.TaskGroupScaleStatus{}
	for _, g := range cur.TaskGroups {
		st := api.TaskGroupScaleStatus{Desired: groupCountOf(g), Events: []api.ScalingEvent{}}
		d := j.latestDeployment()
		for _, a := range j.allocs {
			if a.stub.TaskGroup != *g.Name || !a.live() {
				continue
			}
			st.Placed++
			if a.stub.ClientStatus == api.AllocClientStatusRunning {
				st.Running++
			}
			if d != nil && a.deploymentID == d.ID && a.stub.DeploymentStatus != nil && a.stub.DeploymentStatus.Healthy != nil {
				if *a.stub.DeploymentStatus.Healthy {
					st.Healthy++
				} else {
					st.Unhealthy++
				}
			}
		}
		for i := len(j.scaleEvents) - 1; i >= 0; i-- {
			if j.scaleGroups[i] == *g.Name {
				st.Events = append(st.Events, j.scaleEvents[i])
			}
		}
		groups[*g.Name] = st
	}
	s.readOK(w, api.JobScaleStatusResponse{
		JobID: id, Namespace: *cur.Namespace, JobCreateIndex: j.createIndex,
		JobModifyIndex: *cur.JobModifyIndex, JobStopped: *cur.Stop, TaskGroups: groups,
	})
}
