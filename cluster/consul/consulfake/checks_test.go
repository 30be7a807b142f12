package consulfake

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// These tests replay §13–§19 of testdata/sessions-1.16.3.md (recorded on a
// Consul 1.16.3 -dev agent): the agent's own services with TTL checks, and
// sessions tied to them.

var agentOK = map[string]string{"Content-Type": "<absent>", "X-Consul-Index": "<absent>"}

// agentCheckBody is one check of GET /v1/agent/checks, indented as in the
// map Consul answers.
func agentCheckBody(id, name, status, output, service string) string {
	return fmt.Sprintf(`    %q: {
        "Node": "vm",
        "CheckID": %q,
        "Name": %q,
        "Status": %q,
        "Notes": "",
        "Output": %q,
        "ServiceID": %q,
        "ServiceName": "qufop-lock",
        "ServiceTags": [],
        "Type": "ttl",
        "Interval": "",
        "Timeout": "",
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": 0,
        "ModifyIndex": 0
    }`, id, id, name, status, output, service)
}

func agentChecks(checks ...string) string { return "{\n" + strings.Join(checks, ",\n") + "\n}\n" }

// sessionChecksBody is a session's JSON with the given checks parts
// (NodeChecks, ServiceChecks and, if any, Checks) as Consul shows them.
func sessionChecksBody(id, name string, lockDelay time.Duration, ttl, checks string, create uint64) string {
	return fmt.Sprintf(`[
    {
        "ID": %q,
        "Name": %q,
        "Node": "vm",
        "LockDelay": %d,
        "Behavior": "release",
        "TTL": %q,
%s
        "CreateIndex": %d,
        "ModifyIndex": %d
    }
]
`, id, name, int64(lockDelay), ttl, checks, create, create)
}

const (
	serfOnly      = "        \"NodeChecks\": [\n            \"serfHealth\"\n        ],"
	noNodeChecks  = "        \"NodeChecks\": [],"
	noSvcChecks   = "\n        \"ServiceChecks\": null,"
	lockCheckA    = "\n        \"ServiceChecks\": [\n            {\n                \"ID\": \"qufop-lock-a\",\n                \"Namespace\": \"\"\n            }\n        ],"
	lockCheckE    = "\n        \"ServiceChecks\": [\n            {\n                \"ID\": \"qufop-lock-e\",\n                \"Namespace\": \"\"\n            }\n        ],"
	legacyChecksA = "\n        \"Checks\": [\n            \"serfHealth\",\n            \"qufop-lock-a\"\n        ],"
)

func gone(t *testing.T, s *Server, id string) {
	t.Helper()
	do(t, s, "GET", "/v1/session/info/"+id, "").want(t, 200, nil, "[]\n")
}

func alive(t *testing.T, s *Server, id string) {
	t.Helper()
	if r := do(t, s, "GET", "/v1/session/info/"+id, ""); r.body == "[]\n" {
		t.Errorf("session %s is gone, want it alive", id)
	}
}

func TestAgentChecksAndSessions(t *testing.T) {
	s := New()
	defer s.Close()
	const lockFlags = "3304740253564472344"
	key := "/v1/kv/qufop/exp/lock"

	// §13 a service with a passing TTL check; one without Status starts
	// critical and no session can be tied to it.
	do(t, s, "PUT", "/v1/agent/service/register", `{"Name":"qufop-lock","ID":"qufop-lock-a","Meta":{"lock_key":"qufop/exp/lock"},`+
		`"Check":{"CheckID":"qufop-lock-a","Name":"lock qufop/exp/lock","TTL":"5s","Status":"passing","DeregisterCriticalServiceAfter":"1m"}}`).
		want(t, 200, agentOK, "")
	checkA := agentCheckBody("qufop-lock-a", "lock qufop/exp/lock", "passing", "", "qufop-lock-a")
	do(t, s, "GET", "/v1/agent/checks", "").want(t, 200, map[string]string{"Content-Type": "application/json"}, agentChecks(checkA))
	do(t, s, "PUT", "/v1/agent/service/register", `{"Name":"qufop-lock","ID":"qufop-lock-b","Check":{"CheckID":"qufop-lock-b","TTL":"5s"}}`).
		want(t, 200, agentOK, "")
	do(t, s, "GET", "/v1/agent/checks", "").want(t, 200, nil,
		agentChecks(checkA, agentCheckBody("qufop-lock-b", "Service 'qufop-lock' check", "critical", "", "qufop-lock-b")))
	do(t, s, "PUT", "/v1/session/create", `{"Name":"b","ServiceChecks":[{"ID":"qufop-lock-b"}]}`).
		want(t, 500, plainText, "apply failed: Check 'qufop-lock-b' is in critical state")
	do(t, s, "PUT", "/v1/agent/check/update/qufop-lock-b", `{"Status":"passing","Output":"up"}`).want(t, 200, agentOK, "")
	do(t, s, "PUT", "/v1/agent/check/update/qufop-lock-b", `{"Status":"fine"}`).want(t, 400, plainText, "Invalid check status: 'fine'")
	do(t, s, "PUT", "/v1/agent/check/update/nope", `{"Status":"passing"}`).want(t, 404, plainText,
		`Unknown check ID "nope". Ensure that the check ID is passed, not the check name.`)
	for _, body := range []string{`{"Name":"x","ServiceChecks":[{"ID":"nope"}]}`, `{"Name":"x","NodeChecks":["serfHealth","nope"]}`, `{"Name":"x","Checks":["nope"]}`} {
		do(t, s, "PUT", "/v1/session/create", body).want(t, 500, plainText, "apply failed: Missing check 'nope' registration")
	}
	a := createSession(t, s, `{"Name":"a","LockDelay":"2s","Behavior":"release","NodeChecks":["serfHealth"],"ServiceChecks":[{"ID":"qufop-lock-a"}]}`)
	r := do(t, s, "GET", "/v1/session/info/"+a, "")
	r.want(t, 200, nil, sessionChecksBody(a, "a", 2*time.Second, "", serfOnly+lockCheckA, index(t, r)))
	legacy := createSession(t, s, `{"Name":"legacy","Checks":["serfHealth","qufop-lock-a"]}`)
	r = do(t, s, "GET", "/v1/session/info/"+legacy, "")
	r.want(t, 200, nil, sessionChecksBody(legacy, "legacy", 15*time.Second, "", serfOnly+noSvcChecks+legacyChecksA, index(t, r)))
	nodeChecks := createSession(t, s, `{"Name":"nodechecks","NodeChecks":["qufop-lock-a"]}`)
	r = do(t, s, "GET", "/v1/session/info/"+nodeChecks, "")
	r.want(t, 200, nil, sessionChecksBody(nodeChecks, "nodechecks", 15*time.Second, "",
		"        \"NodeChecks\": [\n            \"qufop-lock-a\"\n        ],"+noSvcChecks, index(t, r)))

	// §14 the TTL runs out 5 s after the last update: every session tied
	// to the check goes (whichever list names it), then the lock delay.
	do(t, s, "PUT", key+"?acquire="+a+"&flags="+lockFlags, "holder-a").want(t, 200, jsonWrite, "true\n")
	other := createSession(t, s, `{"Name":"other","LockDelay":"2s","NodeChecks":["serfHealth"]}`)
	s.Advance(4 * time.Second) // qufop-lock-b runs out (its update was its last)
	do(t, s, "PUT", "/v1/agent/check/update/qufop-lock-a", `{"Status":"passing","Output":"a leads"}`).want(t, 200, agentOK, "")
	do(t, s, "PUT", key+"?acquire="+other+"&flags="+lockFlags, "holder-o").want(t, 200, jsonWrite, "false\n")
	s.Advance(4900 * time.Millisecond)
	alive(t, s, a)
	s.Advance(100 * time.Millisecond)
	gone(t, s, a)
	gone(t, s, legacy)
	gone(t, s, nodeChecks)
	do(t, s, "GET", "/v1/agent/checks", "").want(t, 200, nil, agentChecks(
		agentCheckBody("qufop-lock-a", "lock qufop/exp/lock", "critical", "TTL expired (last output before timeout follows): a leads", "qufop-lock-a"),
		agentCheckBody("qufop-lock-b", "Service 'qufop-lock' check", "critical", "TTL expired (last output before timeout follows): up", "qufop-lock-b")))
	r = do(t, s, "GET", key, "")
	if strings.Contains(r.body, `"Session"`) {
		t.Errorf("the lock is still held: %s", r.body)
	}
	do(t, s, "PUT", key+"?acquire="+other+"&flags="+lockFlags, "holder-o").want(t, 200, jsonWrite, "false\n")
	s.Advance(2 * time.Second)
	do(t, s, "PUT", key+"?acquire="+other+"&flags="+lockFlags, "holder-o").want(t, 200, jsonWrite, "true\n")
	// An update brings the check back; the session stays gone.
	do(t, s, "PUT", "/v1/agent/check/update/qufop-lock-a", `{"Status":"passing"}`).want(t, 200, agentOK, "")
	if got := s.Checks()["qufop-lock-a"]; got != "passing" {
		t.Errorf("qufop-lock-a is %s after an update, want passing", got)
	}
	gone(t, s, a)

	// §15 set critical by an update: at once. A check in warning takes a
	// session; only critical invalidates.
	a2 := createSession(t, s, `{"Name":"a2","LockDelay":"2s","NodeChecks":["serfHealth"],"ServiceChecks":[{"ID":"qufop-lock-a"}]}`)
	do(t, s, "PUT", key+"?release="+other, "free").want(t, 200, jsonWrite, "true\n")
	do(t, s, "PUT", key+"?acquire="+a2+"&flags="+lockFlags, "holder-a2").want(t, 200, jsonWrite, "true\n")
	do(t, s, "PUT", "/v1/agent/check/update/qufop-lock-a", `{"Status":"critical","Output":"stopping"}`).want(t, 200, agentOK, "")
	gone(t, s, a2)
	do(t, s, "PUT", "/v1/agent/check/update/qufop-lock-a", `{"Status":"warning"}`).want(t, 200, agentOK, "")
	warn := createSession(t, s, `{"Name":"warn","ServiceChecks":[{"ID":"qufop-lock-a"}]}`)
	do(t, s, "PUT", "/v1/agent/check/update/qufop-lock-a", `{"Status":"passing"}`).want(t, 200, agentOK, "")
	alive(t, s, warn)
	s.Advance(2 * time.Second) // a2's lock delay

	// §16 deregistering the service invalidates its sessions, with the
	// lock delay; then the service and check are unknown.
	a3 := createSession(t, s, `{"Name":"a3","LockDelay":"2s","NodeChecks":["serfHealth"],"ServiceChecks":[{"ID":"qufop-lock-a"}]}`)
	do(t, s, "PUT", key+"?acquire="+a3+"&flags="+lockFlags, "holder-a3").want(t, 200, jsonWrite, "true\n")
	do(t, s, "PUT", "/v1/agent/service/deregister/qufop-lock-a", "").want(t, 200, agentOK, "")
	gone(t, s, a3)
	gone(t, s, warn)
	do(t, s, "PUT", key+"?acquire="+other+"&flags="+lockFlags, "holder-o").want(t, 200, jsonWrite, "false\n")
	s.Advance(2 * time.Second)
	do(t, s, "PUT", key+"?acquire="+other+"&flags="+lockFlags, "holder-o").want(t, 200, jsonWrite, "true\n")
	do(t, s, "PUT", "/v1/agent/service/deregister/qufop-lock-a", "").want(t, 404, plainText,
		`Unknown service ID "qufop-lock-a". Ensure that the service ID is passed, not the service name.`)
	do(t, s, "PUT", "/v1/agent/check/update/qufop-lock-a", `{"Status":"passing"}`).want(t, 404, plainText,
		`Unknown check ID "qufop-lock-a". Ensure that the check ID is passed, not the check name.`)
	do(t, s, "PUT", "/v1/agent/check/deregister/qufop-lock-a", "").want(t, 404, plainText,
		`Unknown check ID "qufop-lock-a". Ensure that the check ID is passed, not the check name.`)

	// §17 a clean stop (release, destroy, deregister): the next one
	// acquires at once.
	do(t, s, "PUT", "/v1/agent/service/register", `{"Name":"qufop-lock","ID":"qufop-lock-c","Check":{"CheckID":"qufop-lock-c","TTL":"5s","Status":"passing","DeregisterCriticalServiceAfter":"1m"}}`).
		want(t, 200, agentOK, "")
	do(t, s, "PUT", key+"?release="+other, "free").want(t, 200, jsonWrite, "true\n")
	c := createSession(t, s, `{"Name":"c","LockDelay":"2s","NodeChecks":["serfHealth"],"ServiceChecks":[{"ID":"qufop-lock-c"}]}`)
	do(t, s, "PUT", key+"?acquire="+c+"&flags="+lockFlags, "holder-c").want(t, 200, jsonWrite, "true\n")
	do(t, s, "PUT", key+"?release="+c+"&flags="+lockFlags, "holder-c").want(t, 200, jsonWrite, "true\n")
	do(t, s, "PUT", "/v1/session/destroy/"+c, "").want(t, 200, jsonWrite, "true\n")
	do(t, s, "PUT", "/v1/agent/service/deregister/qufop-lock-c", "").want(t, 200, agentOK, "")
	do(t, s, "PUT", key+"?acquire="+other+"&flags="+lockFlags, "holder-o").want(t, 200, jsonWrite, "true\n")

	// §18 a service critical for DeregisterCriticalServiceAfter is
	// reaped; one without it (qufop-lock-b) stays.
	do(t, s, "PUT", "/v1/agent/service/register", `{"Name":"qufop-lock","ID":"qufop-lock-d","Check":{"CheckID":"qufop-lock-d","TTL":"2s","Status":"passing","DeregisterCriticalServiceAfter":"1m"}}`).
		want(t, 200, agentOK, "")
	s.Advance(2 * time.Second)
	if got := s.Checks()["qufop-lock-d"]; got != "critical" {
		t.Errorf("qufop-lock-d is %q 2 s after its registration, want critical", got)
	}
	s.Advance(59 * time.Second)
	if got := s.AgentServices(); len(got) != 2 {
		t.Errorf("agent services %v 59 s after the check went critical, want qufop-lock-b and -d", got)
	}
	s.Advance(time.Second)
	if got := s.AgentServices(); len(got) != 1 || got[0] != "qufop-lock-b" {
		t.Errorf("agent services %v a minute after the check went critical, want qufop-lock-b only", got)
	}

	// §19 node checks are not modelled (a critical one would take every
	// service of the node out of ?passing).
	do(t, s, "PUT", "/v1/agent/check/register", `{"ID":"node-ttl","Name":"node ttl","TTL":"2s","Status":"passing"}`).
		want(t, 400, plainText, "consulfake: node checks are not modelled (give ServiceID)")
	do(t, s, "PUT", "/v1/agent/check/deregister/node-ttl", "").want(t, 404, plainText,
		`Unknown check ID "node-ttl". Ensure that the check ID is passed, not the check name.`)
}

// §13b which checks a session gets; §13c what consul/api sends.
func TestSessionCheckDefaults(t *testing.T) {
	s := New()
	defer s.Close()
	do(t, s, "PUT", "/v1/agent/service/register", `{"Name":"qufop-lock","ID":"qufop-lock-e","Check":{"CheckID":"qufop-lock-e","TTL":"30s","Status":"passing","DeregisterCriticalServiceAfter":"1m"}}`).
		want(t, 200, agentOK, "")
	cases := []struct {
		body, name, checks string
		invalidated        bool // by deregistering qufop-lock-e
	}{
		{`{"Name":"svc-only","ServiceChecks":[{"ID":"qufop-lock-e"}]}`, "svc-only", serfOnly + lockCheckE, true},
		{`{"Name":"checks-serf","Checks":["serfHealth"]}`, "checks-serf", serfOnly + noSvcChecks, false},
		{`{"Name":"nodechecks-empty","NodeChecks":[],"ServiceChecks":[{"ID":"qufop-lock-e"}]}`, "nodechecks-empty", noNodeChecks + lockCheckE, true},
		{`{"Name":"none","NodeChecks":[]}`, "none", noNodeChecks + noSvcChecks, false},
		{`{"Name":"checks-empty","Checks":[]}`, "checks-empty", noNodeChecks + noSvcChecks, false},
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i] = createSession(t, s, c.body)
		r := do(t, s, "GET", "/v1/session/info/"+ids[i], "")
		r.want(t, 200, nil, sessionChecksBody(ids[i], c.name, 15*time.Second, "", c.checks, index(t, r)))
	}
	do(t, s, "PUT", "/v1/agent/service/deregister/qufop-lock-e", "").want(t, 200, agentOK, "")
	for i, c := range cases {
		if c.invalidated {
			gone(t, s, ids[i])
		} else {
			alive(t, s, ids[i])
		}
	}

	// §13c
	do(t, s, "PUT", "/v1/agent/service/register", `{"ID":"qufop-lock-x","Name":"qufop-lock","Meta":{"lock_key":"qufop/exp/lock"},`+
		`"Check":{"CheckID":"qufop-lock-x","TTL":"5s","Status":"passing","DeregisterCriticalServiceAfter":"1m"},"Checks":null}`).want(t, 200, agentOK, "")
	id := createSession(t, s, `{"Behavior":"release","LockDelay":"4000ms","Name":"api","NodeChecks":["serfHealth"],"ServiceChecks":[{"ID":"qufop-lock-x","Namespace":""}],"TTL":"10s"}`)
	r := do(t, s, "GET", "/v1/session/info/"+id, "")
	r.want(t, 200, nil, sessionChecksBody(id, "api", 4*time.Second, "10s",
		serfOnly+strings.ReplaceAll(lockCheckE, "qufop-lock-e", "qufop-lock-x"), index(t, r)))
	do(t, s, "PUT", "/v1/session/create", `{"CreateIndex":0,"ID":"","Name":"a","Node":"","LockDelay":2000000000,"Behavior":"release","TTL":"10s","Checks":null,"NodeChecks":null,"ServiceChecks":null}`).
		want(t, 500, plainText, "Must provide Node")
}

// While the agent has no servers its own endpoints still answer (the
// checks live on it), but what happens to a check reaches the sessions
// only once the servers are back.
func TestAgentChecksWithoutServers(t *testing.T) {
	s := New()
	defer s.Close()
	do(t, s, "PUT", "/v1/agent/service/register", `{"Name":"qufop-lock","ID":"qufop-lock-a","Check":{"CheckID":"qufop-lock-a","TTL":"5s","Status":"passing"}}`).
		want(t, 200, agentOK, "")
	a := createSession(t, s, `{"Name":"a","LockDelay":"1s","ServiceChecks":[{"ID":"qufop-lock-a"}]}`)
	s.SetDown(true)
	do(t, s, "PUT", "/v1/session/renew/"+a, "").want(t, 500, nil, DownMessage)
	do(t, s, "PUT", "/v1/agent/check/update/qufop-lock-a", `{"Status":"passing"}`).want(t, 200, agentOK, "")
	s.Advance(5 * time.Second)
	if got := s.Checks()["qufop-lock-a"]; got != "critical" {
		t.Errorf("the check is %q after its TTL, want critical", got)
	}
	if len(s.Sessions()) != 1 {
		t.Error("the session went while the agent could not tell the servers")
	}
	s.SetDown(false)
	gone(t, s, a)
}
