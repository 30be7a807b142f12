package nomadfake_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/cluster/nomad/nomadfake"
)

// jobRes is jobV1 with count n, CPU and memory per allocation and a
// dynamic port "http" mapped to 9100.
func jobRes(n, cpu, mem int) string {
	return strings.NewReplacer(
		`"Count":2`, `"Count":`+strconv.Itoa(n),
		`"Config":{"image":"demo:v1"}`, `"Config":{"image":"demo:v1"},"Resources":{"CPU":`+strconv.Itoa(cpu)+`,"MemoryMB":`+strconv.Itoa(mem)+`}`,
		`"Tasks":`, `"Networks":[{"DynamicPorts":[{"Label":"http","To":9100}]}],"Tasks":`,
	).Replace(jobV1)
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%v: %.200s", err, body)
	}
	return v
}

// register posts job and returns the evaluation the response names.
func register(t *testing.T, srv *nomadfake.Server, job string) api.Evaluation {
	t.Helper()
	resp, body := do(t, srv, "POST", "/v1/jobs", job)
	if resp.StatusCode != 200 {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	r := decode[api.JobRegisterResponse](t, body)
	if r.EvalID == "" {
		t.Fatalf("register: no EvalID in %s", body)
	}
	_, body = do(t, srv, "GET", "/v1/evaluation/"+r.EvalID, "")
	return decode[api.Evaluation](t, body)
}

func TestPlacementCPUExhausted(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	srv.SetNodeResources(2500, 0)
	ev := register(t, srv, jobRes(4, 1000, 64))

	// As recorded on Nomad 1.6.5 (count 4 of 2000 MHz on a 4890 MHz node).
	m := ev.FailedTGAllocs["ufop"]
	if ev.Status != "complete" || ev.TriggeredBy != "job-register" || m == nil {
		t.Fatalf("evaluation %+v", ev)
	}
	if m.NodesEvaluated != 1 || m.NodesExhausted != 1 || m.DimensionExhausted["cpu"] != 1 || m.CoalescedFailures != 1 ||
		*m.ResourcesExhausted["ufop"].CPU != 2000 || ev.QueuedAllocations["ufop"] != 2 {
		t.Errorf("metric %+v, queued %v", m, ev.QueuedAllocations)
	}
	if n := len(srv.Allocations("ufop-demo")); n != 2 {
		t.Errorf("%d allocations placed, want 2", n)
	}
	_, body := do(t, srv, "GET", "/v1/evaluation/"+ev.BlockedEval, "")
	b := decode[api.Evaluation](t, body)
	if b.Status != "blocked" || b.PreviousEval != ev.ID || b.TriggeredBy != "queued-allocs" || b.FailedTGAllocs["ufop"] == nil {
		t.Errorf("blocked evaluation %+v", b)
	}
	// The deployment was created all the same, and waits.
	_, body = do(t, srv, "GET", "/v1/job/ufop-demo/deployment", "")
	if d := decode[api.Deployment](t, body); d.Status != "running" || ev.DeploymentID != d.ID {
		t.Errorf("deployment %s %s, evaluation's %s", d.ID, d.Status, ev.DeploymentID)
	}
}

func TestPlacementMemoryAndDriver(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	srv.SetNodeResources(0, 100)
	ev := register(t, srv, jobRes(1, 100, 128))
	if m := ev.FailedTGAllocs["ufop"]; m == nil || m.DimensionExhausted["memory"] != 1 || *m.ResourcesExhausted["ufop"].MemoryMB != 128 {
		t.Errorf("memory: %+v", m)
	}

	srv = nomadfake.New()
	defer srv.Close()
	srv.SetNodeDrivers("exec")
	ev = register(t, srv, jobRes(1, 100, 64))
	m := ev.FailedTGAllocs["ufop"]
	if m == nil || m.ConstraintFiltered["missing drivers"] != 1 || m.NodesFiltered != 1 || m.NodesExhausted != 0 {
		t.Errorf("driver: %+v", m)
	}
	if n := len(srv.Allocations("ufop-demo")); n != 0 {
		t.Errorf("%d allocations placed without the driver", n)
	}
}

func TestEvaluationPendingThenComplete(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	srv.SetEvalDelay(200 * time.Millisecond)
	ev := register(t, srv, jobRes(1, 100, 64))
	if ev.Status != "pending" || ev.FailedTGAllocs != nil {
		t.Fatalf("right after the write: %s", ev.Status)
	}
	// A blocking query on it is released when it completes.
	resp, body := do(t, srv, "GET", "/v1/evaluation/"+ev.ID+"?index="+strconv.FormatUint(ev.ModifyIndex, 10)+"&wait=5s", "")
	if done := decode[api.Evaluation](t, body); done.Status != "complete" || resp.Header.Get("X-Nomad-Index") == strconv.FormatUint(ev.ModifyIndex, 10) {
		t.Errorf("after blocking: %s, index %s", done.Status, resp.Header.Get("X-Nomad-Index"))
	}
}

// Allocations get dynamic ports on the node's address, shown in the full
// allocation only (transcript 01.5 and 01.8).
func TestAllocationPorts(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	register(t, srv, jobRes(3, 100, 64))
	_, body := do(t, srv, "GET", "/v1/job/ufop-demo/allocations", "")
	if strings.Contains(body, "AllocatedResources") {
		t.Errorf("list stubs carry AllocatedResources: %.300s", body)
	}
	seen := map[int]bool{}
	for _, stub := range srv.Allocations("ufop-demo") {
		_, body := do(t, srv, "GET", "/v1/allocation/"+stub.ID, "")
		a := decode[api.Allocation](t, body)
		ports := a.AllocatedResources.Shared.Ports
		if len(ports) != 1 || ports[0].Label != "http" || ports[0].To != 9100 || ports[0].HostIP != nomadfake.NodeAddress ||
			ports[0].Value < 20000 || ports[0].Value > 32000 || seen[ports[0].Value] {
			t.Errorf("%s ports %+v", a.Name, ports)
		}
		if len(ports) == 1 {
			seen[ports[0].Value] = true
		}
		if a.NodeID != nomadfake.NodeID || a.AllocatedResources.Tasks["ufop"].Cpu.CpuShares != 100 {
			t.Errorf("%s node %s resources %+v", a.Name, a.NodeID, a.AllocatedResources.Tasks["ufop"])
		}
	}
	// The node the api client reads logs from.
	_, body = do(t, srv, "GET", "/v1/node/"+nomadfake.NodeID, "")
	if n := decode[api.Node](t, body); n.HTTPAddr != strings.TrimPrefix(srv.URL(), "http://") || n.Status != "ready" {
		t.Errorf("node %s %s", n.HTTPAddr, n.Status)
	}
}

// Registering the same job again evaluates it again: what did not fit
// before is placed once there is room.
func TestReregisterPlacesWhatIsMissing(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	srv.SetNodeResources(1500, 0)
	if ev := register(t, srv, jobRes(2, 1000, 64)); ev.QueuedAllocations["ufop"] != 1 {
		t.Fatalf("queued %v, want 1", ev.QueuedAllocations)
	}
	srv.SetNodeResources(0, 0)
	ev := register(t, srv, jobRes(2, 1000, 64))
	if ev.FailedTGAllocs != nil || ev.QueuedAllocations["ufop"] != 0 {
		t.Errorf("second evaluation: failed %v, queued %v", ev.FailedTGAllocs, ev.QueuedAllocations)
	}
	if n := len(srv.Allocations("ufop-demo")); n != 2 {
		t.Errorf("%d allocations, want 2", n)
	}
}

func TestListJobs(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	register(t, srv, jobRes(1, 100, 64))
	register(t, srv, strings.ReplaceAll(jobRes(1, 100, 64), "ufop-demo", "other"))
	_, body := do(t, srv, "GET", "/v1/jobs?prefix=ufop-", "")
	jobs := decode[[]api.JobListStub](t, body)
	if len(jobs) != 1 || jobs[0].ID != "ufop-demo" || jobs[0].Status != "running" || jobs[0].Meta["qufop.version"] != "1" {
		t.Errorf("jobs %+v", jobs)
	}
}
