package nomad

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// unplacedCount is how many allocations an evaluation could not place:
// Nomad counts them in QueuedAllocations, and its metrics record the
// first failure of a group plus the others "coalesced" into it.
func unplacedCount(ev *api.Evaluation) int {
	n := 0
	for g, m := range ev.FailedTGAllocs {
		if q := ev.QueuedAllocations[g]; q > 0 {
			n += q
		} else if m != nil {
			n += m.CoalescedFailures + 1
		}
	}
	return n
}

// placementReasons says, in words, why Nomad placed nothing on the nodes
// it looked at: the same facts `nomad job run` prints after "failed to
// place", from the metrics of each task group that failed.
func placementReasons(ev *api.Evaluation) string {
	var out []string
	for _, g := range slices.Sorted(maps.Keys(ev.FailedTGAllocs)) {
		if m := ev.FailedTGAllocs[g]; m != nil {
			out = append(out, metricReasons(m)...)
		}
	}
	if len(out) == 0 {
		return "Nomad gave no reason"
	}
	return strings.Join(out, ", ")
}

// metricReasons lists the filters and exhausted resources of one group's
// placement metric, then how many nodes were looked at.
func metricReasons(m *api.AllocationMetric) []string {
	var out []string
	if m.NodesEvaluated == 0 {
		out = append(out, "no node is eligible (none in the job's datacenters and node pool, or all ineligible)")
	}
	for _, dc := range slices.Sorted(maps.Keys(m.NodesAvailable)) {
		if m.NodesAvailable[dc] == 0 {
			out = append(out, "no node available in datacenter "+dc)
		}
	}
	out = append(out, counted(m.ClassFiltered, "node class %s filtered out %s")...)
	out = append(out, counted(m.ConstraintFiltered, "%s: %s filtered out")...)
	out = append(out, counted(m.DimensionExhausted, "%s exhausted on %s")...)
	out = append(out, counted(m.ClassExhausted, "node class %s exhausted on %s")...)
	for _, q := range m.QuotaExhausted {
		out = append(out, "quota exhausted: "+q)
	}
	if len(out) == 0 && m.NodesExhausted > 0 {
		out = append(out, "resources exhausted on "+plural(m.NodesExhausted, "node"))
	}
	if m.NodesEvaluated > 0 {
		out = append(out, fmt.Sprintf("%s evaluated", plural(m.NodesEvaluated, "node")))
	}
	return out
}

// counted formats each key of a metric map with its node count, in key
// order.
func counted(byKey map[string]int, format string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		out = append(out, fmt.Sprintf(format, k, plural(byKey[k], "node")))
	}
	return out
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
