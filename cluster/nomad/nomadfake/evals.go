package nomadfake

import (
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Evaluations and placement on the fake's one client node, as recorded on
// a Nomad 1.6.5 dev agent: every write the scheduler acts on (register,
// scale, stop, promote, fail) creates an evaluation; an allocation that
// does not fit the node is not placed, and the completed evaluation lists
// why in FailedTGAllocs, counts it in QueuedAllocations and points at a
// new "blocked" evaluation that waits for capacity (BlockedEval).

// The node every allocation is placed on.
const (
	NodeID      = "00000000-0000-4000-8000-000000000001"
	NodeName    = "fake"
	NodeAddress = "127.0.0.1"
	datacenter  = "dc1"
)

// Nomad's default dynamic port range (client min_dynamic_port and
// max_dynamic_port).
const (
	minDynamicPort = 20000
	maxDynamicPort = 32000
)

// Texts of blocked evaluations and of the driver check (Nomad 1.6.5).
const (
	descBlockedEval = "created to place remaining allocations"
	missingDrivers  = "missing drivers"
)

// eval is an evaluation and what it found, which GET shows once it is
// complete.
type eval struct {
	ev     api.Evaluation
	doneAt time.Time
	failed map[string]*api.AllocationMetric // by task group
	queued map[string]int                   // allocations not placed, by task group
}

// SetNodeResources sets the CPU (MHz) and memory (MB) the node offers to
// allocations; 0, the default, is unlimited.
func (s *Server) SetNodeResources(cpuMHz, memoryMB int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.capacity = demand{cpu: cpuMHz, memory: memoryMB}
}

// SetNodeDrivers sets the task drivers the node has (default: docker and
// exec); a task of another driver is not placed ("missing drivers").
func (s *Server) SetNodeDrivers(drivers ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drivers = append([]string(nil), drivers...)
}

// SetEvalDelay keeps new evaluations pending for d before they complete
// (0, the default: complete at once), as the scheduler takes a moment on a
// real cluster. Placements are made at once either way.
func (s *Server) SetEvalDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evalDelay = d
}

// evaluate runs place, the scheduler's work for a write to job v at index
// ix, under a new evaluation: placements that do not fit are recorded in
// it.
func (s *Server) evaluate(v *api.Job, trigger string, ix uint64, place func()) *eval {
	now := s.now()
	e := &eval{
		ev: api.Evaluation{
			ID: uuid(), Namespace: "default", Priority: 50, Type: *v.Type, TriggeredBy: trigger,
			JobID: *v.ID, JobModifyIndex: *v.JobModifyIndex, Status: api.EvalStatusPending,
			SnapshotIndex: ix, CreateIndex: ix, ModifyIndex: ix, CreateTime: now.UnixNano(), ModifyTime: now.UnixNano(),
		},
		doneAt: now.Add(s.evalDelay),
		failed: map[string]*api.AllocationMetric{},
		queued: map[string]int{},
	}
	for _, g := range v.TaskGroups {
		e.queued[*g.Name] = 0
	}
	s.evals[e.ev.ID] = e
	s.evaluating = e
	place()
	s.evaluating = nil
	if !e.doneAt.After(now) {
		s.complete(e)
	}
	return e
}

// complete shows what e found and, when something was not placed, creates
// the blocked evaluation that waits for capacity.
func (s *Server) complete(e *eval) {
	e.ev.Status = api.EvalStatusComplete
	e.ev.QueuedAllocations = e.queued
	if j := s.jobs[e.ev.JobID]; j != nil {
		if d := j.activeDeployment(); d != nil {
			e.ev.DeploymentID = d.ID
		}
	}
	if len(e.failed) > 0 {
		e.ev.FailedTGAllocs = e.failed
		e.ev.BlockedEval = s.blockedEval(e).ev.ID
	}
	e.ev.ModifyIndex = s.next()
	e.ev.ModifyTime = s.now().UnixNano()
}

// blockedEval creates the blocked evaluation that follows e, replacing an
// older one of the same job (Nomad keeps one per job).
func (s *Server) blockedEval(e *eval) *eval {
	ix := s.next()
	for _, old := range s.evals {
		if old.ev.JobID == e.ev.JobID && old.ev.Status == api.EvalStatusBlocked {
			old.ev.Status = api.EvalStatusCancelled
			old.ev.ModifyIndex = ix
		}
	}
	b := &eval{ev: e.ev}
	b.ev.ID, b.ev.PreviousEval, b.ev.BlockedEval, b.ev.DeploymentID = uuid(), e.ev.ID, "", ""
	b.ev.Status, b.ev.StatusDescription, b.ev.TriggeredBy = api.EvalStatusBlocked, descBlockedEval, "queued-allocs"
	b.ev.FailedTGAllocs = maps.Clone(e.failed)
	b.ev.QueuedAllocations = nil
	b.ev.ClassEligibility = map[string]bool{"v1:fake": true}
	b.ev.CreateIndex, b.ev.ModifyIndex = ix, ix
	s.evals[b.ev.ID] = b
	return b
}

// demand is what an allocation takes from the node.
type demand struct{ cpu, memory int }

func groupDemand(v *api.Job) (d demand, driver string) {
	for _, t := range v.TaskGroups[0].Tasks {
		driver = t.Driver
		if t.Resources != nil && t.Resources.CPU != nil {
			d.cpu += *t.Resources.CPU
		}
		if t.Resources != nil && t.Resources.MemoryMB != nil {
			d.memory += *t.Resources.MemoryMB
		}
	}
	return d, driver
}

// used is what the live allocations of every job take.
func (s *Server) used() demand {
	var u demand
	for _, j := range s.jobs {
		for _, a := range j.allocs {
			if a.live() {
				u.cpu += a.demand.cpu
				u.memory += a.demand.memory
			}
		}
	}
	return u
}

// misfit says why an allocation of d with driver cannot be placed: the
// constraint that filtered the node out, or the resource dimension it
// exhausted; both empty when it fits.
func (s *Server) misfit(d demand, driver string) (constraint, dimension string) {
	if !slices.Contains(s.drivers, driver) {
		return missingDrivers, ""
	}
	u := s.used()
	switch {
	case s.capacity.cpu > 0 && u.cpu+d.cpu > s.capacity.cpu:
		return "", "cpu"
	case s.capacity.memory > 0 && u.memory+d.memory > s.capacity.memory:
		return "", "memory"
	}
	return "", ""
}

// unplaced records in the current evaluation an allocation of group that
// was not placed: the first one sets the metric, the others are
// "coalesced" into it, and the exhausted resource adds up.
func (s *Server) unplaced(group, task string, d demand, constraint, dimension string) {
	e := s.evaluating
	if e == nil {
		return
	}
	e.queued[group]++
	m := e.failed[group]
	if m == nil {
		m = &api.AllocationMetric{NodesEvaluated: 1, NodesInPool: 1, NodesAvailable: map[string]int{datacenter: 1}}
		if constraint != "" {
			m.NodesFiltered = 1
			m.ConstraintFiltered = map[string]int{constraint: 1}
		} else {
			m.NodesExhausted = 1
			m.DimensionExhausted = map[string]int{dimension: 1}
			m.ResourcesExhausted = map[string]*api.Resources{task: {CPU: new(0), MemoryMB: new(0)}}
		}
		e.failed[group] = m
	} else {
		m.CoalescedFailures++
	}
	if r := m.ResourcesExhausted[task]; r != nil {
		switch dimension {
		case "cpu":
			*r.CPU += d.cpu
		case "memory":
			*r.MemoryMB += d.memory
		}
	}
}

// assignPorts gives each dynamic port of v's group a free port of the
// node's range, as the scheduler does.
func (s *Server) assignPorts(v *api.Job) []api.PortMapping {
	inUse := map[int]bool{}
	for _, j := range s.jobs {
		for _, a := range j.allocs {
			for _, p := range a.ports {
				if a.live() {
					inUse[p.Value] = true
				}
			}
		}
	}
	var out []api.PortMapping
	for _, n := range v.TaskGroups[0].Networks {
		for _, p := range n.DynamicPorts {
			port := minDynamicPort + rand.IntN(maxDynamicPort-minDynamicPort+1)
			for inUse[port] {
				port = minDynamicPort + rand.IntN(maxDynamicPort-minDynamicPort+1)
			}
			inUse[port] = true
			out = append(out, api.PortMapping{Label: p.Label, Value: port, To: p.To, HostIP: NodeAddress})
		}
	}
	return out
}

// allocatedResources is an allocation's AllocatedResources: in the full
// allocation only (the list stubs of /v1/job/<id>/allocations have none).
func (a *alloc) allocatedResources(task string) *api.AllocatedResources {
	net := &api.NetworkResource{IP: NodeAddress}
	for _, p := range a.ports {
		net.DynamicPorts = append(net.DynamicPorts, api.Port{Label: p.Label, Value: p.Value, To: p.To, HostNetwork: "default"})
	}
	return &api.AllocatedResources{
		Tasks: map[string]*api.AllocatedTaskResources{task: {
			Cpu:    api.AllocatedCpuResources{CpuShares: int64(a.demand.cpu)},
			Memory: api.AllocatedMemoryResources{MemoryMB: int64(a.demand.memory)},
		}},
		Shared: api.AllocatedSharedResources{DiskMB: 300, Networks: []*api.NetworkResource{net}, Ports: a.ports},
	}
}

func (s *Server) getEval(w http.ResponseWriter, id string) {
	e := s.evals[id]
	if e == nil {
		s.readErr(w, http.StatusNotFound, "eval not found")
		return
	}
	s.readOK(w, e.ev)
}

// listEvals answers /v1/job/<id>/evaluations, newest first.
func (s *Server) listEvals(w http.ResponseWriter, jobID string) {
	out := []api.Evaluation{}
	for _, e := range s.evals {
		if e.ev.JobID == jobID {
			out = append(out, e.ev)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].CreateIndex > out[b].CreateIndex })
	s.readOK(w, out)
}

// getNode answers /v1/node/<id>. The api client looks the node up to read
// an allocation's logs from it directly (its HTTPAddr, this server).
func (s *Server) getNode(w http.ResponseWriter, id string) {
	if id != NodeID {
		s.readErr(w, http.StatusNotFound, "node not found")
		return
	}
	u, _ := url.Parse(s.srv.URL)
	drivers := map[string]*api.DriverInfo{}
	for _, d := range s.drivers {
		drivers[d] = &api.DriverInfo{Detected: true, Healthy: true, HealthDescription: "Healthy", Attributes: map[string]string{"driver." + d: "true"}}
	}
	s.readOK(w, api.Node{
		ID: NodeID, Name: NodeName, Datacenter: datacenter, NodePool: "default", HTTPAddr: u.Host,
		Status: "ready", SchedulingEligibility: "eligible", Drivers: drivers,
		NodeResources: &api.NodeResources{
			Cpu:            api.NodeCpuResources{CpuShares: int64(s.capacity.cpu)},
			Memory:         api.NodeMemoryResources{MemoryMB: int64(s.capacity.memory)},
			MinDynamicPort: minDynamicPort, MaxDynamicPort: maxDynamicPort,
		},
		CreateIndex: s.nodeIndex, ModifyIndex: s.nodeIndex,
	})
}
