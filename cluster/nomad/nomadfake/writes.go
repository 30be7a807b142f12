package nomadfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"

	"github.com/hashicorp/nomad/api"
)

// ScaleMessages returns the messages of the scaling events recorded for the
// job, oldest first (accepted scales and event-only requests).
func (s *Server) ScaleMessages(jobID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if j := s.jobs[jobID]; j != nil {
		for _, e := range j.scaleEvents {
			out = append(out, e.Message)
		}
	}
	return out
}

func (s *Server) register(w http.ResponseWriter, r *http.Request, pathID string) {
	var req api.JobRegisterRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Job == nil {
		writeErr(w, http.StatusBadRequest, ErrJobMissing)
		return
	}
	if req.Job.ID == nil || *req.Job.ID == "" {
		writeErr(w, http.StatusInternalServerError, "1 error occurred:\n\t* Missing job ID\n\n")
		return
	}
	if pathID != "" && *req.Job.ID != pathID {
		writeErr(w, http.StatusBadRequest, "Job ID does not match name")
		return
	}
	if len(req.Job.TaskGroups) == 0 || req.Job.TaskGroups[0].Name == nil {
		writeErr(w, http.StatusInternalServerError, "1 error occurred:\n\t* Missing job task groups\n\n")
		return
	}
	if msg := validateScaling(req.Job); msg != "" {
		writeErr(w, http.StatusInternalServerError, msg)
		return
	}
	id := *req.Job.ID
	j := s.liveJob(id)
	if req.EnforceIndex {
		var cur uint64
		if j != nil {
			cur = *j.latest().JobModifyIndex
		}
		switch {
		case req.JobModifyIndex == 0 && cur != 0:
			writeErr(w, http.StatusInternalServerError, "Enforcing job modify index 0: job already exists")
			return
		case req.JobModifyIndex != 0 && cur == 0:
			writeErr(w, http.StatusInternalServerError, fmt.Sprintf("Enforcing job modify index %d: job does not exist", req.JobModifyIndex))
			return
		case req.JobModifyIndex != cur:
			writeErr(w, http.StatusInternalServerError, fmt.Sprintf("Enforcing job modify index %d: job exists with conflicting job modify index: %d", req.JobModifyIndex, cur))
			return
		}
	}
	v := copyJob(req.Job)
	if v.Namespace == nil {
		v.Namespace = new("default")
	}
	if v.Type == nil {
		v.Type = new("service")
	}
	if j == nil {
		old := s.jobs[id]
		j = &job{id: id, createIndex: s.index + 1}
		if old != nil { // purged: its allocations stay listed until GC
			j.allocs, j.deployments = old.allocs, old.deployments
		}
		s.jobs[id] = j
	}
	var prev *api.Job
	if len(j.versions) > 0 {
		prev = j.latest()
	}
	if prev != nil && req.PreserveCounts {
		// After the validation, as in Nomad: the kept count may be outside
		// a new scaling block.
		for _, g := range v.TaskGroups {
			for _, pg := range prev.TaskGroups {
				if *pg.Name == *g.Name && pg.Count != nil {
					g.Count = new(*pg.Count)
				}
			}
		}
	}
	s.canonicalScaling(v, prev, s.index+1)
	if prev != nil && !*prev.Stop && spec(prev) == spec(v) && groupCount(prev) == groupCount(v) {
		// Unchanged: no new version, but an evaluation that tries again to
		// place what is missing (as Nomad does for allocations that did not
		// fit before), unless canaries wait for their promotion.
		ix := s.next()
		e := s.evaluate(prev, "job-register", ix, func() {
			if d := j.activeDeployment(); d == nil || !awaitsPromotion(d) {
				s.follow(j, prev, d)
			}
		})
		writeOK(w, ix, registerResponse{EvalCreateIndex: ix, EvalID: e.ev.ID, Index: ix, JobModifyIndex: *prev.JobModifyIndex})
		return
	}
	ix := s.next()
	s.stamp(j, v, prev, ix, false)
	j.versions = append(j.versions, v)
	e := s.evaluate(v, "job-register", ix, func() { s.reconcile(j, prev, v) })
	writeOK(w, ix, registerResponse{EvalCreateIndex: ix, EvalID: e.ev.ID, Index: ix, JobModifyIndex: ix})
}

// stamp sets the server-side fields of a new job version.
func (s *Server) stamp(j *job, v, prev *api.Job, ix uint64, stop bool) {
	var ver uint64
	if prev != nil {
		ver = *prev.Version + 1
	}
	status := "running"
	if stop {
		status = "dead"
	}
	v.Version = &ver
	v.Stop = &stop
	v.Stable = new(false)
	v.Status = &status
	v.StatusDescription = new("")
	v.CreateIndex = new(j.createIndex)
	v.ModifyIndex = new(ix)
	v.JobModifyIndex = new(ix)
	v.SubmitTime = new(s.now().UnixNano())
}

// reconcile places and stops allocations for the new version v.
func (s *Server) reconcile(j *job, prev, v *api.Job) {
	live := j.liveAllocs()
	if prev == nil || *prev.Stop || len(live) == 0 {
		s.replaceAll(j, v, live, "alloc not needed due to job update")
		return
	}
	if taskSpec(prev) == taskSpec(v) {
		// A change of count or scaling block only: updated in place.
		s.inPlace(j, v)
		return
	}
	if c := canaries(v); c > 0 {
		dep := s.newDeployment(j, v, c)
		for i := 0; i < c; i++ {
			s.place(j, v, i, dep, true)
		}
		return
	}
	s.replaceAll(j, v, live, "alloc is being updated due to job update")
}

// replaceAll stops the live allocations (with Nomad's description why) and
// places the new version's count at once, under a deployment when the
// group has an update block.
func (s *Server) replaceAll(j *job, v *api.Job, live []*alloc, why string) {
	var dep *api.Deployment
	if hasUpdate(v) {
		dep = s.newDeployment(j, v, 0)
	}
	for _, a := range live {
		s.stopAlloc(a, why)
	}
	for i := 0; i < groupCount(v); i++ {
		s.place(j, v, i, dep, false)
	}
}

// inPlace moves the live allocations to version v (a count-only change or a
// revert), with a deployment if v has an update block, and follows v's
// count.
func (s *Server) inPlace(j *job, v *api.Job) {
	var dep *api.Deployment
	if hasUpdate(v) {
		dep = s.newDeployment(j, v, 0)
	}
	for _, a := range j.liveAllocs() {
		a.stub.JobVersion = *v.Version
		a.stub.ModifyIndex = s.index
		if dep != nil {
			a.deploymentID = dep.ID
			dep.TaskGroups[a.stub.TaskGroup].PlacedAllocs++
			ds := &api.AllocDeploymentStatus{ModifyIndex: s.index}
			if a.stub.ClientStatus == api.AllocClientStatusRunning {
				h := !s.unhealthy[a.image]
				ds.Healthy = &h
				ds.Timestamp = s.now()
			}
			a.stub.DeploymentStatus = ds
		}
	}
	s.follow(j, v, dep)
}

// follow stops the highest indexes of version v above its count, and places
// the lowest free indexes below it.
func (s *Server) follow(j *job, v *api.Job, dep *api.Deployment) {
	var mine []*alloc
	used := map[int]bool{}
	for _, a := range j.liveAllocs() {
		if a.stub.JobVersion == *v.Version {
			mine = append(mine, a)
			used[a.index] = true
		}
	}
	sort.Slice(mine, func(a, b int) bool { return mine[a].index < mine[b].index })
	n := groupCount(v)
	for i := n; i < len(mine); i++ {
		s.stopAlloc(mine[i], "alloc not needed due to job update")
	}
	for i, have := 0, len(mine); have < n; i++ {
		if !used[i] {
			s.place(j, v, i, dep, false)
			have++
		}
	}
}

func (s *Server) scale(w http.ResponseWriter, r *http.Request, id string) {
	var req api.ScalingRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	group := req.Target["Group"]
	if group == "" {
		writeErr(w, http.StatusBadRequest, "missing task group name for scaling action")
		return
	}
	if req.Count != nil && *req.Count < 0 {
		writeErr(w, http.StatusBadRequest, "scaling action count can't be negative")
		return
	}
	j := s.liveJob(id)
	if j == nil {
		writeErr(w, http.StatusNotFound, fmt.Sprintf("job %q not found", id))
		return
	}
	cur := j.latest()
	gi := -1
	for i, g := range cur.TaskGroups {
		if *g.Name == group {
			gi = i
		}
	}
	if gi < 0 {
		writeErr(w, http.StatusBadRequest, fmt.Sprintf("task group %q specified for scaling does not exist in job", group))
		return
	}
	prevCount := int64(groupCountOf(cur.TaskGroups[gi]))
	if req.Count == nil {
		ix := s.next()
		j.addScaleEvent(group, api.ScalingEvent{PreviousCount: prevCount, Error: req.Error, Message: req.Message,
			Meta: req.Meta, Time: uint64(s.now().UnixNano()), CreateIndex: ix})
		writeOK(w, ix, registerResponse{Index: ix, JobModifyIndex: *cur.JobModifyIndex, KnownLeader: true})
		return
	}
	if scaleRange(w, cur.TaskGroups[gi], *req.Count) { // before the deployment, as in Nomad
		return
	}
	if j.activeDeployment() != nil {
		writeErr(w, http.StatusBadRequest, ErrScaleBlocked)
		return
	}
	v := copyJob(cur)
	v.TaskGroups[gi].Count = new(int(*req.Count))
	jm := s.next()
	s.stamp(j, v, cur, jm, *cur.Stop)
	j.versions = append(j.versions, v)
	e := s.evaluate(v, "job-scaling", s.next(), func() {
		if !*v.Stop {
			s.inPlace(j, v)
		}
	})
	ix := s.next()
	j.addScaleEvent(group, api.ScalingEvent{Count: new(*req.Count), PreviousCount: prevCount, Error: req.Error,
		Message: req.Message, Meta: req.Meta, EvalID: new(e.ev.ID), Time: uint64(s.now().UnixNano()), CreateIndex: ix})
	writeOK(w, ix, registerResponse{EvalCreateIndex: e.ev.CreateIndex, EvalID: e.ev.ID, Index: ix, JobModifyIndex: jm, KnownLeader: true})
}

func (j *job) addScaleEvent(group string, e api.ScalingEvent) {
	j.scaleEvents = append(j.scaleEvents, e)
	j.scaleGroups = append(j.scaleGroups, group)
}

func (s *Server) deregister(w http.ResponseWriter, r *http.Request, id string) {
	purge := r.URL.Query().Get("purge") == "true"
	j := s.liveJob(id)
	if j == nil {
		writeOK(w, 0, deregisterResponse{})
		return
	}
	ix := s.next()
	cur := j.latest()
	v := copyJob(cur)
	s.stamp(j, v, cur, ix, true)
	j.versions = append(j.versions, v)
	e := s.evaluate(v, "job-deregister", ix, func() {
		for _, a := range j.liveAllocs() {
			s.stopAlloc(a, "alloc not needed due to job update")
		}
	})
	for _, d := range j.deployments {
		if d.Status == api.DeploymentStatusRunning || d.Status == api.DeploymentStatusPaused {
			d.Status = api.DeploymentStatusCancelled
			d.StatusDescription = descCancelledStopped
			d.ModifyIndex = ix
		}
	}
	if purge {
		j.purged = true
		s.deleted[tableJobs] = s.next()
	}
	writeOK(w, ix, deregisterResponse{EvalCreateIndex: ix, EvalID: e.ev.ID, Index: ix, JobModifyIndex: ix})
}

func (s *Server) promote(w http.ResponseWriter, r *http.Request, id string) {
	var req api.DeploymentPromoteRequest
	_ = json.NewDecoder(r.Body).Decode(&req)
	j, d := s.findDeployment(id)
	if d == nil {
		writeErr(w, http.StatusInternalServerError, ErrDeploymentMissing)
		return
	}
	if d.Status != api.DeploymentStatusRunning && d.Status != api.DeploymentStatusPaused {
		writeErr(w, http.StatusInternalServerError, ErrPromoteTerminal)
		return
	}
	for name, st := range d.TaskGroups {
		if !req.All && len(req.Groups) > 0 && !slices.Contains(req.Groups, name) {
			continue
		}
		healthy := 0
		for _, a := range j.allocs {
			if a.deploymentID == d.ID && a.stub.DeploymentStatus != nil && a.stub.DeploymentStatus.Canary &&
				a.stub.DeploymentStatus.Healthy != nil && *a.stub.DeploymentStatus.Healthy && a.live() {
				healthy++
			}
		}
		if healthy < st.DesiredCanaries {
			writeErr(w, http.StatusInternalServerError, fmt.Sprintf("Task group %q has %d/%d healthy allocations", name, healthy, st.DesiredCanaries))
			return
		}
	}
	ix := s.next()
	var v *api.Job
	for _, jv := range j.versions {
		if *jv.Version == d.JobVersion {
			v = jv
		}
	}
	d.StatusDescription = descRunning
	d.ModifyIndex = ix
	for _, st := range d.TaskGroups {
		st.Promoted = true
	}
	if v == nil {
		v = j.latest()
	}
	e := s.evaluate(v, "deployment-watcher", ix, func() {
		for _, a := range j.liveAllocs() {
			if a.stub.JobVersion != d.JobVersion {
				s.stopAlloc(a, "alloc is being updated due to job update")
			} else if a.stub.DeploymentStatus != nil {
				a.stub.DeploymentStatus.Canary = false
				a.stub.ModifyIndex = ix
			}
		}
		s.follow(j, v, d)
	})
	writeOK(w, ix, deploymentUpdateResponse{DeploymentModifyIndex: ix, EvalCreateIndex: ix, EvalID: e.ev.ID, Index: ix})
}

// awaitsPromotion says whether d has canaries that are not promoted yet.
func awaitsPromotion(d *api.Deployment) bool {
	for _, st := range d.TaskGroups {
		if st.DesiredCanaries > 0 && !st.Promoted {
			return true
		}
	}
	return false
}

func (s *Server) fail(w http.ResponseWriter, id string) {
	j, d := s.findDeployment(id)
	if d == nil {
		writeErr(w, http.StatusInternalServerError, ErrDeploymentMissing)
		return
	}
	if d.Status != api.DeploymentStatusRunning && d.Status != api.DeploymentStatusPaused {
		writeErr(w, http.StatusInternalServerError, ErrFailTerminal)
		return
	}
	ix := s.next()
	d.Status = api.DeploymentStatusFailed
	d.StatusDescription = descMarkedFailed
	d.ModifyIndex = ix
	stable := stableBefore(j, d)
	var reverted *uint64
	e := s.evaluate(j.latest(), "deployment-watcher", ix, func() {
		if stable != nil {
			reverted = s.revert(j, d, stable)
		}
	})
	writeOK(w, ix, deploymentUpdateResponse{DeploymentModifyIndex: ix, EvalCreateIndex: ix, EvalID: e.ev.ID, Index: ix, RevertedJobVersion: reverted})
}

// stableBefore is the version a failed deployment d reverts to: the last
// stable one before it, if d's groups auto-revert.
func stableBefore(j *job, d *api.Deployment) *api.Job {
	revert := false
	for _, st := range d.TaskGroups {
		revert = revert || st.AutoRevert
	}
	if !revert || j.purged {
		return nil
	}
	var stable *api.Job
	for _, v := range j.versions {
		if *v.Version < d.JobVersion && *v.Stable && !*v.Stop {
			stable = v
		}
	}
	return stable
}

// revert stops d's allocations and registers a copy of stable as a new
// job version, which the surviving allocations move to in place.
func (s *Server) revert(j *job, d *api.Deployment, stable *api.Job) *uint64 {
	d.StatusDescription += fmt.Sprintf(" - rolling back to job version %d", *stable.Version)
	for _, a := range j.liveAllocs() {
		if a.stub.JobVersion == d.JobVersion {
			s.stopAlloc(a, "alloc is being updated due to job update")
		}
	}
	cur := j.latest()
	v := copyJob(stable)
	// The revert keeps the current count (PreserveCounts-like).
	v.TaskGroups[0].Count = new(groupCount(cur))
	s.stamp(j, v, cur, s.next(), false)
	j.versions = append(j.versions, v)
	s.inPlace(j, v)
	return new(*stable.Version)
}
