package nomad

import (
	"context"
	"net"
	"regexp"
	"sort"
	"strconv"

	"github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/jobspecs"
)

var nameIndex = regexp.MustCompile(`\[(\d+)\]$`)

// allocIndex is the instance index of an allocation: the [N] at the end of
// its name ("ufop-demo.ufop[2]"), which Nomad keeps for the life of the
// slot and reuses for a canary or a replacement.
func allocIndex(a *api.AllocationListStub) int {
	if m := nameIndex.FindStringSubmatch(a.Name); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// Instances implements cluster.Orchestrator.
func (o *Orchestrator) Instances(ctx context.Context, name string) ([]cluster.Instance, error) {
	id := JobID(name)
	cur, allocs, err := o.live(ctx, id)
	if err != nil {
		return nil, err
	}
	versions := map[uint64]int{}
	if v, ok := ufopVersion(cur); ok {
		versions[*cur.Version] = v
	}
	out := make([]cluster.Instance, 0, len(allocs))
	loaded := false // the job's versions are read once at most
	for _, a := range allocs {
		if _, ok := versions[a.JobVersion]; !ok && !loaded {
			if err := o.loadVersions(ctx, id, versions); err != nil {
				return nil, err
			}
			loaded = true
		}
		in := instance(a, versions[a.JobVersion])
		in.Addr, in.AddrKind = o.addr(ctx, a), "node"
		out = append(out, in)
	}
	o.forget(id, allocs)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Index != out[j].Index {
			return out[i].Index < out[j].Index
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// live returns the job and its allocations that are not history.
func (o *Orchestrator) live(ctx context.Context, id string) (*api.Job, []*api.AllocationListStub, error) {
	cur, _, err := o.client.Jobs().Info(id, o.q(ctx))
	if err != nil {
		return nil, nil, classify(err, "nomad: job "+id)
	}
	all, _, err := o.client.Jobs().Allocations(id, false, o.q(ctx))
	if err != nil {
		return nil, nil, classify(err, "nomad: allocations of "+id)
	}
	var out []*api.AllocationListStub
	for _, a := range all {
		if !terminal(a) {
			out = append(out, a)
		}
	}
	return cur, out, nil
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
	in := cluster.Instance{ID: a.ID, Index: allocIndex(a), Version: version, Message: a.ClientDescription}
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
	var last, stop *api.TaskEvent
	for _, ts := range a.TaskStates {
		in.Restarts += int(ts.Restarts)
		if in.Started.IsZero() || (!ts.StartedAt.IsZero() && ts.StartedAt.Before(in.Started)) {
			in.Started = ts.StartedAt
		}
		if n := len(ts.Events); n > 0 && (last == nil || ts.Events[n-1].Time > last.Time) {
			last = ts.Events[n-1]
		}
		for _, e := range ts.Events {
			if e.Type == api.TaskTerminated && (stop == nil || e.Time >= stop.Time) {
				stop = e
			}
		}
	}
	if last != nil && last.DisplayMessage != "" && in.Message != "unhealthy" {
		in.Message = last.DisplayMessage
	}
	// The kernel's kill for the flavor's memory is told as the local
	// runtime tells it, and stays told after the restart.
	if stop != nil && stop.Details["oom_killed"] == "true" && in.Message != "unhealthy" {
		switch {
		case last == stop:
			in.Message = oomKilled
		case last.Type == api.TaskStarted:
			in.Message = "last restart: " + oomKilled
		default:
			in.Message = oomKilled + "; " + last.DisplayMessage
		}
	}
	return in
}

// oomKilled is the message of a task the kernel killed for its memory
// (the docker driver's Terminated event with oom_killed; the limit is not
// in the event).
const oomKilled = "killed: out of memory"

// addr is the host:port of the allocation's "http" port. Nomad's list
// stubs carry no AllocatedResources, so it is read from the full
// allocation, once per allocation (its ports never change) and only once
// it runs: before, nothing answers there.
func (o *Orchestrator) addr(ctx context.Context, a *api.AllocationListStub) string {
	if s := httpAddr(a.AllocatedResources); s != "" {
		return s
	}
	if a.ClientStatus != api.AllocClientStatusRunning {
		return ""
	}
	o.mu.Lock()
	s, ok := o.addrs[a.JobID][a.ID]
	o.mu.Unlock()
	if ok {
		return s
	}
	full, _, err := o.client.Allocations().Info(a.ID, o.q(ctx))
	if err != nil {
		return "" // gone meanwhile, or Nomad unreachable: Instances says the rest
	}
	s = httpAddr(full.AllocatedResources)
	o.mu.Lock()
	if o.addrs[a.JobID] == nil {
		o.addrs[a.JobID] = map[string]string{}
	}
	o.addrs[a.JobID][a.ID] = s
	o.mu.Unlock()
	return s
}

// forget drops the cached addresses of job id's allocations that are no
// longer live.
func (o *Orchestrator) forget(id string, live []*api.AllocationListStub) {
	keep := map[string]bool{}
	for _, a := range live {
		keep[a.ID] = true
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for allocID := range o.addrs[id] {
		if !keep[allocID] {
			delete(o.addrs[id], allocID)
		}
	}
	if len(o.addrs[id]) == 0 {
		delete(o.addrs, id)
	}
}

// httpAddr finds the port labelled jobspecs.PortLabel: in the shared
// ports (Nomad ≥ 1.0), else in the group's networks.
func httpAddr(r *api.AllocatedResources) string {
	if r == nil {
		return ""
	}
	for _, p := range r.Shared.Ports {
		if p.Label == jobspecs.PortLabel && p.HostIP != "" {
			return net.JoinHostPort(p.HostIP, strconv.Itoa(p.Value))
		}
	}
	for _, n := range r.Shared.Networks {
		for _, p := range append(append([]api.Port(nil), n.DynamicPorts...), n.ReservedPorts...) {
			if p.Label == jobspecs.PortLabel && n.IP != "" {
				return net.JoinHostPort(n.IP, strconv.Itoa(p.Value))
			}
		}
	}
	return ""
}
