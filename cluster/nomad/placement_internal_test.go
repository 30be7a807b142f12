package nomad

import (
	"encoding/json"
	"testing"

	"github.com/hashicorp/nomad/api"
)

// Evaluations recorded on a Nomad 1.6.5 dev agent (2 cores, 4890 MHz):
// one allocation of 6000 MHz; four of 2000 MHz (two placed); a task of a
// driver the node lacks (qemu).
const (
	evalCPU       = `{"BlockedEval":"431079cb-5498-109b-578a-83b28f27c6a0","CreateIndex":20,"DeploymentID":"ae720a98-42e9-7fc7-10fd-1eb5cb4aefb6","FailedTGAllocs":{"ufop":{"AllocationTime":74830,"ClassExhausted":null,"ClassFiltered":null,"CoalescedFailures":0,"ConstraintFiltered":null,"DimensionExhausted":{"cpu":1},"NodesAvailable":{"dc1":1},"NodesEvaluated":1,"NodesExhausted":1,"NodesFiltered":0,"NodesInPool":1,"QuotaExhausted":null,"ResourcesExhausted":{"ufop":{"CPU":6000,"Cores":0,"Devices":null,"DiskMB":0,"IOPS":0,"MemoryMB":0,"MemoryMaxMB":0,"Networks":null}},"ScoreMetaData":null,"Scores":null}},"ID":"90a30e1b-ea9d-1c06-db36-9949d99f6d7b","JobID":"ufop-big","JobModifyIndex":20,"ModifyIndex":23,"Namespace":"default","Priority":50,"QueuedAllocations":{"ufop":1},"SnapshotIndex":20,"Status":"complete","TriggeredBy":"job-register","Type":"service"}`
	evalTwoOfFour = `{"BlockedEval":"17879009-c4d4-14c9-52c0-5d0d44e9da2b","CreateIndex":39,"FailedTGAllocs":{"ufop":{"AllocationTime":48370,"ClassExhausted":null,"ClassFiltered":null,"CoalescedFailures":1,"ConstraintFiltered":null,"DimensionExhausted":{"cpu":1},"NodesAvailable":{"dc1":1},"NodesEvaluated":1,"NodesExhausted":1,"NodesFiltered":0,"NodesInPool":1,"QuotaExhausted":null,"ResourcesExhausted":{"ufop":{"CPU":4000}},"ScoreMetaData":null,"Scores":null}},"ID":"216fa444-e862-3038-37fa-f1b8b7519d98","JobID":"ufop-p","QueuedAllocations":{"ufop":2},"Status":"complete","TriggeredBy":"job-register","Type":"service"}`
	evalDriver    = `{"FailedTGAllocs":{"ufop":{"AllocationTime":9669,"ClassExhausted":null,"ClassFiltered":null,"CoalescedFailures":0,"ConstraintFiltered":{"missing drivers":1},"DimensionExhausted":null,"NodesAvailable":{"dc1":1},"NodesEvaluated":1,"NodesExhausted":0,"NodesFiltered":1,"NodesInPool":1,"QuotaExhausted":null,"ResourcesExhausted":null,"ScoreMetaData":null,"Scores":null}},"QueuedAllocations":{"ufop":1},"Status":"complete"}`
)

func TestPlacementReasons(t *testing.T) {
	for _, c := range []struct {
		eval    string
		count   int
		reasons string
	}{
		{evalCPU, 1, "cpu exhausted on 1 node, 1 node evaluated"},
		{evalTwoOfFour, 2, "cpu exhausted on 1 node, 1 node evaluated"},
		{evalDriver, 1, "missing drivers: 1 node filtered out, 1 node evaluated"},
		// Made up: no node in the job's datacenters, and one empty one.
		{`{"FailedTGAllocs":{"ufop":{"CoalescedFailures":2,"NodesAvailable":{"dc2":0}}}}`, 3,
			"no node is eligible (none in the job's datacenters and node pool, or all ineligible), no node available in datacenter dc2"},
		{`{"FailedTGAllocs":{"ufop":{"NodesEvaluated":3,"NodesExhausted":2,"ClassExhausted":{"gpu":2},"ClassFiltered":{"arm":1}}}}`, 1,
			"node class arm filtered out 1 node, node class gpu exhausted on 2 nodes, 3 nodes evaluated"},
	} {
		var ev api.Evaluation
		if err := json.Unmarshal([]byte(c.eval), &ev); err != nil {
			t.Fatal(err)
		}
		if n := unplacedCount(&ev); n != c.count {
			t.Errorf("%.60s: %d unplaced, want %d", c.eval, n, c.count)
		}
		if got := placementReasons(&ev); got != c.reasons {
			t.Errorf("%.60s:\n got %q\nwant %q", c.eval, got, c.reasons)
		}
	}
}
