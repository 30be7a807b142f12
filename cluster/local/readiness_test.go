package local

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/qufop/qufop/cluster"
)

// readinessCase is a program without a health endpoint (or one that does
// not serve it), in the shapes of Qiniu v1 programs and of broken ones, and
// what the readiness check makes of it.
type readinessCase struct {
	name     string
	mode     string // testdata/server's MODE, or "deaf": listens nowhere
	protocol string
	health   string
	ready    bool
	why      string // in the message of an instance that is not ready
}

var readinessCases = []readinessCase{
	// Without a health path and not "uop": the port accepting is enough.
	{name: "accept-tcp", mode: "accept", protocol: "handler", ready: true},
	{name: "close-tcp", mode: "close", protocol: "handler", ready: true},
	{name: "405-tcp", mode: "405", protocol: "handler", ready: true},
	{name: "deaf-tcp", mode: "deaf", protocol: "handler", why: "connection refused"},
	// "uop" without a health path: any HTTP answer, of any status.
	{name: "405-uop", mode: "405", protocol: "uop", ready: true},
	{name: "accept-uop", mode: "accept", protocol: "uop", why: "no HTTP answer within"},
	{name: "close-uop", mode: "close", protocol: "uop", why: "connection closed without an HTTP answer"},
	{name: "garbage-uop", mode: "garbage", protocol: "uop", why: "not an HTTP answer"},
	{name: "deaf-uop", mode: "deaf", protocol: "uop", why: "connection refused"},
	// A health path keeps its meaning: 2xx.
	{name: "405-health", mode: "405", protocol: "uop", health: "/health", why: "GET /health: 405 Method Not Allowed"},
}

// checkReadiness deploys w and checks that it is ready, or that it never
// is, for the reason c.why. A program that is not ready is given a short
// deployment; then the test waits until the instance has been probed and
// found not ready UnhealthyAfter times, and checks that it has never been
// healthy (its state would be "running").
func checkReadiness(t *testing.T, o Runtime, w cluster.Workload, c readinessCase, addrKind string) {
	t.Helper()
	if c.ready {
		if err := o.Deploy(context.Background(), w); err != nil {
			t.Fatal(err)
		}
		ins := instances(t, o, w.Name)
		if len(ins) != 1 || !ins[0].Healthy || ins[0].State != StateRunning || ins[0].AddrKind != addrKind {
			t.Fatalf("instances: %+v", ins)
		}
		if eps := o.Healthy(w.Name); len(eps) != 1 || eps[0].Addr != ins[0].Addr {
			t.Fatalf("catalog: %+v", eps)
		}
		return
	}
	if err := failingDeploy(o, w, 2*time.Second); err == nil || !strings.Contains(err.Error(), "0 of 1 instances healthy") {
		t.Fatalf("deploy of a program that is not ready: %v", err)
	}
	waitFor(t, patience, "the reason in the message", func() bool {
		m := instances(t, o, w.Name)[0].Message
		return strings.HasPrefix(m, "not healthy yet: ") && strings.Contains(m, c.why)
	})
	if in := instances(t, o, w.Name)[0]; in.Healthy || in.State != StateStarting || in.Restarts != 0 {
		t.Fatalf("instance: %+v", in)
	}
	if eps := o.Healthy(w.Name); len(eps) != 0 {
		t.Fatalf("catalog: %+v", eps)
	}
}

func TestProcessReadinessWithoutHealthPath(t *testing.T) {
	bin := testServer(t)
	p := NewProcess(ProcessConfig{Options: testOptions(), LogDir: t.TempDir()})
	t.Cleanup(func() { p.Close() })
	for _, c := range readinessCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := cluster.Workload{
				Name: c.name, Version: 1, Dir: t.TempDir(), Run: "exec " + bin,
				Env: map[string]string{"MODE": c.mode}, HealthPath: c.health, Protocol: c.protocol,
				Count: 1, KillTimeout: 10 * time.Second,
			}
			if c.mode == "deaf" {
				w.Run = "exec sleep 600"
			}
			checkReadiness(t, p, w, c, "host")
		})
	}
}

// busyboxShapes are the readiness cases' programs on busybox: nc -ll runs
// its -e program on each connection.
var busyboxShapes = map[string]string{
	"accept":  `exec nc -ll -p 9100 -e sh -c 'exec cat >/dev/null'`,
	"close":   `exec nc -ll -p 9100 -e true`,
	"garbage": `exec nc -ll -p 9100 -e sh -c 'read -r l; echo hello there; exec cat >/dev/null'`,
	"405": `exec nc -ll -p 9100 -e sh -c 'while read -r l; do [ ${#l} -le 1 ] && break; done; ` +
		`printf "HTTP/1.1 405 Method Not Allowed\r\nAllow: POST\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"'`,
	"deaf": `exec sleep 600`,
}

func TestDockerReadinessWithoutHealthPath(t *testing.T) {
	cli, img, pid := dockerSetup(t)
	d := newDocker(t, cli, pid, testOptions())
	for _, c := range readinessCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := cluster.Workload{
				Name: c.name, Version: 1, Image: img, Run: busyboxShapes[c.mode], Port: 9100,
				HealthPath: c.health, Protocol: c.protocol, CPUs: 1, MemoryMB: 32, Count: 1, KillTimeout: time.Second,
			}
			checkReadiness(t, d, w, c, "bridge")
		})
	}
}

// The unhealthy-after, grace and restart rules hold for the checks without
// a health path too: a program that stops answering HTTP ("uop"), or stops
// listening, leaves the catalog and is restarted.
func TestProcessUnhealthyRestartWithoutHealthPath(t *testing.T) {
	bin := testServer(t)
	opts := testOptions()
	opts.UnhealthyGrace = 500 * time.Millisecond
	p := NewProcess(ProcessConfig{Options: opts, LogDir: t.TempDir()})
	t.Cleanup(func() { p.Close() })
	for _, c := range []struct{ protocol, sick, why string }{
		{"uop", "close", "connection closed without an HTTP answer"},
		{"handler", "stop", "connection refused"},
	} {
		t.Run(c.protocol, func(t *testing.T) {
			t.Parallel()
			name := "sickly-" + c.protocol
			w := cluster.Workload{
				Name: name, Version: 1, Dir: t.TempDir(), Run: "exec " + bin,
				Env: map[string]string{"MODE": "405", "SICK": c.sick}, Protocol: c.protocol,
				Count: 1, KillTimeout: 10 * time.Second,
			}
			if err := p.Deploy(context.Background(), w); err != nil {
				t.Fatal(err)
			}
			if s, err := httpGet(instances(t, p, name)[0].Addr, "/sick"); err != nil {
				t.Fatalf("GET /sick: %q %v", s, err)
			}
			// Restarted because it was unhealthy for longer than the grace,
			// and healthy again; the message says so.
			waitFor(t, patience, "restarted and healthy", func() bool {
				in := instances(t, p, name)[0]
				return in.Restarts == 1 && in.Healthy && len(p.Healthy(name)) == 1 &&
					strings.Contains(in.Message, "last restart: unhealthy for more than") && strings.Contains(in.Message, c.why)
			})
		})
	}
}
