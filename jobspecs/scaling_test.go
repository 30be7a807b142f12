package jobspecs

import (
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/cluster"
)

func TestScalingBlock(t *testing.T) {
	w := demo()
	if g := mustJob(t, w, DefaultOptions()).TaskGroups[0]; g.Scaling != nil {
		t.Errorf("a workload without a range got a scaling block: %+v", g.Scaling)
	}
	w.Scaling = &cluster.Scaling{Min: 0, Max: 4}
	g := mustJob(t, w, DefaultOptions()).TaskGroups[0]
	sp := g.Scaling
	if sp == nil || *sp.Min != 0 || *sp.Max != 4 || sp.Enabled == nil || *sp.Enabled || sp.Type != api.ScalingPolicyTypeHorizontal || sp.Policy != nil {
		t.Fatalf("scaling block %+v: want min 0, max 4, enabled false (not for nomad-autoscaler), horizontal, no policy", sp)
	}
	// What the Nomad agent does to it first keeps it as rendered.
	job := mustJob(t, w, DefaultOptions())
	job.Canonicalize()
	if sp := job.TaskGroups[0].Scaling; *sp.Min != 0 || *sp.Max != 4 || *sp.Enabled {
		t.Errorf("after Canonicalize: %+v", sp)
	}
}

// The count follows the range: clamped, not refused (a policy set on a
// running UFOP is a range its count moves into). Canaries follow the
// clamped count.
func TestScalingClampsCount(t *testing.T) {
	cases := []struct{ count, lo, hi, want int }{
		{2, 1, 5, 2},
		{7, 1, 5, 5},
		{0, 1, 5, 1},
		{0, 0, 3, 0},
		{3, 3, 3, 3},
	}
	for _, c := range cases {
		w := demo()
		w.Count = c.count
		w.Scaling = &cluster.Scaling{Min: c.lo, Max: c.hi}
		if got := Count(w); got != c.want {
			t.Errorf("Count(%d in [%d, %d]) = %d, want %d", c.count, c.lo, c.hi, got, c.want)
		}
		if g := mustJob(t, w, DefaultOptions()).TaskGroups[0]; *g.Count != c.want {
			t.Errorf("count %d in [%d, %d]: job count %d, want %d", c.count, c.lo, c.hi, *g.Count, c.want)
		}
	}
	w := demo()
	w.Count = 0
	w.Scaling = &cluster.Scaling{Min: 2, Max: 4}
	o := DefaultOptions()
	o.Canary = CanaryAll
	if g := mustJob(t, w, o).TaskGroups[0]; *g.Update.Canary != 2 {
		t.Errorf("CanaryAll with count 0 clamped to 2: canary %d, want 2", *g.Update.Canary)
	}
	if Count(cluster.Workload{Count: 9}) != 9 {
		t.Error("Count without a range changed the count")
	}
}

func TestScalingValidation(t *testing.T) {
	cases := []struct {
		r     cluster.Scaling
		field string
		msg   string
	}{
		{cluster.Scaling{Min: -1, Max: 3}, "Scaling.Min", "got -1"},
		{cluster.Scaling{Min: 0, Max: 0}, "Scaling.Max", "at least 1"},
		{cluster.Scaling{Min: 4, Max: 3}, "Scaling", "min 4 is over max 3"},
	}
	for _, c := range cases {
		w := demo()
		w.Scaling = &c.r
		_, err := UFOPJob(w, DefaultOptions())
		es := Errors(err)
		if len(es) != 1 || es[0].Field != c.field || !strings.Contains(es[0].Msg, c.msg) {
			t.Errorf("range %+v: %v, want %s: …%s…", c.r, err, c.field, c.msg)
		}
	}
}
