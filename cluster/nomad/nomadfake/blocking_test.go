package nomadfake_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qufop/qufop/cluster/nomad/nomadfake"
)

// get sends GET path and returns the response with its X-Nomad-Index, its
// body and how long it took.
func get(t *testing.T, srv *nomadfake.Server, path string) (*http.Response, uint64, string, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, body := do(t, srv, "GET", path, "")
	took := time.Since(start)
	ix, err := strconv.ParseUint(resp.Header.Get("X-Nomad-Index"), 10, 64)
	if err != nil && resp.StatusCode == 200 {
		t.Fatalf("GET %s: X-Nomad-Index %q", path, resp.Header.Get("X-Nomad-Index"))
	}
	return resp, ix, body, took
}

func TestBlockingQueryTimesOutWithSameIndex(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	do(t, srv, "POST", "/v1/jobs", jobV1)
	_, ix, body, _ := get(t, srv, "/v1/job/ufop-demo/allocations")

	// 06b.2: no change: held for the wait, then the same index and body.
	_, ix2, body2, took := get(t, srv, "/v1/job/ufop-demo/allocations?index="+strconv.FormatUint(ix, 10)+"&wait=300ms")
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("held %v, want the wait (300ms, plus up to 1/16)", took)
	}
	if ix2 != ix || body2 != body {
		t.Errorf("after the wait: index %d (was %d), body changed %v", ix2, ix, body2 != body)
	}
	// 06b.3: an older index answers at once.
	_, ix3, _, took := get(t, srv, "/v1/job/ufop-demo/allocations?index="+strconv.FormatUint(ix-1, 10)+"&wait=5s")
	if took > time.Second || ix3 != ix {
		t.Errorf("stale index: %v, index %d, want at once and %d", took, ix3, ix)
	}
}

func TestBlockingQueryReturnsOnChange(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	do(t, srv, "POST", "/v1/jobs", jobV1)
	_, ix, _, _ := get(t, srv, "/v1/job/ufop-demo/allocations")

	type answer struct {
		ix   uint64
		body string
		took time.Duration
	}
	done := make(chan answer, 1)
	go func() {
		_, ix2, body, took := get(t, srv, "/v1/job/ufop-demo/allocations?index="+strconv.FormatUint(ix, 10)+"&wait=10s")
		done <- answer{ix2, body, took}
	}()
	time.Sleep(100 * time.Millisecond)
	// 06b.4: a scale releases the query with a higher index.
	if resp, body := do(t, srv, "POST", "/v1/job/ufop-demo/scale", `{"Count":1,"Target":{"Group":"ufop"}}`); resp.StatusCode != 200 {
		t.Fatalf("scale: %d %s", resp.StatusCode, body)
	}
	a := <-done
	if a.took > 5*time.Second || a.ix <= ix {
		t.Fatalf("released after %v with index %d (was %d)", a.took, a.ix, ix)
	}
	if n := strings.Count(a.body, `"DesiredStatus":"stop"`); n != 1 {
		t.Errorf("released body has %d stopping allocations, want 1", n)
	}
}

// A query waits on its own table: a change elsewhere does not release it,
// and a change that comes with time (an allocation starting) does. The job
// has no update block: with a deployment, its success would mark the job
// version stable, a change of the job too.
func TestBlockingQueryPerTable(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	srv.SetHealthDelay(300 * time.Millisecond)
	do(t, srv, "POST", "/v1/jobs", strings.Replace(jobV1, `"Update":{"Canary":1,"AutoRevert":true},`, "", 1))
	_, jobIx, _, _ := get(t, srv, "/v1/job/ufop-demo")
	_, allocIx, _, _ := get(t, srv, "/v1/job/ufop-demo/allocations")

	allocs := make(chan time.Duration, 1)
	go func() {
		_, ix, body, took := get(t, srv, "/v1/job/ufop-demo/allocations?index="+strconv.FormatUint(allocIx, 10)+"&wait=10s")
		if ix <= allocIx || strings.Count(body, `"ClientStatus":"running"`) == 0 {
			t.Errorf("allocations released with index %d (was %d), body %.200s", ix, allocIx, body)
		}
		allocs <- took
	}()
	_, ix, _, took := get(t, srv, "/v1/job/ufop-demo?index="+strconv.FormatUint(jobIx, 10)+"&wait=800ms")
	if ix != jobIx || took < 800*time.Millisecond {
		t.Errorf("job query: index %d after %v, want %d after the whole wait: the allocations' change is not the job's", ix, took, jobIx)
	}
	if took := <-allocs; took < 250*time.Millisecond || took > 3*time.Second {
		t.Errorf("allocations query released after %v, want when they start (300ms)", took)
	}
}

func TestBlockingQueryBadParameters(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	for path, want := range map[string]string{
		"/v1/job/x/allocations?index=abc":         "Invalid index",
		"/v1/job/x/allocations?index=1&wait=abc":  "Invalid wait time",
		"/v1/evaluation/x?index=1&wait=5":         "Invalid wait time",
		"/v1/deployment/x?index=-1&wait=1s":       "Invalid index",
		"/v1/job/x/deployment?index=1.5&wait=10s": "Invalid index",
	} {
		resp, body := do(t, srv, "GET", path, "")
		if resp.StatusCode != 400 || body != want {
			t.Errorf("GET %s: %d %q, want 400 %q", path, resp.StatusCode, body, want)
		}
	}
}
