package consulfake

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// These tests replay shared/reference/api-transcripts/09 and the exchanges
// of testdata/sessions-1.16.3.md (both recorded on a Consul 1.16.3 -dev
// agent) against the fake. Session IDs are random: bodies are compared
// with the IDs put in.

func createSession(t *testing.T, s *Server, body string) string {
	t.Helper()
	r := do(t, s, "PUT", "/v1/session/create", body)
	if r.code != 200 {
		t.Fatalf("create session %s: %d %q", body, r.code, r.body)
	}
	var out struct{ ID string }
	if err := json.Unmarshal([]byte(r.body), &out); err != nil || out.ID == "" {
		t.Fatalf("create session: %q: %v", r.body, err)
	}
	if want := fmt.Sprintf("{\n    \"ID\": %q\n}\n", out.ID); r.body != want {
		t.Errorf("create body %q, want %q", r.body, want)
	}
	return out.ID
}

// sessionBody is Consul's JSON of one session (4-space indent, in an array
// of one when top is set).
func sessionBody(id, name string, lockDelay time.Duration, behavior, ttl string, create uint64) string {
	return fmt.Sprintf(`{
        "ID": %q,
        "Name": %q,
        "Node": "vm",
        "LockDelay": %d,
        "Behavior": %q,
        "TTL": %q,
        "NodeChecks": [
            "serfHealth"
        ],
        "ServiceChecks": null,
        "CreateIndex": %d,
        "ModifyIndex": %d
    }`, id, name, int64(lockDelay), behavior, ttl, create, create)
}

func oneSession(body string) string { return "[\n    " + body + "\n]\n" }

func kvLockBody(lockIndex uint64, key string, flags uint64, value, session string, create, modify uint64) string {
	sess := ""
	if session != "" {
		sess = fmt.Sprintf("\n        \"Session\": %q,", session)
	}
	return fmt.Sprintf(`[
    {
        "LockIndex": %d,
        "Key": %q,
        "Flags": %d,
        "Value": %q,%s
        "CreateIndex": %d,
        "ModifyIndex": %d
    }
]
`, lockIndex, key, flags, value, sess, create, modify)
}

var (
	jsonWrite = map[string]string{"Content-Type": "application/json", "X-Consul-Index": "<absent>"}
	plainText = map[string]string{"Content-Type": "text/plain; charset=utf-8"}
)

func TestSessionsTranscript09(t *testing.T) {
	s := New()
	defer s.Close()
	const key = "/v1/kv/qufop/scaler/leader"
	create := `{"Name":"qufop-scaler","TTL":"15s","Behavior":"release"}`

	// 9.1, 9.2 create A, read it back with the defaults filled in.
	a := createSession(t, s, create)
	info := do(t, s, "GET", "/v1/session/info/"+a, "")
	ca := index(t, info)
	info.want(t, 200, map[string]string{"Content-Type": "application/json", "X-Consul-Knownleader": "true",
		"X-Consul-Query-Backend": "blocking-query"}, oneSession(sessionBody(a, "qufop-scaler", 15*time.Second, "release", "15s", ca)))

	// 9.3, 9.4 A acquires: LockIndex 1, Session A.
	do(t, s, "PUT", key+"?acquire="+a, `{"holder":"scaler-a"}`).want(t, 200, jsonWrite, "true\n")
	r := do(t, s, "GET", key, "")
	k1 := index(t, r)
	r.want(t, 200, nil, kvLockBody(1, "qufop/scaler/leader", 0, "eyJob2xkZXIiOiJzY2FsZXItYSJ9", a, k1, k1))

	// 9.5, 9.6 B is refused.
	b := createSession(t, s, create)
	do(t, s, "PUT", key+"?acquire="+b, `{"holder":"scaler-b"}`).want(t, 200, jsonWrite, "false\n")

	// 9.7, 9.8 A re-acquires: value updated, LockIndex kept.
	do(t, s, "PUT", key+"?acquire="+a, `{"holder":"scaler-a","beat":2}`).want(t, 200, jsonWrite, "true\n")
	r = do(t, s, "GET", key, "")
	k2 := index(t, r)
	r.want(t, 200, nil, kvLockBody(1, "qufop/scaler/leader", 0, "eyJob2xkZXIiOiJzY2FsZXItYSIsImJlYXQiOjJ9", a, k1, k2))

	// 9.9 renew: the session as an array of one, no index change.
	do(t, s, "PUT", "/v1/session/renew/"+a, "").want(t, 200, jsonWrite,
		oneSession(sessionBody(a, "qufop-scaler", 15*time.Second, "release", "15s", ca)))

	// 9.10 B cannot release what A holds.
	do(t, s, "PUT", key+"?release="+b, `{"holder":"scaler-b"}`).want(t, 200, jsonWrite, "false\n")

	// 9.11 list, sorted by ID.
	r = do(t, s, "GET", "/v1/session/list", "")
	var list []struct{ ID string }
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list) != 2 || list[0].ID > list[1].ID {
		t.Errorf("list %q: %v", r.body, err)
	}

	// 9.12, 9.13 destroy A: key and value kept, no Session, LockIndex 1.
	do(t, s, "PUT", "/v1/session/destroy/"+a, "").want(t, 200, jsonWrite, "true\n")
	r = do(t, s, "GET", key, "")
	k3 := index(t, r)
	r.want(t, 200, nil, kvLockBody(1, "qufop/scaler/leader", 0, "eyJob2xkZXIiOiJzY2FsZXItYSIsImJlYXQiOjJ9", "", k1, k3))

	// 9.14 the 15 s lock delay refuses B; 9.15 once it is over B gets it.
	do(t, s, "PUT", key+"?acquire="+b, `{"holder":"scaler-b"}`).want(t, 200, jsonWrite, "false\n")
	s.Advance(14 * time.Second)
	do(t, s, "PUT", "/v1/session/renew/"+b, "").want(t, 200, nil, "<any>")
	do(t, s, "PUT", key+"?acquire="+b, `{"holder":"scaler-b"}`).want(t, 200, jsonWrite, "false\n")
	s.Advance(2 * time.Second)
	do(t, s, "PUT", key+"?acquire="+b, `{"holder":"scaler-b"}`).want(t, 200, jsonWrite, "true\n")
	r = do(t, s, "GET", key, "")
	k4 := index(t, r)
	r.want(t, 200, nil, kvLockBody(2, "qufop/scaler/leader", 0, "eyJob2xkZXIiOiJzY2FsZXItYiJ9", b, k1, k4))

	// 9.16, 9.17 B not renewed after this: still there after 2 × TTL less
	// a bit, gone after 2 × TTL; the lock is released, LockIndex 2.
	do(t, s, "PUT", "/v1/session/renew/"+b, "").want(t, 200, nil, "<any>")
	s.Advance(29 * time.Second)
	if r := do(t, s, "GET", "/v1/session/info/"+b, ""); r.body == "[]\n" {
		t.Errorf("session expired before 2 × TTL")
	}
	s.Advance(2 * time.Second)
	do(t, s, "GET", "/v1/session/info/"+b, "").want(t, 200, map[string]string{"Content-Type": "application/json"}, "[]\n")
	r = do(t, s, "GET", key, "")
	k5 := index(t, r)
	r.want(t, 200, nil, kvLockBody(2, "qufop/scaler/leader", 0, "eyJob2xkZXIiOiJzY2FsZXItYiJ9", "", k1, k5))

	// 9.18 renew an expired session.
	do(t, s, "PUT", "/v1/session/renew/"+b, "").want(t, 404, plainText, fmt.Sprintf("Session id '%s' not found", b))

	// 9.19 unknown session inside the lock delay: false; 9.19b on a key
	// without one: 500.
	do(t, s, "PUT", key+"?acquire="+b, `{"holder":"ghost"}`).want(t, 200, jsonWrite, "false\n")
	do(t, s, "PUT", "/v1/kv/qufop/other-lock?acquire="+b, `{"holder":"ghost"}`).want(t, 500, plainText,
		fmt.Sprintf("raft apply failed: invalid session %q", b))

	// 9.20 a TTL below 10 s.
	do(t, s, "PUT", "/v1/session/create", `{"Name":"bad","TTL":"5s","Behavior":"release"}`).want(t, 500, plainText,
		"Invalid Session TTL '5000000000', must be between [10s=24h0m0s]")

	// 9.21 clean up.
	do(t, s, "DELETE", "/v1/kv/qufop/?recurse=true", "").want(t, 200, jsonWrite, "true\n")
}

func TestSessionCreateVariants(t *testing.T) {
	s := New()
	defer s.Close()
	cases := []struct {
		body      string
		name      string
		lockDelay time.Duration
		ttl       string
	}{
		{`{"Name":"a","TTL":"10s","LockDelay":"1000ms","Behavior":"release"}`, "a", time.Second, "10s"},
		{`{}`, "", 15 * time.Second, ""},
		{``, "", 15 * time.Second, ""},
		{`{"LockDelay":"1ms"}`, "", time.Millisecond, ""},
		{`{"LockDelay":2}`, "", 2 * time.Second, ""},                       // a number below 1000: seconds
		{`{"LockDelay":2000000000}`, "", 2 * time.Second, ""},              // otherwise nanoseconds
		{`{"LockDelay":"0s"}`, "", 0, ""},                                  // 0 given is 0, not the default
		{`{"LockDelay":"61s"}`, "", 61 * time.Second, ""},                  // 1.16.3 stores it
		{`{"TTL":"24h","Behavior":"delete"}`, "", 15 * time.Second, "24h"}, // as given
	}
	for _, c := range cases {
		id := createSession(t, s, c.body)
		r := do(t, s, "GET", "/v1/session/info/"+id, "")
		behavior := "release"
		if strings.Contains(c.body, "delete") {
			behavior = "delete"
		}
		r.want(t, 200, nil, oneSession(sessionBody(id, c.name, c.lockDelay, behavior, c.ttl, index(t, r))))
	}
	for body, msg := range map[string]string{
		`{"TTL":"9s"}`:        "Invalid Session TTL '9000000000', must be between [10s=24h0m0s]",
		`{"TTL":"24h1m"}`:     "Invalid Session TTL '86460000000000', must be between [10s=24h0m0s]",
		`{"TTL":"bogus"}`:     `Session TTL 'bogus' invalid: time: invalid duration "bogus"`,
		`{"Behavior":"nope"}`: "Invalid Behavior setting 'nope'",
	} {
		do(t, s, "PUT", "/v1/session/create", body).want(t, 500, plainText, msg)
	}
	do(t, s, "PUT", "/v1/session/create", "not json").want(t, 400, plainText,
		"Request decode failed: invalid character 'o' in literal null (expecting 'u')")

	// Unknown sessions.
	const ghost = "00000000-0000-0000-0000-000000000000"
	do(t, s, "PUT", "/v1/session/renew/"+ghost, "").want(t, 404, plainText, "Session id '"+ghost+"' not found")
	do(t, s, "PUT", "/v1/session/destroy/"+ghost, "").want(t, 200, jsonWrite, "true\n")
	do(t, s, "GET", "/v1/session/info/notauuid", "").want(t, 200, nil, "[]\n")
	do(t, s, "PUT", "/v1/session/renew/notauuid", "").want(t, 404, plainText, "Session id 'notauuid' not found")
	r := do(t, s, "GET", "/v1/session/node/vm", "")
	var sessions []struct{ ID string }
	if err := json.Unmarshal([]byte(r.body), &sessions); err != nil || len(sessions) != len(cases) {
		t.Errorf("node vm: %d sessions (%v), want %d", len(sessions), err, len(cases))
	}
}

func TestLocks(t *testing.T) {
	s := New()
	defer s.Close()
	const key = "/v1/kv/qufop/exp/lock"
	const lockFlags = 3304740253564472344 // consul/api's LockFlagValue
	a := createSession(t, s, `{"Name":"a","TTL":"10s","LockDelay":"1000ms","Behavior":"release"}`)
	b := createSession(t, s, `{"Name":"b","TTL":"10s","LockDelay":"1000ms"}`)

	// A new key taken with flags; another session refused; the holder
	// changes the flags and the value.
	do(t, s, "PUT", fmt.Sprintf("%s?acquire=%s&flags=%d", key, a, uint64(lockFlags)), "holder-a").want(t, 200, jsonWrite, "true\n")
	r := do(t, s, "GET", key, "")
	c := index(t, r)
	r.want(t, 200, nil, kvLockBody(1, "qufop/exp/lock", lockFlags, "aG9sZGVyLWE=", a, c, c))
	do(t, s, "PUT", fmt.Sprintf("%s?acquire=%s&flags=%d", key, b, uint64(lockFlags)), "holder-b").want(t, 200, jsonWrite, "false\n")
	do(t, s, "PUT", key+"?acquire="+a+"&flags=7", "holder-a2").want(t, 200, jsonWrite, "true\n")
	r = do(t, s, "GET", key, "")
	r.want(t, 200, nil, kvLockBody(1, "qufop/exp/lock", 7, "aG9sZGVyLWEy", a, c, index(t, r)))

	// A plain write keeps the holder and answers LockIndex 0 after.
	do(t, s, "PUT", key, "plain").want(t, 200, jsonWrite, "true\n")
	r = do(t, s, "GET", key, "")
	r.want(t, 200, nil, kvLockBody(0, "qufop/exp/lock", 0, "cGxhaW4=", a, c, index(t, r)))
	do(t, s, "PUT", key+"?acquire="+a+"&cas=1", "x").want(t, 400, nil, "Conflicting flags: acquire="+a+"&cas=1")

	// Release: only by the holder, with the request's value and flags;
	// a second release is false and changes nothing.
	do(t, s, "PUT", key+"?release="+b, "rel-b").want(t, 200, jsonWrite, "false\n")
	do(t, s, "PUT", key+"?release="+a+"&flags=9", "rel-a").want(t, 200, jsonWrite, "true\n")
	r = do(t, s, "GET", key, "")
	rel := index(t, r)
	r.want(t, 200, nil, kvLockBody(0, "qufop/exp/lock", 9, "cmVsLWE=", "", c, rel))
	do(t, s, "PUT", key+"?release="+a, "rel-a-again").want(t, 200, jsonWrite, "false\n")
	if r := do(t, s, "GET", key, ""); index(t, r) != rel {
		t.Errorf("a refused release changed the index")
	}

	// No lock delay after an explicit release.
	do(t, s, "PUT", key+"?acquire="+b, "holder-b").want(t, 200, jsonWrite, "true\n")
	r = do(t, s, "GET", key, "")
	r.want(t, 200, nil, kvLockBody(1, "qufop/exp/lock", 0, "aG9sZGVyLWI=", b, c, index(t, r)))

	// Destroying the holder starts B's 1 s lock delay, for every session.
	do(t, s, "PUT", "/v1/session/destroy/"+b, "").want(t, 200, jsonWrite, "true\n")
	do(t, s, "PUT", key+"?acquire="+a, "holder-a").want(t, 200, jsonWrite, "false\n")
	s.Advance(time.Second)
	do(t, s, "PUT", key+"?acquire="+a, "holder-a").want(t, 200, jsonWrite, "true\n")
	r = do(t, s, "GET", key, "")
	r.want(t, 200, nil, kvLockBody(2, "qufop/exp/lock", 0, "aG9sZGVyLWE=", a, c, index(t, r)))

	// A locked key can be deleted; taken again it starts over.
	do(t, s, "DELETE", key, "").want(t, 200, jsonWrite, "true\n")
	do(t, s, "GET", key, "").want(t, 404, nil, "")
	do(t, s, "PUT", key+"?acquire="+a, "again").want(t, 200, jsonWrite, "true\n")
	r = do(t, s, "GET", key, "")
	n := index(t, r)
	r.want(t, 200, nil, kvLockBody(1, "qufop/exp/lock", 0, "YWdhaW4=", a, n, n))

	// Behavior delete: the key goes with the session.
	d := createSession(t, s, `{"Name":"del","TTL":"10s","LockDelay":"1ms","Behavior":"delete"}`)
	do(t, s, "PUT", "/v1/kv/qufop/exp/dl?acquire="+d, "x").want(t, 200, jsonWrite, "true\n")
	do(t, s, "PUT", "/v1/session/destroy/"+d, "").want(t, 200, jsonWrite, "true\n")
	do(t, s, "GET", "/v1/kv/qufop/exp/dl", "").want(t, 404, nil, "")

	// Unknown and empty sessions on a key without a lock delay.
	const ghost = "00000000-0000-0000-0000-000000000000"
	fresh := "/v1/kv/qufop/exp/fresh"
	do(t, s, "PUT", fresh+"?acquire="+ghost, "x").want(t, 500, plainText, `raft apply failed: invalid session "`+ghost+`"`)
	do(t, s, "PUT", fresh+"?release="+ghost, "x").want(t, 200, jsonWrite, "false\n")
	do(t, s, "PUT", fresh+"?release="+a, "x").want(t, 200, jsonWrite, "false\n")
	do(t, s, "GET", fresh, "").want(t, 404, nil, "")
	do(t, s, "PUT", fresh+"?acquire=", "x").want(t, 500, plainText, "raft apply failed: missing session")
	do(t, s, "PUT", fresh+"?release=", "x").want(t, 500, plainText, "raft apply failed: missing session")
}

// A TTL session is invalidated 2 × TTL after its last renewal, a renewal
// after the TTL (but within 2 × TTL) keeps it, and a blocking query on the
// lock it holds wakes up when it goes.
func TestSessionTTL(t *testing.T) {
	s := New()
	defer s.Close()
	id := createSession(t, s, `{"Name":"ttl","TTL":"10s","LockDelay":"1ms"}`)
	do(t, s, "PUT", "/v1/kv/qufop/exp/ttl?acquire="+id, "held").want(t, 200, nil, "true\n")
	s.Advance(15 * time.Second)
	do(t, s, "PUT", "/v1/session/renew/"+id, "").want(t, 200, nil, "<any>")
	s.Advance(19 * time.Second)
	if got := s.Sessions(); len(got) != 1 {
		t.Fatalf("sessions %v 19 s after a renewal, want it alive", got)
	}
	r := do(t, s, "GET", "/v1/kv/qufop/exp/ttl", "")
	held := index(t, r)

	got := make(chan resp, 1)
	go func() { got <- do(t, s, "GET", fmt.Sprintf("/v1/kv/qufop/exp/ttl?index=%d&wait=1m", held), "") }()
	deadline := time.Now().Add(time.Minute)
	for s.Waiting() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s.Advance(time.Second)
	r = <-got
	if index(t, r) <= held || strings.Contains(r.body, `"Session"`) {
		t.Errorf("the blocking query answered %d %q, want the lock released", index(t, r), r.body)
	}
	if len(s.Sessions()) != 0 || s.LockHolder("qufop/exp/ttl") != "" {
		t.Errorf("session still there after 2 × TTL")
	}
}
