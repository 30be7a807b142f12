package nomadfake_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/cluster/nomad/nomadfake"
)

// jobScaling is ufop-demo at count with the scaling block sb (JSON, "" for
// none), no update block (no deployment to wait for).
func jobScaling(count, sb string, preserve bool) string {
	scaling := ""
	if sb != "" {
		scaling = `,"Scaling":` + sb
	}
	tail := "}"
	if preserve {
		tail = `,"PreserveCounts":true}`
	}
	return `{"Job":{"ID":"ufop-demo","Name":"ufop-demo","Type":"service",
"TaskGroups":[{"Name":"ufop","Count":` + count + scaling + `,
"Tasks":[{"Name":"ufop","Driver":"docker","Config":{"image":"demo:v1"}}]}]}` + tail
}

// Bodies recorded on Nomad 1.6.5 (a dev agent; the api client trims the
// trailing newlines when it reports them).
const (
	errCountOverMax = "1 error occurred:\n\t* Task group ufop validation failed: 1 error occurred:\n\t* Task group scaling policy validation failed: 1 error occurred:\n\t* Scaling policy invalid: task group count must not be greater than maximum count in scaling policy\n\n\n\n\n\n"
	errMinOverMax   = "1 error occurred:\n\t* Task group ufop validation failed: 1 error occurred:\n\t* Task group scaling policy validation failed: 2 errors occurred:\n\t* Scaling policy invalid: maximum count must not be less than minimum count\n\t* Scaling policy invalid: task group count must not be less than minimum count in scaling policy\n\n\n\n\n\n"
	errNoMax        = "1 error occurred:\n\t* Task group ufop validation failed: 1 error occurred:\n\t* Task group scaling policy validation failed: 2 errors occurred:\n\t* Scaling policy invalid: maximum count must be specified and non-negative\n\t* Scaling policy invalid: task group count must not be greater than maximum count in scaling policy\n\n\n\n\n\n"
)

func TestScalingBlock(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	const text = "text/plain; charset=utf-8"
	steps := []exchange{
		{method: "POST", path: "/v1/jobs", body: jobScaling("9", `{"Min":4,"Max":6}`, false), status: 500, ctype: text, want: errCountOverMax},
		{method: "POST", path: "/v1/jobs", body: jobScaling("5", `{"Min":7,"Max":6}`, false), status: 500, ctype: text, want: errMinOverMax},
		{method: "POST", path: "/v1/jobs", body: jobScaling("1", `{"Min":1}`, false), status: 500, ctype: text, want: errNoMax},
		// Min and Enabled left out: Nomad fills them in (min = the count).
		{method: "POST", path: "/v1/jobs", body: jobScaling("1", `{"Max":3}`, false), status: 200, ctype: "application/json"},
	}
	for _, st := range steps {
		resp, body := do(t, srv, st.method, st.path, st.body)
		if resp.StatusCode != st.status || resp.Header.Get("Content-Type") != st.ctype || (st.want != "" && body != st.want) {
			t.Errorf("%s %s: %d %q %q, want %d %q %q", st.method, st.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, st.status, st.ctype, st.want)
		}
	}
	j := srv.Job("ufop-demo")
	sp := j.TaskGroups[0].Scaling
	if sp == nil || *sp.Min != 1 || *sp.Max != 3 || !*sp.Enabled || sp.Type != "horizontal" || sp.ID == "" ||
		sp.Target["Job"] != "ufop-demo" || sp.Target["Group"] != "ufop" || sp.Target["Namespace"] != "default" {
		t.Fatalf("stored block %+v", sp)
	}
	id, created := sp.ID, sp.CreateIndex

	// Outside the block: refused, whether enabled or not; nothing recorded.
	for _, c := range []struct{ count, want string }{
		{"4", "group count was greater than scaling policy maximum: 4 > 3"},
		{"0", "group count was less than scaling policy minimum: 0 < 1"},
	} {
		resp, body := do(t, srv, "POST", "/v1/job/ufop-demo/scale", `{"Count":`+c.count+`,"Target":{"Group":"ufop"},"Message":"x"}`)
		if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != text || body != c.want {
			t.Errorf("scale %s: %d %q, want 400 %q", c.count, resp.StatusCode, body, c.want)
		}
	}
	if ev := srv.ScaleEvents("ufop-demo"); len(ev) != 0 {
		t.Errorf("refused scales recorded: %+v", ev)
	}

	// Inside: accepted, with its meta; an event-only request too.
	if resp, body := do(t, srv, "POST", "/v1/job/ufop-demo/scale", `{"Count":3,"Target":{"Group":"ufop"},"Message":"up","Meta":{"pending":12,"by":"scaler"}}`); resp.StatusCode != 200 {
		t.Fatalf("scale 3: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, srv, "POST", "/v1/job/ufop-demo/scale", `{"Target":{"Group":"ufop"},"Message":"note","Meta":{"n":1}}`); resp.StatusCode != 200 {
		t.Fatalf("event only: %d %s", resp.StatusCode, body)
	}
	resp, body := do(t, srv, "GET", "/v1/job/ufop-demo/scale", "")
	var st api.JobScaleStatusResponse
	if err := json.Unmarshal([]byte(body), &st); err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Nomad-Index") == "" {
		t.Fatalf("GET scale: %d %q %v", resp.StatusCode, body, err)
	}
	g := st.TaskGroups["ufop"]
	if st.JobID != "ufop-demo" || g.Desired != 3 || len(g.Events) != 2 {
		t.Fatalf("scale status %+v", st)
	}
	note, up := g.Events[0], g.Events[1] // newest first
	if note.Count != nil || note.EvalID != nil || note.PreviousCount != 3 || note.Message != "note" || note.Meta["n"] != 1.0 {
		t.Errorf("event-only event %+v", note)
	}
	if up.Count == nil || *up.Count != 3 || up.PreviousCount != 1 || up.EvalID == nil || up.Message != "up" ||
		up.Meta["pending"] != 12.0 || up.Meta["by"] != "scaler" {
		t.Errorf("scale event %+v", up)
	}

	// A new range with PreserveCounts keeps a count the range excludes
	// (Nomad validates before it preserves); the block keeps its ID.
	if resp, body := do(t, srv, "POST", "/v1/jobs", jobScaling("4", `{"Min":4,"Max":6,"Enabled":false}`, true)); resp.StatusCode != 200 {
		t.Fatalf("register with PreserveCounts: %d %s", resp.StatusCode, body)
	}
	j = srv.Job("ufop-demo")
	sp = j.TaskGroups[0].Scaling
	if *j.TaskGroups[0].Count != 3 || *sp.Min != 4 || *sp.Enabled || sp.ID != id || sp.CreateIndex != created || sp.ModifyIndex == created {
		t.Errorf("after a new range with PreserveCounts: count %d, block %+v (ID was %s)", *j.TaskGroups[0].Count, sp, id)
	}
	// The count under min can only go up.
	if resp, body := do(t, srv, "POST", "/v1/job/ufop-demo/scale", `{"Count":3,"Target":{"Group":"ufop"}}`); resp.StatusCode != 400 || body != "group count was less than scaling policy minimum: 3 < 4" {
		t.Errorf("scale to the current count under min: %d %q", resp.StatusCode, body)
	}
}

// A change of the scaling block alone updates the allocations in place (no
// canary, none replaced), as on Nomad 1.6.5; and a range check comes before
// the check for an active deployment.
func TestScalingBlockChangeInPlace(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	withUpdate := func(sb string) string {
		return strings.Replace(jobScaling("2", sb, false), `"Tasks"`, `"Update":{"Canary":1,"AutoRevert":true},"Tasks"`, 1)
	}
	if resp, body := do(t, srv, "POST", "/v1/jobs", withUpdate(`{"Min":1,"Max":3,"Enabled":false}`)); resp.StatusCode != 200 {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	before := live(srv)
	if resp, body := do(t, srv, "POST", "/v1/jobs", withUpdate(`{"Min":1,"Max":5,"Enabled":false}`)); resp.StatusCode != 200 {
		t.Fatalf("register the new range: %d %s", resp.StatusCode, body)
	}
	after := live(srv)
	if strings.Join(before, ",") != strings.Join(after, ",") || len(after) != 2 {
		t.Errorf("allocations %v became %v: want the same", before, after)
	}
	for _, a := range srv.Allocations("ufop-demo") {
		if a.DeploymentStatus != nil && a.DeploymentStatus.Canary {
			t.Errorf("canary %s placed for a scaling block change", a.Name)
		}
	}
	if v := *srv.Job("ufop-demo").Version; v != 1 {
		t.Errorf("job version %d, want 1 (a new version)", v)
	}
	// An image change is a deployment with a canary; during it, a count
	// outside the range is refused as such, one inside is skipped.
	if resp, body := do(t, srv, "POST", "/v1/jobs", strings.Replace(withUpdate(`{"Min":1,"Max":5,"Enabled":false}`), "demo:v1", "demo:v2", 1)); resp.StatusCode != 200 {
		t.Fatalf("register v2: %d %s", resp.StatusCode, body)
	}
	if _, body := do(t, srv, "POST", "/v1/job/ufop-demo/scale", `{"Count":6,"Target":{"Group":"ufop"}}`); body != "group count was greater than scaling policy maximum: 6 > 5" {
		t.Errorf("scale 6 during the deployment: %q", body)
	}
	if _, body := do(t, srv, "POST", "/v1/job/ufop-demo/scale", `{"Count":4,"Target":{"Group":"ufop"}}`); body != nomadfake.ErrScaleBlocked {
		t.Errorf("scale 4 during the deployment: %q", body)
	}
}

// live returns the IDs of the allocations that run, sorted.
func live(srv *nomadfake.Server) []string {
	var out []string
	for _, a := range srv.Allocations("ufop-demo") {
		if a.DesiredStatus == api.AllocDesiredStatusRun {
			out = append(out, a.ID)
		}
	}
	slices.Sort(out)
	return out
}
