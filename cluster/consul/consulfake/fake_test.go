package consulfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests replay exchanges of shared/reference/api-transcripts/07 and
// 08 (Consul 1.16.3) against the fake: status, key headers, body bytes.

type resp struct {
	code int
	h    http.Header
	body string
	took time.Duration
}

func do(t *testing.T, s *Server, method, path, body string) resp {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, r.Header, string(b), time.Since(start)}
}

func (r resp) want(t *testing.T, code int, headers map[string]string, body string) {
	t.Helper()
	if r.code != code {
		t.Errorf("status %d, want %d (body %q)", r.code, code, r.body)
	}
	for k, v := range headers {
		got, ok := r.h[k]
		switch {
		case v == "<absent>":
			if ok {
				t.Errorf("header %s = %q, want it absent", k, got)
			}
		case !ok || got[0] != v:
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if body != "<any>" && r.body != body {
		t.Errorf("body\n%s\nwant\n%s", r.body, body)
	}
}

func index(t *testing.T, r resp) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(r.h.Get("X-Consul-Index"), 10, 64)
	if err != nil {
		t.Fatalf("X-Consul-Index %q: %v", r.h.Get("X-Consul-Index"), err)
	}
	return n
}

const demoJSON = `{"replicas":2,"image":"local/busybox:1","owner":"ufop"}`

var jsonTrue = map[string]string{"Content-Type": "application/json", "X-Consul-Index": "<absent>"}

func TestKVTranscript(t *testing.T) {
	s := New()
	defer s.Close()

	// 8.1 PUT → 200 true
	do(t, s, "PUT", "/v1/kv/qufop/ufops/demo", demoJSON).want(t, 200, jsonTrue, "true\n")

	// 8.2 GET: X-Consul-Index = ModifyIndex, base64 value, 4-space indent.
	r := do(t, s, "GET", "/v1/kv/qufop/ufops/demo", "")
	i := index(t, r)
	r.want(t, 200, map[string]string{
		"Content-Type":           "application/json",
		"X-Consul-Knownleader":   "true",
		"X-Consul-Lastcontact":   "0",
		"X-Consul-Query-Backend": "blocking-query",
	}, fmt.Sprintf(`[
    {
        "LockIndex": 0,
        "Key": "qufop/ufops/demo",
        "Flags": 0,
        "Value": "eyJyZXBsaWNhcyI6MiwiaW1hZ2UiOiJsb2NhbC9idXN5Ym94OjEiLCJvd25lciI6InVmb3AifQ==",
        "CreateIndex": %d,
        "ModifyIndex": %d
    }
]
`, i, i))

	// 8.3 wrong cas → 200 false; 8.4 right cas → true; 8.5 index moved.
	do(t, s, "PUT", fmt.Sprintf("/v1/kv/qufop/ufops/demo?cas=%d", i-1), `{"replicas":5}`).want(t, 200, jsonTrue, "false\n")
	do(t, s, "PUT", fmt.Sprintf("/v1/kv/qufop/ufops/demo?cas=%d", i), `{"replicas":3,"image":"local/busybox:1","owner":"ufop"}`).want(t, 200, jsonTrue, "true\n")
	r = do(t, s, "GET", "/v1/kv/qufop/ufops/demo", "")
	i2 := index(t, r)
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.body), &got); err != nil || len(got) != 1 {
		t.Fatalf("body %q: %v", r.body, err)
	}
	if i2 <= i || got[0]["CreateIndex"].(float64) != float64(i) || got[0]["ModifyIndex"].(float64) != float64(i2) {
		t.Errorf("after cas: index %d→%d, entry %v", i, i2, got[0])
	}

	// 8.6 cas=0 on an existing key → false; 8.7 on a new key → true.
	do(t, s, "PUT", "/v1/kv/qufop/ufops/demo?cas=0", `{"replicas":9}`).want(t, 200, jsonTrue, "false\n")
	do(t, s, "PUT", "/v1/kv/qufop/ufops/other?cas=0", `"plain JSON string"`).want(t, 200, jsonTrue, "true\n")
	// 8.8 flags.
	do(t, s, "PUT", "/v1/kv/qufop/config?flags=42", `{"note":"flags demo"}`).want(t, 200, jsonTrue, "true\n")

	// 8.9 recurse: sorted by key, index = highest ModifyIndex under prefix.
	r = do(t, s, "GET", "/v1/kv/qufop/?recurse=true", "")
	var list []struct {
		Key         string
		Flags       uint64
		Value       []byte
		ModifyIndex uint64
	}
	if err := json.Unmarshal([]byte(r.body), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Key != "qufop/config" || list[0].Flags != 42 ||
		list[1].Key != "qufop/ufops/demo" || list[2].Key != "qufop/ufops/other" ||
		string(list[2].Value) != `"plain JSON string"` || index(t, r) != list[0].ModifyIndex {
		t.Errorf("recurse: index %d, %+v", index(t, r), list)
	}

	// 8.10 keys, 8.11 keys with separator.
	do(t, s, "GET", "/v1/kv/qufop/?keys=true", "").want(t, 200, map[string]string{"Content-Type": "application/json"},
		"[\n    \"qufop/config\",\n    \"qufop/ufops/demo\",\n    \"qufop/ufops/other\"\n]\n")
	do(t, s, "GET", "/v1/kv/qufop/?keys=true&separator=/", "").want(t, 200, nil,
		"[\n    \"qufop/config\",\n    \"qufop/ufops/\"\n]\n")

	// 8.12 raw.
	do(t, s, "GET", "/v1/kv/qufop/ufops/demo?raw=true", "").want(t, 200, map[string]string{
		"Content-Type":            "text/plain",
		"Content-Length":          "55",
		"Content-Security-Policy": "sandbox",
		"X-Content-Type-Options":  "nosniff",
		"X-Consul-Index":          strconv.FormatUint(i2, 10),
	}, `{"replicas":3,"image":"local/busybox:1","owner":"ufop"}`)

	// 8.15 delete, 8.16 missing key: 404, empty body, no Content-Type,
	// X-Consul-Index still set.
	do(t, s, "DELETE", "/v1/kv/qufop/ufops/demo", "").want(t, 200, jsonTrue, "true\n")
	r = do(t, s, "GET", "/v1/kv/qufop/ufops/demo", "")
	r.want(t, 404, map[string]string{"Content-Type": "<absent>", "X-Consul-Knownleader": "true", "X-Consul-Lastcontact": "0"}, "")
	if index(t, r) != s.Index() {
		t.Errorf("404 index %d, want the KV index %d", index(t, r), s.Index())
	}
	// 8.17 deleting a missing key → true; 8.18 delete with wrong cas → false.
	do(t, s, "DELETE", "/v1/kv/qufop/ufops/demo", "").want(t, 200, jsonTrue, "true\n")
	do(t, s, "DELETE", "/v1/kv/qufop/ufops/other?cas=1", "").want(t, 200, jsonTrue, "false\n")
	// 8.19 recursive delete, 8.20 empty prefix → 404.
	do(t, s, "DELETE", "/v1/kv/qufop/?recurse=true", "").want(t, 200, jsonTrue, "true\n")
	do(t, s, "GET", "/v1/kv/qufop/?recurse=true", "").want(t, 404, map[string]string{"Content-Type": "<absent>"}, "")
	do(t, s, "GET", "/v1/kv/qufop/?keys=true", "").want(t, 404, nil, "")
}

func TestKVBlocking(t *testing.T) {
	s := New()
	defer s.Close()
	do(t, s, "PUT", "/v1/kv/qufop/ufops/demo", demoJSON)
	i := index(t, do(t, s, "GET", "/v1/kv/qufop/ufops/demo", ""))

	// 8.13: a blocking GET is released by a write, with the new index.
	done := make(chan resp, 1)
	go func() { done <- do(t, s, "GET", fmt.Sprintf("/v1/kv/qufop/ufops/demo?index=%d&wait=30s", i), "") }()
	waitFor(t, func() bool { return s.Waiting() == 1 })
	// A write elsewhere does not release it.
	do(t, s, "PUT", "/v1/kv/qufop/elsewhere", "x")
	time.Sleep(50 * time.Millisecond)
	if s.Waiting() != 1 {
		t.Fatal("a write to another key released the blocking GET")
	}
	do(t, s, "PUT", "/v1/kv/qufop/ufops/demo", `{"replicas":4}`)
	select {
	case r := <-done:
		r.want(t, 200, map[string]string{"Content-Type": "application/json"}, "<any>")
		if index(t, r) <= i || !strings.Contains(r.body, "eyJyZXBsaWNhcyI6NH0=") {
			t.Errorf("released with index %d (was %d), body %s", index(t, r), i, r.body)
		}
	case <-time.After(time.Minute):
		t.Fatal("blocking GET not released by the write")
	}

	// 8.14: nothing changes → returns after wait with the same index.
	cur := index(t, do(t, s, "GET", "/v1/kv/qufop/?recurse=true", ""))
	r := do(t, s, "GET", fmt.Sprintf("/v1/kv/qufop/?recurse=true&index=%d&wait=300ms", cur), "")
	if r.code != 200 || index(t, r) != cur || r.took < 300*time.Millisecond {
		t.Errorf("time-out: %d, index %d (want %d), took %v", r.code, index(t, r), cur, r.took)
	}
	// A stale index returns at once.
	r = do(t, s, "GET", fmt.Sprintf("/v1/kv/qufop/?recurse=true&index=%d&wait=10s", cur-1), "")
	if r.code != 200 || r.took > time.Second {
		t.Errorf("stale index: %d after %v", r.code, r.took)
	}
	do(t, s, "GET", "/v1/kv/qufop/x?index=1&wait=soon", "").want(t, 400, nil, "Invalid wait time")
	do(t, s, "GET", "/v1/kv/qufop/x?index=-1", "").want(t, 400, nil, "Invalid index")
}

// healthEntry is the transcript's entry (07, 7.1) with the fake's IDs.
const healthEntry = `    {
        "Node": {
            "ID": "d6e4283c-e1e7-c3b0-284d-380aa1c13f7e",
            "Node": "vm",
            "Address": "127.0.0.1",
            "Datacenter": "dc1",
            "TaggedAddresses": {
                "lan": "127.0.0.1",
                "lan_ipv4": "127.0.0.1",
                "wan": "127.0.0.1",
                "wan_ipv4": "127.0.0.1"
            },
            "Meta": {
                "consul-network-segment": "",
                "consul-version": "1.16.3"
            },
            "CreateIndex": 11,
            "ModifyIndex": 17
        },
        "Service": {
            "ID": "%[1]s",
            "Service": "ufop-demo",
            "Tags": [
                "v1"
            ],
            "Address": "127.0.0.1",
            "TaggedAddresses": {
                "lan_ipv4": {
                    "Address": "127.0.0.1",
                    "Port": %[2]d
                },
                "wan_ipv4": {
                    "Address": "127.0.0.1",
                    "Port": %[2]d
                }
            },
            "Meta": {
                "external-source": "nomad"
            },
            "Port": %[2]d,
            "Weights": {
                "Passing": 1,
                "Warning": 1
            },
            "EnableTagOverride": false,
            "Proxy": {
                "Mode": "",
                "MeshGateway": {},
                "Expose": {}
            },
            "Connect": {},
            "PeerName": "",
            "CreateIndex": %[3]d,
            "ModifyIndex": %[3]d
        },
        "Checks": [
            {
                "Node": "vm",
                "CheckID": "serfHealth",
                "Name": "Serf Health Status",
                "Status": "passing",
                "Notes": "",
                "Output": "Agent alive and reachable",
                "ServiceID": "",
                "ServiceName": "",
                "ServiceTags": [],
                "Type": "",
                "Interval": "",
                "Timeout": "",
                "ExposedPort": 0,
                "Definition": {},
                "CreateIndex": 11,
                "ModifyIndex": 11
            },
            {
                "Node": "vm",
                "CheckID": "_nomad-check-%[1]s",
                "Name": "http-alive",
                "Status": "passing",
                "Notes": "",
                "Output": "HTTP GET http://127.0.0.1:%[2]d/: 200 OK Output: ok\n",
                "ServiceID": "%[1]s",
                "ServiceName": "ufop-demo",
                "ServiceTags": [
                    "v1"
                ],
                "Type": "http",
                "Interval": "2s",
                "Timeout": "1s",
                "ExposedPort": 0,
                "Definition": {},
                "CreateIndex": %[3]d,
                "ModifyIndex": %[3]d
            }
        ]
    }`

const (
	id1 = "_nomad-task-2077b132-43f4-ac1c-e1ac-e5f46ff1bdd3-group-ufop-ufop-demo-http"
	id2 = "_nomad-task-85a3bc3c-4493-2ca6-c8e7-9249dc5222fb-group-ufop-ufop-demo-http"
)

func TestHealthTranscript(t *testing.T) {
	s := New()
	defer s.Close()
	s.Register("ufop-demo", id1, "127.0.0.1", 28938, []string{"v1"})
	i1 := s.Index()
	s.Register("ufop-demo", id2, "127.0.0.1", 27936, []string{"v1"})
	i2 := s.Index()

	// 7.1: non-blocking read.
	r := do(t, s, "GET", "/v1/health/service/ufop-demo?passing=true", "")
	r.want(t, 200, map[string]string{
		"Content-Type":                   "application/json",
		"X-Consul-Effective-Consistency": "leader",
		"X-Consul-Index":                 strconv.FormatUint(i2, 10),
		"X-Consul-Knownleader":           "true",
		"X-Consul-Lastcontact":           "0",
		"X-Consul-Query-Backend":         "blocking-query",
	}, "[\n"+fmt.Sprintf(healthEntry, id1, 28938, i1)+",\n"+fmt.Sprintf(healthEntry, id2, 27936, i2)+"\n]\n")

	// 7.2: blocking, nothing changes → after the wait, same index and body,
	// streaming backend headers.
	body := r.body
	r = do(t, s, "GET", fmt.Sprintf("/v1/health/service/ufop-demo?passing=true&index=%d&wait=300ms", i2), "")
	r.want(t, 200, map[string]string{
		"X-Consul-Index":         strconv.FormatUint(i2, 10),
		"X-Consul-Knownleader":   "false",
		"X-Consul-Query-Backend": "streaming",
	}, body)
	if r.took < 300*time.Millisecond {
		t.Errorf("blocking query returned after %v, before its wait", r.took)
	}

	// Other services changing do not release it; a registration elsewhere
	// does not change this service's index.
	done := make(chan resp, 1)
	go func() {
		done <- do(t, s, "GET", fmt.Sprintf("/v1/health/service/ufop-demo?passing=true&index=%d&wait=10s", i2), "")
	}()
	waitFor(t, func() bool { return s.Waiting() == 1 })
	s.Register("ufop-other", "o1", "127.0.0.1", 1000, nil)
	time.Sleep(50 * time.Millisecond)
	if s.Waiting() != 1 {
		t.Fatal("a change of another service released the query")
	}

	// 7.3: released by a deregistration, higher index, one instance left.
	start := time.Now()
	s.Deregister(id1)
	select {
	case r := <-done:
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("released %v after the change", d)
		}
		if index(t, r) <= i2 || strings.Contains(r.body, id1) || !strings.Contains(r.body, id2) {
			t.Errorf("after deregister: index %d, body %s", index(t, r), r.body)
		}
	case <-time.After(time.Minute):
		t.Fatal("blocking query not released by the deregistration")
	}

	// passing=true drops an instance with a critical check; without it the
	// instance is listed with its critical check.
	s.Register("ufop-demo", id1, "127.0.0.1", 28938, []string{"v1"})
	s.SetHealth(id1, false)
	var entries []struct {
		Service struct{ ID string }
		Checks  []struct{ Status string }
	}
	json.Unmarshal([]byte(do(t, s, "GET", "/v1/health/service/ufop-demo?passing=1", "").body), &entries)
	if len(entries) != 1 || entries[0].Service.ID != id2 {
		t.Errorf("passing=1: %+v", entries)
	}
	json.Unmarshal([]byte(do(t, s, "GET", "/v1/health/service/ufop-demo", "").body), &entries)
	if len(entries) != 2 || entries[0].Checks[1].Status != "critical" {
		t.Errorf("all: %+v", entries)
	}
	// An unknown service is an empty array, not null or 404.
	do(t, s, "GET", "/v1/health/service/ufop-none?passing=true", "").want(t, 200, nil, "[]\n")
}

func TestDown(t *testing.T) {
	s := New()
	defer s.Close()
	s.Register("ufop-demo", "a", "127.0.0.1", 1, []string{"v1"})
	i := s.Index()
	done := make(chan resp, 1)
	go func() {
		done <- do(t, s, "GET", fmt.Sprintf("/v1/health/service/ufop-demo?index=%d&wait=10s", i), "")
	}()
	waitFor(t, func() bool { return s.Waiting() == 1 })
	s.SetDown(true)
	select {
	case r := <-done:
		r.want(t, 500, nil, DownMessage)
	case <-time.After(time.Minute):
		t.Fatal("held query not failed by SetDown")
	}
	do(t, s, "GET", "/v1/kv/qufop/x", "").want(t, 500, nil, DownMessage)
	s.SetDown(false)
	if r := do(t, s, "GET", "/v1/health/service/ufop-demo", ""); r.code != 200 || index(t, r) != i {
		t.Errorf("after down: %d index %d", r.code, index(t, r))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 3s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
