// Package nomadfake is an in-process fake of the part of the Nomad HTTP API
// that cluster/nomad uses, modelled on the Nomad 1.6.5 transcripts in
// shared/reference/api-transcripts (01, 02, 03, 05, 06).
//
// It listens on 127.0.0.1 only. What it models:
//
//   - Jobs have versions. Register (PUT/POST /v1/jobs, /v1/job/<id>) with
//     PreserveCounts and EnforceIndex; a count-only change updates the
//     allocations in place; a spec change of a running job whose group has
//     update.canary > 0 starts a deployment that places that many canaries
//     (reusing name indexes [0], [1], …) next to the old allocations and
//     waits for POST /v1/deployment/promote/<id>. Promotion stops the old
//     allocations (all at once, not max_parallel at a time) and places
//     what is missing. A spec change without canaries replaces all.
//   - New allocations are "pending", then "running" and healthy at once or
//     after SetHealthDelay; allocations of an image passed to SetUnhealthy
//     run but are marked unhealthy (DeploymentStatus.Healthy false), as
//     Nomad does at healthy_deadline; the deployment keeps running
//     (default progress_deadline), so the caller has to fail it.
//   - POST /v1/deployment/fail/<id> fails it and, with auto_revert, reverts
//     to the last stable version (a new job version; canaries stopped,
//     survivors updated in place).
//   - Scale (POST/PUT /v1/job/<id>/scale) follows the count (stops the
//     highest indexes, adds the lowest free ones) and is refused with 400
//     "job scaling blocked due to active deployment" while a deployment
//     runs; a request without Count only records an event.
//   - DELETE /v1/job/<id>[?purge=true]: stop (new version, Stop true,
//     status dead, allocations complete at once) and purge (job gone, 404
//     "job not found", allocations and deployments still listed).
//
// Not modelled: blocking queries (index/wait are ignored: answers come at
// once), per-table indexes (one raft-like index for everything), evaluations,
// the 6-version limit, rescheduling, shutdown delays, Consul.
package nomadfake

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Nomad's texts (transcripts 03 and 06, and Nomad's source for the fail
// endpoint).
const (
	ErrScaleBlocked      = "job scaling blocked due to active deployment"
	ErrJobNotFound       = "job not found"
	ErrDeploymentMissing = "deployment not found"
	ErrPromoteTerminal   = "can't promote terminal deployment"
	ErrFailTerminal      = "can't fail terminal deployment"
	ErrJobMissing        = "Job must be specified"
	ErrAllocNotFound     = "alloc not found"

	descRunning          = "Deployment is running"
	descNeedsPromotion   = "Deployment is running but requires manual promotion"
	descSuccessful       = "Deployment completed successfully"
	descMarkedFailed     = "Deployment marked as failed"
	descCancelledNewer   = "Cancelled due to newer version of job"
	descCancelledStopped = "Cancelled because job is stopped"
)

// Server is the fake Nomad agent. The zero value is not usable; use New.
type Server struct {
	srv *httptest.Server

	mu          sync.Mutex
	index       uint64
	jobs        map[string]*job
	healthDelay time.Duration
	unhealthy   map[string]bool
	now         func() time.Time
}

type job struct {
	id            string
	versions      []*api.Job // oldest first
	purged        bool
	allocs        []*alloc
	deployments   []*api.Deployment
	createIndex   uint64
	scaleMessages []string
}

type alloc struct {
	stub    api.AllocationListStub
	image   string
	readyAt time.Time
	index   int
	// deploymentID is not in Nomad's list stub, only in the full alloc.
	deploymentID string
}

// New starts a fake Nomad agent on 127.0.0.1.
func New() *Server {
	s := &Server{jobs: map[string]*job{}, unhealthy: map[string]bool{}, now: time.Now, index: 10}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("nomadfake: " + err.Error())
	}
	srv.Listener = l
	srv.Start()
	s.srv = srv
	return s
}

// URL is the agent's address, for api.Config.Address.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// SetHealthDelay makes new allocations pending for d before they run and
// are healthy (0, the default: at once).
func (s *Server) SetHealthDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.healthDelay = d
}

// SetUnhealthy makes allocations of image (the docker config "image") run
// but never become healthy: they are marked unhealthy once they would have
// become healthy.
func (s *Server) SetUnhealthy(image string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unhealthy[image] = true
}

// Allocations returns copies of all allocations of the job (terminal ones
// included), oldest first.
func (s *Server) Allocations(jobID string) []api.AllocationListStub {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	j := s.jobs[jobID]
	if j == nil {
		return nil
	}
	out := make([]api.AllocationListStub, 0, len(j.allocs))
	for _, a := range j.allocs {
		out = append(out, a.stub)
	}
	return out
}

// Job returns a copy of the job's latest version, or nil.
func (s *Server) Job(jobID string) *api.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[jobID]
	if j == nil || j.purged {
		return nil
	}
	return copyJob(j.latest())
}

func (j *job) latest() *api.Job { return j.versions[len(j.versions)-1] }

func (j *job) activeDeployment() *api.Deployment {
	for _, d := range j.deployments {
		if d.Status == api.DeploymentStatusRunning || d.Status == api.DeploymentStatusPaused {
			return d
		}
	}
	return nil
}

func (j *job) latestDeployment() *api.Deployment {
	var best *api.Deployment
	for _, d := range j.deployments {
		if best == nil || d.CreateIndex > best.CreateIndex {
			best = d
		}
	}
	return best
}

func (j *job) deployment(id string) *api.Deployment {
	for _, d := range j.deployments {
		if d.ID == id {
			return d
		}
	}
	return nil
}

func (s *Server) next() uint64 { s.index++; return s.index }

func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func copyJob(j *api.Job) *api.Job {
	b, err := json.Marshal(j)
	if err != nil {
		panic(err)
	}
	var out api.Job
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return &out
}

// ---- HTTP ----

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()

	p := strings.TrimPrefix(r.URL.Path, "/v1/")
	write := r.Method == http.MethodPut || r.Method == http.MethodPost
	switch {
	case p == "jobs" && write:
		s.register(w, r, "")
	case strings.HasPrefix(p, "job/"):
		rest := strings.TrimPrefix(p, "job/")
		id, sub, _ := strings.Cut(rest, "/")
		switch {
		case sub == "" && r.Method == http.MethodGet:
			s.getJob(w, id)
		case sub == "" && write:
			s.register(w, r, id)
		case sub == "" && r.Method == http.MethodDelete:
			s.deregister(w, r, id)
		case sub == "scale" && write:
			s.scale(w, r, id)
		case sub == "allocations" && r.Method == http.MethodGet:
			s.listAllocs(w, id)
		case sub == "deployment" && r.Method == http.MethodGet:
			s.latestDeployment(w, id)
		case sub == "deployments" && r.Method == http.MethodGet:
			s.listDeployments(w, id)
		case sub == "versions" && r.Method == http.MethodGet:
			s.versions(w, id)
		default:
			http.NotFound(w, r)
		}
	case strings.HasPrefix(p, "allocation/") && r.Method == http.MethodGet:
		s.getAlloc(w, strings.TrimPrefix(p, "allocation/"))
	case strings.HasPrefix(p, "deployment/promote/") && write:
		s.promote(w, r, strings.TrimPrefix(p, "deployment/promote/"))
	case strings.HasPrefix(p, "deployment/fail/") && write:
		s.fail(w, strings.TrimPrefix(p, "deployment/fail/"))
	case strings.HasPrefix(p, "deployment/") && r.Method == http.MethodGet:
		s.getDeployment(w, strings.TrimPrefix(p, "deployment/"))
	default:
		http.NotFound(w, r)
	}
}

// compact JSON with keys in alphabetical order, as Nomad sends it.
func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		panic(err)
	}
	b, err = json.Marshal(generic)
	if err != nil {
		panic(err)
	}
	return b
}

func (s *Server) readOK(w http.ResponseWriter, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Nomad-Index", strconv.FormatUint(s.index, 10))
	h.Set("X-Nomad-Knownleader", "true")
	h.Set("X-Nomad-Lastcontact", "0")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(encode(v))
}

func (s *Server) readErr(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("X-Nomad-Index", strconv.FormatUint(s.index, 10))
	h.Set("X-Nomad-Knownleader", "true")
	h.Set("X-Nomad-Lastcontact", "0")
	writeErr(w, code, msg)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg))
}

func writeOK(w http.ResponseWriter, index uint64, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(index, 10))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(encode(v))
}

// registerResponse is JobRegisterResponse as Nomad 1.6.5 encodes it.
type registerResponse struct {
	EvalCreateIndex uint64
	EvalID          string
	Index           uint64
	JobModifyIndex  uint64
	KnownLeader     bool
	LastContact     int
	NextToken       string
	Warnings        string
}

type deregisterResponse struct {
	EvalCreateIndex uint64
	EvalID          string
	Index           uint64
	JobModifyIndex  uint64
	KnownLeader     bool
	LastContact     int
	NextToken       string
	VolumeEvalID    string
	VolumeEvalIndex uint64
}

type deploymentUpdateResponse struct {
	DeploymentModifyIndex uint64
	EvalCreateIndex       uint64
	EvalID                string
	Index                 uint64
	RevertedJobVersion    *uint64
}

func (s *Server) liveJob(id string) *job {
	j := s.jobs[id]
	if j == nil || j.purged {
		return nil
	}
	return j
}

func (s *Server) getJob(w http.ResponseWriter, id string) {
	j := s.liveJob(id)
	if j == nil {
		s.readErr(w, http.StatusNotFound, ErrJobNotFound)
		return
	}
	s.readOK(w, j.latest())
}

func (s *Server) versions(w http.ResponseWriter, id string) {
	j := s.liveJob(id)
	if j == nil {
		s.readErr(w, http.StatusNotFound, "job versions not found")
		return
	}
	vs := make([]*api.Job, 0, len(j.versions))
	for i := len(j.versions) - 1; i >= 0; i-- {
		vs = append(vs, j.versions[i])
	}
	s.readOK(w, map[string]any{"Diffs": nil, "Index": s.index, "KnownLeader": true, "LastContact": 0, "Versions": vs})
}

func (s *Server) listAllocs(w http.ResponseWriter, id string) {
	out := []api.AllocationListStub{}
	if j := s.jobs[id]; j != nil {
		for _, a := range j.allocs {
			out = append(out, a.stub)
		}
	}
	s.readOK(w, out)
}

func (s *Server) getAlloc(w http.ResponseWriter, id string) {
	for _, j := range s.jobs {
		for _, a := range j.allocs {
			if a.stub.ID != id {
				continue
			}
			var jv *api.Job
			for _, v := range j.versions {
				if *v.Version == a.stub.JobVersion {
					jv = v
				}
			}
			st := a.stub
			s.readOK(w, api.Allocation{
				ID: st.ID, Namespace: st.Namespace, EvalID: st.EvalID, Name: st.Name,
				NodeID: st.NodeID, NodeName: st.NodeName, JobID: st.JobID, Job: jv,
				TaskGroup: st.TaskGroup, DesiredStatus: st.DesiredStatus,
				ClientStatus: st.ClientStatus, ClientDescription: st.ClientDescription,
				TaskStates: st.TaskStates, DeploymentStatus: st.DeploymentStatus,
				CreateIndex: st.CreateIndex, ModifyIndex: st.ModifyIndex,
				AllocModifyIndex: st.ModifyIndex, CreateTime: st.CreateTime, ModifyTime: st.ModifyTime,
			})
			return
		}
	}
	s.readErr(w, http.StatusNotFound, ErrAllocNotFound)
}

func (s *Server) latestDeployment(w http.ResponseWriter, id string) {
	var d *api.Deployment
	if j := s.jobs[id]; j != nil {
		d = j.latestDeployment()
	}
	s.readOK(w, d)
}

func (s *Server) listDeployments(w http.ResponseWriter, id string) {
	out := []*api.Deployment{}
	if j := s.jobs[id]; j != nil {
		out = append(out, j.deployments...)
	}
	s.readOK(w, out)
}

func (s *Server) findDeployment(id string) (*job, *api.Deployment) {
	for _, j := range s.jobs {
		if d := j.deployment(id); d != nil {
			return j, d
		}
	}
	return nil, nil
}

func (s *Server) getDeployment(w http.ResponseWriter, id string) {
	_, d := s.findDeployment(id)
	if d == nil {
		s.readErr(w, http.StatusNotFound, ErrDeploymentMissing)
		return
	}
	s.readOK(w, d)
}

// ---- model ----

func image(j *api.Job) string {
	if len(j.TaskGroups) == 0 || len(j.TaskGroups[0].Tasks) == 0 {
		return ""
	}
	img, _ := j.TaskGroups[0].Tasks[0].Config["image"].(string)
	return img
}

func groupCount(j *api.Job) int {
	if len(j.TaskGroups) == 0 || j.TaskGroups[0].Count == nil {
		return 0
	}
	return *j.TaskGroups[0].Count
}

func canaries(j *api.Job) int {
	g := j.TaskGroups[0]
	if g.Update != nil && g.Update.Canary != nil {
		return *g.Update.Canary
	}
	if j.Update != nil && j.Update.Canary != nil {
		return *j.Update.Canary
	}
	return 0
}

func autoRevert(j *api.Job) bool {
	g := j.TaskGroups[0]
	if g.Update != nil && g.Update.AutoRevert != nil {
		return *g.Update.AutoRevert
	}
	return j.Update != nil && j.Update.AutoRevert != nil && *j.Update.AutoRevert
}

func hasUpdate(j *api.Job) bool { return j.TaskGroups[0].Update != nil || j.Update != nil }

// spec is the job without the fields a count-only change touches.
func spec(j *api.Job) string {
	c := copyJob(j)
	for _, g := range c.TaskGroups {
		g.Count = nil
	}
	c.Version, c.Stable, c.Status, c.Stop = nil, nil, nil, nil
	c.CreateIndex, c.ModifyIndex, c.JobModifyIndex, c.SubmitTime = nil, nil, nil, nil
	c.StatusDescription = nil
	return string(encode(c))
}

func (a *alloc) live() bool {
	return a.stub.DesiredStatus == api.AllocDesiredStatusRun &&
		(a.stub.ClientStatus == api.AllocClientStatusPending || a.stub.ClientStatus == api.AllocClientStatusRunning)
}

func (j *job) liveAllocs() []*alloc {
	var out []*alloc
	for _, a := range j.allocs {
		if a.live() {
			out = append(out, a)
		}
	}
	return out
}

func taskName(v *api.Job) string {
	if len(v.TaskGroups) > 0 && len(v.TaskGroups[0].Tasks) > 0 {
		return v.TaskGroups[0].Tasks[0].Name
	}
	return "task"
}

func (s *Server) place(j *job, v *api.Job, index int, dep *api.Deployment, canary bool) *alloc {
	now := s.now()
	ix := s.next()
	a := &alloc{index: index, image: image(v), readyAt: now.Add(s.healthDelay)}
	a.stub = api.AllocationListStub{
		ID: uuid(), EvalID: uuid(), Name: fmt.Sprintf("%s.%s[%d]", j.id, *v.TaskGroups[0].Name, index),
		Namespace: "default", NodeID: "00000000-0000-4000-8000-000000000001", NodeName: "fake",
		JobID: j.id, JobType: "service", JobVersion: *v.Version, TaskGroup: *v.TaskGroups[0].Name,
		DesiredStatus: api.AllocDesiredStatusRun, ClientStatus: api.AllocClientStatusPending,
		TaskStates: map[string]*api.TaskState{taskName(v): {State: "pending", Events: []*api.TaskEvent{
			{Type: api.TaskReceived, Time: now.UnixNano(), DisplayMessage: "Task received by client", Details: map[string]string{}},
		}}},
		CreateIndex: ix, ModifyIndex: ix, CreateTime: now.UnixNano(), ModifyTime: now.UnixNano(),
	}
	if dep != nil {
		a.stub.DeploymentStatus = &api.AllocDeploymentStatus{Canary: canary, ModifyIndex: ix}
		st := dep.TaskGroups[a.stub.TaskGroup]
		st.PlacedAllocs++
		if canary {
			st.PlacedCanaries = append(st.PlacedCanaries, a.stub.ID)
		}
		a.deploymentID = dep.ID
	}
	j.allocs = append(j.allocs, a)
	return a
}

func (s *Server) stopAlloc(a *alloc, why string) {
	now := s.now()
	a.stub.DesiredStatus = api.AllocDesiredStatusStop
	a.stub.DesiredDescription = why
	a.stub.ClientStatus = api.AllocClientStatusComplete
	a.stub.ClientDescription = "All tasks have completed"
	for _, ts := range a.stub.TaskStates {
		ts.State = "dead"
		ts.FinishedAt = now
		ts.Events = append(ts.Events, &api.TaskEvent{Type: api.TaskKilled, Time: now.UnixNano(), DisplayMessage: "Task successfully killed", Details: map[string]string{}})
	}
	a.stub.ModifyIndex = s.next()
	a.stub.ModifyTime = now.UnixNano()
}

func (s *Server) newDeployment(j *job, v *api.Job, canary int) *api.Deployment {
	ix := s.next()
	var pd time.Duration
	g := v.TaskGroups[0]
	if g.Update != nil && g.Update.ProgressDeadline != nil {
		pd = *g.Update.ProgressDeadline
	}
	d := &api.Deployment{
		ID: uuid(), Namespace: "default", JobID: j.id, JobVersion: *v.Version,
		JobModifyIndex: *v.JobModifyIndex, JobSpecModifyIndex: *v.JobModifyIndex, JobCreateIndex: j.createIndex,
		Status: api.DeploymentStatusRunning, StatusDescription: descRunning,
		TaskGroups: map[string]*api.DeploymentState{*g.Name: {
			AutoRevert: autoRevert(v), DesiredCanaries: canary, DesiredTotal: groupCount(v),
			ProgressDeadline: pd, RequireProgressBy: s.now().Add(pd),
		}},
		CreateIndex: ix, ModifyIndex: ix,
	}
	if canary > 0 {
		d.StatusDescription = descNeedsPromotion
	}
	for _, old := range j.deployments {
		if old.Status == api.DeploymentStatusRunning || old.Status == api.DeploymentStatusPaused {
			old.Status = api.DeploymentStatusCancelled
			old.StatusDescription = descCancelledNewer
			old.ModifyIndex = ix
		}
	}
	j.deployments = append(j.deployments, d)
	return d
}

// advance moves pending allocations to running and finishes deployments.
func (s *Server) advance() {
	now := s.now()
	for _, j := range s.jobs {
		for _, a := range j.allocs {
			if a.stub.ClientStatus != api.AllocClientStatusPending || a.stub.DesiredStatus != api.AllocDesiredStatusRun || now.Before(a.readyAt) {
				continue
			}
			ix := s.next()
			a.stub.ClientStatus = api.AllocClientStatusRunning
			a.stub.ClientDescription = "Tasks are running"
			a.stub.ModifyIndex = ix
			a.stub.ModifyTime = now.UnixNano()
			for _, ts := range a.stub.TaskStates {
				ts.State = "running"
				ts.StartedAt = now
				ts.Events = append(ts.Events, &api.TaskEvent{Type: api.TaskStarted, Time: now.UnixNano(), DisplayMessage: "Task started by client", Details: map[string]string{}})
			}
			if a.stub.DeploymentStatus != nil {
				healthy := !s.unhealthy[a.image]
				a.stub.DeploymentStatus.Healthy = &healthy
				a.stub.DeploymentStatus.Timestamp = now
				a.stub.DeploymentStatus.ModifyIndex = ix
				if !healthy {
					for _, ts := range a.stub.TaskStates {
						ts.Events = append(ts.Events, &api.TaskEvent{Type: "Alloc Unhealthy", Time: now.UnixNano(), DisplayMessage: "Task not running for min_healthy_time by healthy_deadline", Details: map[string]string{}})
					}
				}
			}
		}
		for _, d := range j.deployments {
			if d.Status != api.DeploymentStatusRunning {
				continue
			}
			for name, st := range d.TaskGroups {
				st.HealthyAllocs, st.UnhealthyAllocs = 0, 0
				for _, a := range j.allocs {
					if a.deploymentID != d.ID || a.stub.TaskGroup != name || a.stub.DeploymentStatus == nil || a.stub.DeploymentStatus.Healthy == nil {
						continue
					}
					if *a.stub.DeploymentStatus.Healthy {
						st.HealthyAllocs++
					} else {
						st.UnhealthyAllocs++
					}
				}
				if (st.DesiredCanaries == 0 || st.Promoted) && st.HealthyAllocs >= st.DesiredTotal {
					d.Status = api.DeploymentStatusSuccessful
					d.StatusDescription = descSuccessful
					d.ModifyIndex = s.next()
					for _, v := range j.versions {
						if *v.Version == d.JobVersion {
							v.Stable = new(true)
						}
					}
				}
			}
		}
	}
}
