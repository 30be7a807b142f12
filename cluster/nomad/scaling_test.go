package nomad_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/cluster/nomad"
	"github.com/qufop/qufop/cluster/nomad/nomadfake"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/jobspecs"
)

func scaled(v, count, lo, hi int) cluster.Workload {
	w := workload(v, count)
	w.Scaling = &cluster.Scaling{Min: lo, Max: hi}
	return w
}

// running returns the IDs of the job's allocations that run, sorted.
func running(srv *nomadfake.Server) []string {
	var out []string
	for _, a := range srv.Allocations("ufop-demo") {
		if a.DesiredStatus == api.AllocDesiredStatusRun {
			out = append(out, a.ID)
		}
	}
	slices.Sort(out)
	return out
}

func block(t *testing.T, srv *nomadfake.Server) (count int, sp *api.ScalingPolicy) {
	t.Helper()
	g := srv.Job("ufop-demo").TaskGroups[0]
	return *g.Count, g.Scaling
}

func TestScaleRecordsReasonAndMeta(t *testing.T) {
	srv, o := setup(t)
	ctx := ctxT(t)
	if err := o.Deploy(ctx, workload(1, 1)); err != nil {
		t.Fatal(err)
	}
	meta := map[string]string{"pending": "7", "inFlight": "2", "capacity": "2", "by": "scaler"}
	if err := o.Scale(ctx, "demo", 3, "work 9 over target 3", meta); err != nil {
		t.Fatal(err)
	}
	ev := srv.ScaleEvents("ufop-demo")
	if len(ev) != 1 || ev[0].Message != "qufop: work 9 over target 3" || ev[0].Count == nil || *ev[0].Count != 3 {
		t.Fatalf("events %+v", ev)
	}
	want := map[string]any{"qufop.ufop": "demo", "pending": "7", "inFlight": "2", "capacity": "2", "by": "scaler"}
	if len(ev[0].Meta) != len(want) {
		t.Errorf("meta %v, want %v", ev[0].Meta, want)
	}
	for k, v := range want {
		if ev[0].Meta[k] != v {
			t.Errorf("meta[%s] = %v, want %v", k, ev[0].Meta[k], v)
		}
	}
	// Through the API, as `nomad job scaling-events` shows them.
	c, err := api.NewClient(&api.Config{Address: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := c.Jobs().ScaleStatus("ufop-demo", nil)
	if err != nil {
		t.Fatal(err)
	}
	if e := st.TaskGroups["ufop"].Events; len(e) != 1 || e[0].Meta["pending"] != "7" || e[0].PreviousCount != 1 {
		t.Errorf("scale status events %+v", e)
	}
}

func TestScalingBlockOnNomad(t *testing.T) {
	srv, o := setup(t)
	ctx := ctxT(t)

	// The count is brought into the range; the block is not enabled (for
	// nomad-autoscaler), and Nomad refuses counts outside it all the same.
	if err := o.Deploy(ctx, scaled(1, 5, 1, 3)); err != nil {
		t.Fatal(err)
	}
	n, sp := block(t, srv)
	if n != 3 || sp == nil || *sp.Min != 1 || *sp.Max != 3 || *sp.Enabled {
		t.Fatalf("job: count %d, scaling %+v; want 3 in [1, 3], not enabled", n, sp)
	}
	for _, c := range []struct {
		count int
		want  string
	}{
		{4, "group count was greater than scaling policy maximum: 4 > 3"},
		{0, "group count was less than scaling policy minimum: 0 < 1"},
	} {
		err := o.Scale(ctx, "demo", c.count, "test", nil)
		var e *errs.Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.Contains(e.Msg, c.want) ||
			!strings.Contains(e.Msg, "scaling block") || errors.Is(err, cluster.ErrSkipped) || errors.Is(err, cluster.ErrNotFound) {
			t.Errorf("scale to %d: %v, want a 400 saying %q", c.count, err, c.want)
		}
	}
	if err := o.Scale(ctx, "demo", 2, "test", nil); err != nil {
		t.Fatal(err)
	}

	// The same version with a wider range: the allocations stay.
	before := running(srv)
	if err := o.Deploy(ctx, scaled(1, 1, 1, 5)); err != nil {
		t.Fatal(err)
	}
	n, sp = block(t, srv)
	if after := running(srv); n != 2 || *sp.Max != 5 || !slices.Equal(before, after) {
		t.Errorf("after widening: count %d max %d, allocations %v → %v; want 2, 5, the same", n, *sp.Max, before, after)
	}

	// A range above the count: the count follows it (PreserveCounts would
	// keep 2 under min 4).
	if err := o.Deploy(ctx, scaled(1, 1, 4, 6)); err != nil {
		t.Fatal(err)
	}
	after := running(srv)
	if n, sp = block(t, srv); n != 4 || *sp.Min != 4 || len(after) != 4 {
		t.Errorf("after min 4: count %d, min %d, %d allocations; want 4", n, *sp.Min, len(after))
	}
	for _, id := range before {
		if !slices.Contains(after, id) {
			t.Errorf("allocation %s replaced when the count rose to the new min", id)
		}
	}

	// Policy off: no block, any count again.
	if err := o.Deploy(ctx, workload(1, 1)); err != nil {
		t.Fatal(err)
	}
	if n, sp = block(t, srv); n != 4 || sp != nil {
		t.Errorf("policy off: count %d, scaling %+v; want 4, none", n, sp)
	}
	if err := o.Scale(ctx, "demo", 0, "test", nil); err != nil {
		t.Errorf("scale to 0 without a block: %v", err)
	}

	// An upgrade keeps the count, inside the range.
	if err := o.Deploy(ctx, scaled(1, 1, 0, 2)); err != nil {
		t.Fatal(err)
	}
	if err := o.Scale(ctx, "demo", 2, "test", nil); err != nil {
		t.Fatal(err)
	}
	if err := o.Deploy(ctx, scaled(2, 1, 0, 2)); err != nil {
		t.Fatal(err)
	}
	if got := versions(t, o, "demo"); !equal(got, []int{2, 2}) {
		t.Errorf("after the upgrade: %v, want [2 2]", got)
	}
}

// A Scale between Deploy's read of the job and its registration: the
// registration (EnforceIndex) is refused, Deploy reads the new count and
// registers again.
func TestDeployReadsAgainWhenScaledInBetween(t *testing.T) {
	srv := nomadfake.New()
	t.Cleanup(srv.Close)
	direct, err := api.NewClient(&api.Config{Address: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	var registers, conflicts atomic.Int32
	hc := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodPut && r.URL.Path == "/v1/jobs" && registers.Add(1) == 2 {
			// The scaler wins the race with the second registration.
			n := 3
			if _, _, err := direct.Jobs().Scale("ufop-demo", jobspecs.GroupName, &n, "scaler", false, nil, nil); err != nil {
				t.Errorf("scale in between: %v", err)
			}
		}
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && resp.StatusCode == 500 {
			conflicts.Add(1)
		}
		return resp, err
	})}
	c, err := api.NewClient(&api.Config{Address: srv.URL(), HttpClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	o := nomad.New(c, jobspecs.DefaultOptions())
	ctx := ctxT(t)
	if err := o.Deploy(ctx, scaled(1, 1, 1, 5)); err != nil {
		t.Fatal(err)
	}
	if err := o.Deploy(ctx, scaled(1, 1, 1, 4)); err != nil {
		t.Fatal(err)
	}
	if n, sp := block(t, srv); n != 3 || *sp.Max != 4 {
		t.Errorf("count %d max %d, want the scaler's 3 within the new max 4", n, *sp.Max)
	}
	if conflicts.Load() != 1 || registers.Load() != 3 {
		t.Errorf("%d registrations, %d refused; want 3 and 1", registers.Load(), conflicts.Load())
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
