package nomadfake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/qufop/qufop/cluster/nomad/nomadfake"
)

type exchange struct {
	method, path, body string
	status             int
	ctype              string
	want               string // exact body (transcripts 03, 05, 06)
	readHeaders        bool   // X-Nomad-Knownleader/Lastcontact expected
}

func do(t *testing.T, srv *nomadfake.Server, method, path, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const jobV1 = `{"Job":{"ID":"ufop-demo","Name":"ufop-demo","Type":"service","Meta":{"qufop.version":"1"},
"TaskGroups":[{"Name":"ufop","Count":2,"Update":{"Canary":1,"AutoRevert":true},
"Tasks":[{"Name":"ufop","Driver":"docker","Config":{"image":"demo:v1"}}]}]}}`

const jobV2 = `{"Job":{"ID":"ufop-demo","Name":"ufop-demo","Type":"service","Meta":{"qufop.version":"2"},
"TaskGroups":[{"Name":"ufop","Count":2,"Update":{"Canary":1,"AutoRevert":true},
"Tasks":[{"Name":"ufop","Driver":"docker","Config":{"image":"demo:v2"}}]}]},"PreserveCounts":true}`

func TestTranscriptErrors(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	const text = "text/plain; charset=utf-8"
	steps := []exchange{
		// 06: before anything exists.
		{method: "GET", path: "/v1/job/no-such-job", status: 404, ctype: text, want: "job not found", readHeaders: true},
		{method: "GET", path: "/v1/job/no-such-job/allocations", status: 200, ctype: "application/json", want: "[]", readHeaders: true},
		{method: "GET", path: "/v1/job/no-such-job/deployment", status: 200, ctype: "application/json", want: "null", readHeaders: true},
		{method: "POST", path: "/v1/job/no-such-job/scale", body: `{"Count":2,"Target":{"Group":"ufop"},"Message":"bad job"}`, status: 404, ctype: text, want: `job "no-such-job" not found`},
		{method: "POST", path: "/v1/jobs", body: `{}`, status: 400, ctype: text, want: "Job must be specified"},
		{method: "GET", path: "/v1/allocation/00000000-0000-0000-0000-000000000000", status: 404, ctype: text, want: "alloc not found", readHeaders: true},
		{method: "GET", path: "/v1/deployment/00000000-0000-0000-0000-000000000000", status: 404, ctype: text, want: "deployment not found", readHeaders: true},
		{method: "POST", path: "/v1/deployment/promote/00000000-0000-0000-0000-000000000000", body: `{"DeploymentID":"00000000-0000-0000-0000-000000000000","All":true}`, status: 500, ctype: text, want: "deployment not found"},
		// Register v1, then the scale errors of 06.3–06.7.
		{method: "POST", path: "/v1/jobs", body: jobV1, status: 200, ctype: "application/json"},
		{method: "POST", path: "/v1/job/ufop-demo/scale", body: `{"Count":2,"Target":{"Group":"no-such-group"},"Message":"bad group"}`, status: 400, ctype: text, want: `task group "no-such-group" specified for scaling does not exist in job`},
		{method: "POST", path: "/v1/job/ufop-demo/scale", body: `{"Count":2,"Target":{},"Message":"no group"}`, status: 400, ctype: text, want: "missing task group name for scaling action"},
		{method: "POST", path: "/v1/job/ufop-demo/scale", body: `{"Count":-1,"Target":{"Group":"ufop"}}`, status: 400, ctype: text, want: "scaling action count can't be negative"},
		{method: "POST", path: "/v1/job/ufop-demo/scale", body: `{"Count":2,"Target":`, status: 400, ctype: text, want: "unexpected EOF"},
		{method: "POST", path: "/v1/job/ufop-demo", body: strings.Replace(jobV1, `"ID":"ufop-demo"`, `"ID":"other-id"`, 1), status: 400, ctype: text, want: "Job ID does not match name"},
		// 03.1/03.7: spec v2 with a canary; scaling is blocked; an
		// event-only scale is accepted.
		{method: "POST", path: "/v1/jobs", body: jobV2, status: 200, ctype: "application/json"},
		{method: "POST", path: "/v1/job/ufop-demo/scale", body: `{"Count":4,"Target":{"Group":"ufop"},"Message":"scale during active deployment","Meta":{"by":"transcript"}}`, status: 400, ctype: text, want: "job scaling blocked due to active deployment"},
		{method: "POST", path: "/v1/job/ufop-demo/scale", body: `{"Target":{"Group":"ufop"},"Message":"event only"}`, status: 200, ctype: "application/json"},
		// 05.13: purging a job that does not exist is not an error.
		{method: "DELETE", path: "/v1/job/never-registered?purge=true", status: 200, ctype: "application/json",
			want: `{"EvalCreateIndex":0,"EvalID":"","Index":0,"JobModifyIndex":0,"KnownLeader":false,"LastContact":0,"NextToken":"","VolumeEvalID":"","VolumeEvalIndex":0}`},
	}
	for _, s := range steps {
		resp, body := do(t, srv, s.method, s.path, s.body)
		name := s.method + " " + s.path
		if resp.StatusCode != s.status {
			t.Errorf("%s: status %d, want %d (%s)", name, resp.StatusCode, s.status, body)
		}
		if got := resp.Header.Get("Content-Type"); got != s.ctype {
			t.Errorf("%s: Content-Type %q, want %q", name, got, s.ctype)
		}
		if s.want != "" && body != s.want {
			t.Errorf("%s: body %q, want %q", name, body, s.want)
		}
		if resp.Header.Get("X-Nomad-Index") == "" && (s.readHeaders || s.status == 200) {
			t.Errorf("%s: no X-Nomad-Index", name)
		}
		kl := resp.Header.Get("X-Nomad-Knownleader")
		lc := resp.Header.Get("X-Nomad-Lastcontact")
		if s.readHeaders && (kl != "true" || lc != "0") {
			t.Errorf("%s: Knownleader %q Lastcontact %q, want true 0", name, kl, lc)
		}
		if !s.readHeaders && (kl != "" || lc != "") {
			t.Errorf("%s: write carries Knownleader %q Lastcontact %q", name, kl, lc)
		}
	}
}

func TestTranscriptCanaryPromote(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	do(t, srv, "POST", "/v1/jobs", jobV1)
	do(t, srv, "POST", "/v1/job/ufop-demo/scale", `{"Count":3,"Target":{"Group":"ufop"},"Message":"to 3"}`)
	resp, body := do(t, srv, "POST", "/v1/jobs", jobV2)
	if resp.StatusCode != 200 || !strings.HasPrefix(body, `{"EvalCreateIndex":`) || !strings.Contains(body, `"Warnings":""`) {
		t.Fatalf("register v2: %d %s", resp.StatusCode, body)
	}

	// 03.2: waiting for promotion, keys in alphabetical order, compact.
	_, body = do(t, srv, "GET", "/v1/job/ufop-demo/deployment", "")
	var d struct {
		ID, Status, StatusDescription string
		JobVersion                    uint64
		TaskGroups                    map[string]struct {
			DesiredCanaries, DesiredTotal, HealthyAllocs int
			PlacedCanaries                               []string
			Promoted                                     bool
		}
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	g := d.TaskGroups["ufop"]
	if d.Status != "running" || d.StatusDescription != "Deployment is running but requires manual promotion" ||
		g.DesiredCanaries != 1 || g.DesiredTotal != 3 || g.HealthyAllocs != 1 || len(g.PlacedCanaries) != 1 || g.Promoted {
		t.Fatalf("deployment: %s", body)
	}
	if !strings.HasPrefix(body, `{"CreateIndex":`) || strings.Contains(body, "\n") {
		t.Errorf("not compact/alphabetical: %.60s", body)
	}

	// 03.4: the canary reuses index [0] next to the three old ones.
	var v3, canaries int
	for _, a := range srv.Allocations("ufop-demo") {
		if a.ClientStatus != "running" {
			continue
		}
		if a.DeploymentStatus != nil && a.DeploymentStatus.Canary {
			canaries++
			if a.Name != "ufop-demo.ufop[0]" || a.JobVersion != d.JobVersion {
				t.Errorf("canary %s version %d", a.Name, a.JobVersion)
			}
		} else {
			v3++
		}
	}
	if canaries != 1 || v3 != 3 {
		t.Fatalf("canaries %d old %d", canaries, v3)
	}

	// 03.10: promote.
	resp, body = do(t, srv, "POST", "/v1/deployment/promote/"+d.ID, `{"DeploymentID":"`+d.ID+`","All":true}`)
	if resp.StatusCode != 200 || !strings.HasPrefix(body, `{"DeploymentModifyIndex":`) || !strings.HasSuffix(body, `"RevertedJobVersion":null}`) {
		t.Fatalf("promote: %d %s", resp.StatusCode, body)
	}
	_, body = do(t, srv, "GET", "/v1/deployment/"+d.ID, "")
	if !strings.Contains(body, `"StatusDescription":"Deployment completed successfully"`) {
		t.Errorf("after promotion: %s", body)
	}
	running := 0
	for _, a := range srv.Allocations("ufop-demo") {
		if a.ClientStatus == "running" {
			running++
			if a.JobVersion != d.JobVersion || a.DeploymentStatus.Canary {
				t.Errorf("after promotion: %s v%d canary %v", a.Name, a.JobVersion, a.DeploymentStatus.Canary)
			}
		} else if a.DesiredStatus != "stop" || a.ClientStatus != "complete" {
			t.Errorf("old alloc %s: %s/%s", a.Name, a.DesiredStatus, a.ClientStatus)
		}
	}
	if running != 3 {
		t.Errorf("running %d, want 3", running)
	}
	// 06.16: promoting a terminal deployment.
	resp, body = do(t, srv, "POST", "/v1/deployment/promote/"+d.ID, `{"All":true}`)
	if resp.StatusCode != 500 || body != "can't promote terminal deployment" {
		t.Errorf("promote terminal: %d %q", resp.StatusCode, body)
	}
	// 05.9/05.10: purge, then 404 but allocations still listed.
	resp, _ = do(t, srv, "DELETE", "/v1/job/ufop-demo?purge=true", "")
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	resp, body = do(t, srv, "GET", "/v1/job/ufop-demo", "")
	if resp.StatusCode != 404 || body != "job not found" {
		t.Errorf("after purge: %d %q", resp.StatusCode, body)
	}
	_, body = do(t, srv, "GET", "/v1/job/ufop-demo/allocations", "")
	if body == "[]" {
		t.Error("allocations gone right after the purge")
	}
}
