package nomadfake_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qufop/qufop/cluster/nomad/nomadfake"
)

type frame struct {
	Data   []byte
	File   string
	Offset int64
}

// frames decodes a framed log stream (JSON objects with no separator).
func frames(t *testing.T, r io.Reader) []frame {
	t.Helper()
	var out []frame
	dec := json.NewDecoder(r)
	for {
		var f frame
		if err := dec.Decode(&f); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("frame %d: %v", len(out), err)
		}
		out = append(out, f)
	}
}

// runningAlloc registers jobV1 and returns its first allocation.
func runningAlloc(t *testing.T, srv *nomadfake.Server) string {
	t.Helper()
	do(t, srv, "POST", "/v1/jobs", jobV1)
	return srv.Allocations("ufop-demo")[0].ID
}

func TestLogsHistory(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	id := runningAlloc(t, srv)
	srv.AppendLog(id, "stdout", []byte("listening on :9100\n"))
	srv.AppendLog(id, "stderr", []byte("warning: no cache\n"))
	srv.AppendLog(id, "stdout", []byte("GET /health 200\n"))

	resp, body := do(t, srv, "GET", "/v1/client/fs/logs/"+id+"?task=ufop&type=stdout&follow=false&origin=start&offset=0", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.HasPrefix(body, `{"Data":"`) {
		t.Errorf("frame not in Nomad's field order: %.40s", body)
	}
	fs := frames(t, strings.NewReader(body))
	var got string
	for _, f := range fs {
		got += string(f.Data)
		if f.File != "alloc/logs/ufop.stdout.0" {
			t.Errorf("File %q", f.File)
		}
	}
	if got != "listening on :9100\nGET /health 200\n" || fs[len(fs)-1].Offset != int64(len(got)) {
		t.Errorf("stdout %q, last offset %d", got, fs[len(fs)-1].Offset)
	}
	// plain=true: the bytes; origin=end counts back from the end.
	_, body = do(t, srv, "GET", "/v1/client/fs/logs/"+id+"?task=ufop&type=stderr&plain=true", "")
	if body != "warning: no cache\n" {
		t.Errorf("plain stderr %q", body)
	}
	_, body = do(t, srv, "GET", "/v1/client/fs/logs/"+id+"?task=ufop&type=stdout&plain=true&origin=end&offset=16", "")
	if body != "GET /health 200\n" {
		t.Errorf("last 16 bytes %q", body)
	}
}

func TestLogsFollow(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	id := runningAlloc(t, srv)
	srv.AppendLog(id, "stdout", []byte("before\n"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL()+"/v1/client/fs/logs/"+id+"?task=ufop&type=stdout&follow=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	next := func() frame {
		for {
			var f frame
			if err := dec.Decode(&f); err != nil {
				t.Fatalf("following: %v", err)
			}
			if f.Data != nil {
				return f
			}
		}
	}
	if f := next(); string(f.Data) != "before\n" {
		t.Fatalf("history %q", f.Data)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		srv.AppendLog(id, "stderr", []byte("not on stdout\n"))
		srv.AppendLog(id, "stdout", []byte("after\n"))
	}()
	if f := next(); string(f.Data) != "after\n" || f.Offset != 13 {
		t.Fatalf("appended %q at %d, want \"after\\n\" at 13", f.Data, f.Offset)
	}
	// Heartbeats ("{}") come every second while nothing is appended.
	start := time.Now()
	var hb frame
	if err := dec.Decode(&hb); err != nil || hb.Data != nil || time.Since(start) > 3*time.Second {
		t.Errorf("heartbeat %+v after %v: %v", hb, time.Since(start), err)
	}
}

func TestLogsErrors(t *testing.T) {
	srv := nomadfake.New()
	defer srv.Close()
	id := runningAlloc(t, srv)
	srv.SetHealthDelay(time.Hour)
	do(t, srv, "POST", "/v1/jobs", strings.ReplaceAll(jobV1, "ufop-demo", "ufop-slow"))
	pending := srv.Allocations("ufop-slow")[0].ID
	const zero = "00000000-0000-0000-0000-000000000000"
	for path, want := range map[string]struct {
		code int
		body string
	}{
		// Recorded on a Nomad 1.6.5 dev agent.
		"/v1/client/fs/logs/" + zero + "?task=ufop&type=stdout":    {404, `Unknown allocation "` + zero + `"`},
		"/v1/client/fs/logs/" + id + "?task=nope&type=stdout":      {400, `unknown task name "nope"`},
		"/v1/client/fs/logs/" + id + "?task=ufop&type=x":           {400, "must provide log type (stdout/stderr)"},
		"/v1/client/fs/logs/" + id + "?type=stdout":                {400, "must provide task name"},
		"/v1/client/fs/logs/" + pending + "?task=ufop&type=stdout": {404, `task "ufop" not started yet. No logs available`},
	} {
		resp, body := do(t, srv, "GET", path, "")
		if resp.StatusCode != want.code || body != want.body {
			t.Errorf("GET %s: %d %q, want %d %q", path, resp.StatusCode, body, want.code, want.body)
		}
	}
}
