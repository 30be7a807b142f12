// Package nomadfake is an in-process fake of the part of the Nomad HTTP API
// that cluster/nomad uses, modelled on the Nomad 1.6.5 transcripts in
// shared/reference/api-transcripts (01 to 06b) and on exchanges recorded on
// a 1.6.5 dev agent (logs, evaluations, placement failures).
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
//   - One client node (NodeID, GET /v1/node/<id>) at NodeAddress. Every
//     allocation gets its dynamic ports from 20000–32000, shown in the full
//     allocation (GET /v1/allocation/<id>, AllocatedResources) and not in
//     the list stubs, as in Nomad. SetNodeResources limits the CPU and
//     memory allocations may take, SetNodeDrivers the drivers.
//   - Every write the scheduler acts on creates an evaluation (GET
//     /v1/evaluation/<id>, /v1/job/<id>/evaluations), complete at once or
//     after SetEvalDelay. An allocation that does not fit the node is not
//     placed: the evaluation's FailedTGAllocs say why (DimensionExhausted
//     "cpu"/"memory", ConstraintFiltered "missing drivers"), its
//     QueuedAllocations count what is missing, and BlockedEval names a new
//     "blocked" evaluation.
//   - POST /v1/deployment/fail/<id> fails it and, with auto_revert, reverts
//     to the last stable version (a new job version; canaries stopped,
//     survivors updated in place).
//   - Scale (POST/PUT /v1/job/<id>/scale) follows the count (stops the
//     highest indexes, adds the lowest free ones) and is refused with 400
//     "job scaling blocked due to active deployment" while a deployment
//     runs; a request without Count only records an event. Every event
//     keeps its message and meta (GET /v1/job/<id>/scale, ScaleEvents).
//   - The group scaling block (scaling.go): a registration with the count
//     outside [min, max] is refused as Nomad's validation does (500), the
//     stored block gets Nomad's defaults and an ID kept across versions,
//     a Scale outside it is a 400 ("group count was greater than scaling
//     policy maximum: 6 > 5"), enabled or not, checked before the active
//     deployment; a change of the block only updates the allocations in
//     place, as a count change does.
//   - DELETE /v1/job/<id>[?purge=true]: stop (new version, Stop true,
//     status dead, allocations complete at once, or with HoldStops when
//     ReleaseStops says so) and purge (job gone, 404
//     "job not found", allocations and deployments still listed).
//   - GET /v1/jobs[?prefix=] lists the jobs (stubs).
//   - Blocking queries (?index=&wait=) on every read, with an index per
//     state table (jobs, allocations, deployments, evaluations, nodes).
//   - Task logs (GET /v1/client/fs/logs/<alloc>), framed or plain, with
//     follow; tests write them with AppendLog.
//
// Not modelled: the 6-version limit, rescheduling, shutdown delays,
// unblocking a blocked evaluation when capacity frees up, log rotation,
// Consul.
package nomadfake

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
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

	// changed is closed (and replaced) on every index bump and log append:
	// blocked queries and log followers wait on it.
	changed chan struct{}
	// holdStops keeps stopped allocations running until ReleaseStops.
	holdStops bool
	held      []*alloc
	// deleted is the index of the last deletion from a table (a purge),
	// which raises the table's index as in Nomad's state store.
	deleted map[table]uint64

	evals      map[string]*eval
	evalDelay  time.Duration
	evaluating *eval // the evaluation of the write being handled

	// The node: its index, what it offers (0: unlimited) and its drivers.
	nodeIndex uint64
	capacity  demand
	drivers   []string

	logs map[string]map[string][]byte // by allocation, then "stdout"/"stderr"
}

type job struct {
	id          string
	versions    []*api.Job // oldest first
	purged      bool
	allocs      []*alloc
	deployments []*api.Deployment
	createIndex uint64
	// scaleEvents are the scaling events (oldest first) and scaleGroups
	// the group of each.
	scaleEvents []api.ScalingEvent
	scaleGroups []string
}

type alloc struct {
	stub    api.AllocationListStub
	image   string
	readyAt time.Time
	index   int
	// deploymentID is not in Nomad's list stub, only in the full alloc.
	deploymentID string
	// What the allocation takes from the node, and its ports (host port
	// and the port in the container), in the full alloc only too.
	demand demand
	ports  []api.PortMapping
}

// New starts a fake Nomad agent on 127.0.0.1.
func New() *Server {
	s := &Server{
		jobs: map[string]*job{}, unhealthy: map[string]bool{}, now: time.Now, index: 10,
		changed: make(chan struct{}), deleted: map[table]uint64{}, evals: map[string]*eval{},
		nodeIndex: 10, drivers: []string{"docker", "exec"}, logs: map[string]map[string][]byte{},
	}
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

// next raises the index for a change and releases the queries that wait
// for one.
func (s *Server) next() uint64 {
	s.index++
	s.wake()
	return s.index
}

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
	p := strings.TrimPrefix(r.URL.Path, "/v1/")
	if strings.HasPrefix(p, "client/fs/logs/") && r.Method == http.MethodGet {
		s.serveLogs(w, r) // streams: takes the lock only to read
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	if t, ok := readTable(p); ok && r.Method == http.MethodGet {
		if err := s.block(r, t); err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return
		}
		w.Header().Set("X-Nomad-Index", strconv.FormatUint(s.tableIndex(t), 10))
	}
	write := r.Method == http.MethodPut || r.Method == http.MethodPost
	switch {
	case p == "jobs" && write:
		s.register(w, r, "")
	case p == "jobs" && r.Method == http.MethodGet:
		s.listJobs(w, r.URL.Query().Get("prefix"))
	case strings.HasPrefix(p, "job/"):
		s.serveJob(w, r, strings.TrimPrefix(p, "job/"))
	case strings.HasPrefix(p, "allocation/") && r.Method == http.MethodGet:
		s.getAlloc(w, strings.TrimPrefix(p, "allocation/"))
	case strings.HasPrefix(p, "evaluation/") && r.Method == http.MethodGet:
		s.getEval(w, strings.TrimPrefix(p, "evaluation/"))
	case strings.HasPrefix(p, "node/") && r.Method == http.MethodGet:
		s.getNode(w, strings.TrimPrefix(p, "node/"))
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

// serveJob routes /v1/job/<id>[/<sub>].
func (s *Server) serveJob(w http.ResponseWriter, r *http.Request, rest string) {
	id, sub, _ := strings.Cut(rest, "/")
	get := r.Method == http.MethodGet
	switch {
	case sub == "" && get:
		s.getJob(w, id)
	case sub == "" && (r.Method == http.MethodPut || r.Method == http.MethodPost):
		s.register(w, r, id)
	case sub == "" && r.Method == http.MethodDelete:
		s.deregister(w, r, id)
	case sub == "scale" && (r.Method == http.MethodPut || r.Method == http.MethodPost):
		s.scale(w, r, id)
	case sub == "scale" && get:
		s.scaleStatus(w, id)
	case sub == "allocations" && get:
		s.listAllocs(w, id)
	case sub == "deployment" && get:
		s.latestDeployment(w, id)
	case sub == "deployments" && get:
		s.listDeployments(w, id)
	case sub == "versions" && get:
		s.versions(w, id)
	case sub == "evaluations" && get:
		s.listEvals(w, id)
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

// readOK answers a read; serve has set X-Nomad-Index (the index of the
// table read).
func (s *Server) readOK(w http.ResponseWriter, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Nomad-Knownleader", "true")
	h.Set("X-Nomad-Lastcontact", "0")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(encode(v))
}

func (s *Server) readErr(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
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

// findAlloc returns the allocation id and the job version it runs.
func (s *Server) findAlloc(id string) (*alloc, *api.Job) {
	for _, j := range s.jobs {
		for _, a := range j.allocs {
			if a.stub.ID != id {
				continue
			}
			for _, v := range j.versions {
				if *v.Version == a.stub.JobVersion {
					return a, v
				}
			}
			return a, nil
		}
	}
	return nil, nil
}

func (s *Server) getAlloc(w http.ResponseWriter, id string) {
	a, jv := s.findAlloc(id)
	if a == nil {
		s.readErr(w, http.StatusNotFound, ErrAllocNotFound)
		return
	}
	st := a.stub
	task := "task"
	if jv != nil {
		task = taskName(jv)
	}
	s.readOK(w, api.Allocation{
		ID: st.ID, Namespace: st.Namespace, EvalID: st.EvalID, Name: st.Name,
		NodeID: st.NodeID, NodeName: st.NodeName, JobID: st.JobID, Job: jv,
		TaskGroup: st.TaskGroup, AllocatedResources: a.allocatedResources(task),
		DesiredStatus: st.DesiredStatus, DesiredDescription: st.DesiredDescription,
		ClientStatus: st.ClientStatus, ClientDescription: st.ClientDescription,
		TaskStates: st.TaskStates, DeploymentID: a.deploymentID, DeploymentStatus: st.DeploymentStatus,
		CreateIndex: st.CreateIndex, ModifyIndex: st.ModifyIndex,
		AllocModifyIndex: st.CreateIndex, CreateTime: st.CreateTime, ModifyTime: st.ModifyTime,
	})
}

// listJobs answers GET /v1/jobs[?prefix=], sorted by ID.
func (s *Server) listJobs(w http.ResponseWriter, prefix string) {
	out := []api.JobListStub{}
	for _, j := range s.jobs {
		if j.purged || !strings.HasPrefix(j.id, prefix) {
			continue
		}
		v := j.latest()
		out = append(out, api.JobListStub{
			ID: j.id, Name: *v.Name, Namespace: *v.Namespace, Type: *v.Type, Priority: 50,
			Status: *v.Status, Stop: *v.Stop, Datacenters: v.Datacenters, Meta: v.Meta,
			CreateIndex: *v.CreateIndex, ModifyIndex: *v.ModifyIndex, JobModifyIndex: *v.JobModifyIndex,
			SubmitTime: *v.SubmitTime,
		})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	s.readOK(w, out)
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

// taskSpec is the job without the fields whose change Nomad applies to
// the allocations in place: the count, the scaling block and the update
// block (a redeployment of a running version changes update.canary from
// the first registration's 0; seen on 1.6.5: no allocation replaced).
func taskSpec(j *api.Job) string {
	c := copyJob(j)
	c.Update = nil
	for _, g := range c.TaskGroups {
		g.Scaling, g.Update = nil, nil
	}
	return spec(c)
}

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

// place starts an allocation of v with name index [index] on the node, as
// a canary of dep or part of it, if it fits; otherwise it records why in
// the evaluation being made and places nothing.
func (s *Server) place(j *job, v *api.Job, index int, dep *api.Deployment, canary bool) *alloc {
	g := v.TaskGroups[0]
	d, driver := groupDemand(v)
	if constraint, dim := s.misfit(d, driver); constraint != "" || dim != "" {
		s.unplaced(*g.Name, taskName(v), d, constraint, dim)
		return nil
	}
	now := s.now()
	ix := s.next()
	a := &alloc{index: index, image: image(v), readyAt: now.Add(s.healthDelay), demand: d, ports: s.assignPorts(v)}
	evalID := uuid()
	if s.evaluating != nil {
		evalID = s.evaluating.ev.ID
	}
	a.stub = api.AllocationListStub{
		ID: uuid(), EvalID: evalID, Name: fmt.Sprintf("%s.%s[%d]", j.id, *g.Name, index),
		Namespace: "default", NodeID: NodeID, NodeName: NodeName,
		JobID: j.id, JobType: "service", JobVersion: *v.Version, TaskGroup: *g.Name,
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
		dep.ModifyIndex = ix
		a.deploymentID = dep.ID
	}
	j.allocs = append(j.allocs, a)
	return a
}

func (s *Server) stopAlloc(a *alloc, why string) {
	a.stub.DesiredStatus = api.AllocDesiredStatusStop
	a.stub.DesiredDescription = why
	if s.holdStops {
		// Desired stop, still running on its client (transcript-free, seen
		// on Nomad 1.6.5 right after `nomad job stop`).
		a.stub.ModifyIndex = s.next()
		s.held = append(s.held, a)
		return
	}
	s.finishStop(a)
}

// HoldStops makes allocations that are told to stop keep running (desired
// status stop, client status running) until ReleaseStops, as a real client
// takes a moment (up to kill_timeout) to stop a task.
func (s *Server) HoldStops() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holdStops = true
}

// ReleaseStops completes the held stops and stops holding new ones.
func (s *Server) ReleaseStops() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holdStops = false
	for _, a := range s.held {
		s.finishStop(a)
	}
	s.held = nil
}

// finishStop is the client's side of a stop: the task is dead.
func (s *Server) finishStop(a *alloc) {
	now := s.now()
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

// advance applies what time brings: pending allocations start (and become
// healthy or not), deployments count them and succeed, evaluations
// complete.
func (s *Server) advance() {
	now := s.now()
	for _, j := range s.jobs {
		for _, a := range j.allocs {
			if a.stub.ClientStatus == api.AllocClientStatusPending && a.stub.DesiredStatus == api.AllocDesiredStatusRun && !now.Before(a.readyAt) {
				s.start(a, now)
			}
		}
		for _, d := range j.deployments {
			if d.Status == api.DeploymentStatusRunning {
				s.tally(j, d)
			}
		}
	}
	for _, e := range s.evals {
		if e.ev.Status == api.EvalStatusPending && !now.Before(e.doneAt) {
			s.complete(e)
		}
	}
}

// start runs a pending allocation; in a deployment it is healthy at once
// unless its image was passed to SetUnhealthy.
func (s *Server) start(a *alloc, now time.Time) {
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
	if a.stub.DeploymentStatus == nil {
		return
	}
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

// tally counts the healthy and unhealthy allocations of a running
// deployment (a new deployment index when they change) and marks it
// successful, and its job version stable, once all are healthy.
func (s *Server) tally(j *job, d *api.Deployment) {
	for name, st := range d.TaskGroups {
		healthy, unhealthy := 0, 0
		for _, a := range j.allocs {
			if a.deploymentID != d.ID || a.stub.TaskGroup != name || a.stub.DeploymentStatus == nil || a.stub.DeploymentStatus.Healthy == nil {
				continue
			}
			if *a.stub.DeploymentStatus.Healthy {
				healthy++
			} else {
				unhealthy++
			}
		}
		if healthy != st.HealthyAllocs || unhealthy != st.UnhealthyAllocs {
			st.HealthyAllocs, st.UnhealthyAllocs = healthy, unhealthy
			d.ModifyIndex = s.next()
		}
		if (st.DesiredCanaries == 0 || st.Promoted) && st.HealthyAllocs >= st.DesiredTotal {
			ix := s.next()
			d.Status = api.DeploymentStatusSuccessful
			d.StatusDescription = descSuccessful
			d.ModifyIndex = ix
			for _, v := range j.versions {
				if *v.Version == d.JobVersion {
					v.Stable = new(true)
					v.ModifyIndex = new(ix)
				}
			}
		}
	}
}
