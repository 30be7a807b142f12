package consul

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/cluster/consul/consulfake"
)

func fastOpts() CatalogOptions {
	return CatalogOptions{
		WaitTime:    30 * time.Second,
		FirstWait:   2 * time.Second,
		MinInterval: 10 * time.Millisecond,
		BackoffBase: 20 * time.Millisecond,
		BackoffMax:  100 * time.Millisecond,
	}
}

func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCatalogHealthy(t *testing.T) {
	s := consulfake.New()
	defer s.Close()
	s.Register("ufop-demo", "a", "127.0.0.1", 28938, []string{"v1"})
	s.Register("ufop-demo", "b", "", 27936, []string{"canary", "v2"}) // no service address: node's
	s.Register("ufop-other", "o", "127.0.0.1", 1, []string{"v7"})
	c := NewCatalog(newClient(t, s), fastOpts())
	defer c.Close()

	// The first call waits for the first answer.
	got := c.Healthy("demo")
	want := []cluster.Endpoint{
		{ID: "a", Addr: "127.0.0.1:28938", Version: 1},
		{ID: "b", Addr: "127.0.0.1:27936", Version: 2},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Healthy = %v, want %v", got, want)
	}
	// Callers own the slice.
	got[0].Addr = "mutated"
	if c.Healthy("demo")[0].Addr != "127.0.0.1:28938" {
		t.Fatal("Healthy shares its cache with callers")
	}
	if st, ok := c.Status("demo"); !ok || st.Service != "ufop-demo" || st.Index == 0 || st.Failures != 0 {
		t.Errorf("status %+v %v", st, ok)
	}

	// A check goes critical: the instance leaves the view promptly (the
	// blocking query returns on the change, not at WaitTime = 30 s).
	eventually(t, "watcher blocking", 2*time.Second, func() bool { return s.Waiting() >= 1 })
	start := time.Now()
	s.SetHealth("a", false)
	eventually(t, "critical instance removed", time.Second, func() bool { return len(c.Healthy("demo")) == 1 })
	t.Logf("view updated %v after the check went critical", time.Since(start))
	if got := c.Healthy("demo"); got[0].ID != "b" {
		t.Fatalf("after critical: %v", got)
	}
	// Passing again: back in. Deregistered: out. New version: in.
	s.SetHealth("a", true)
	eventually(t, "instance back", time.Second, func() bool { return len(c.Healthy("demo")) == 2 })
	s.Deregister("b")
	s.Register("ufop-demo", "c", "127.0.0.2", 9100, []string{"v3"})
	eventually(t, "b gone, c in", time.Second, func() bool {
		return fmt.Sprint(c.Healthy("demo")) == fmt.Sprint([]cluster.Endpoint{
			{ID: "a", Addr: "127.0.0.1:28938", Version: 1},
			{ID: "c", Addr: "127.0.0.2:9100", Version: 3},
		})
	})

	// An unknown UFOP is an empty view (after the first answer), and the
	// other service's watcher is separate.
	if got := c.Healthy("none"); len(got) != 0 {
		t.Fatalf("unknown: %v", got)
	}
	if got := c.Healthy("other"); len(got) != 1 || got[0].Version != 7 {
		t.Fatalf("other: %v", got)
	}
}

// TestCatalogNoNetworkOnHealthy: once the watcher is blocked in its query,
// any number of Healthy calls sends nothing to Consul.
func TestCatalogNoNetworkOnHealthy(t *testing.T) {
	s := consulfake.New()
	defer s.Close()
	s.Register("ufop-demo", "a", "127.0.0.1", 1, []string{"v1"})
	c := NewCatalog(newClient(t, s), fastOpts())
	defer c.Close()
	if len(c.Healthy("demo")) != 1 {
		t.Fatal("no first view")
	}
	eventually(t, "watcher blocking", 2*time.Second, func() bool { return s.Waiting() == 1 })
	before := s.Requests()
	for range 100000 {
		if len(c.Healthy("demo")) != 1 {
			t.Fatal("view changed")
		}
	}
	if n := s.Requests() - before; n != 0 {
		t.Fatalf("100000 Healthy calls sent %d requests", n)
	}
}

func TestCatalogConsulDown(t *testing.T) {
	s := consulfake.New()
	defer s.Close()
	s.Register("ufop-demo", "a", "127.0.0.1", 1, []string{"v1"})
	s.Register("ufop-demo", "b", "127.0.0.1", 2, []string{"v1"})
	var (
		mu   sync.Mutex
		logs []string
	)
	opts := fastOpts()
	opts.Logf = func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprintf(f, a...))
	}
	c := NewCatalog(newClient(t, s), opts)
	defer c.Close()
	if len(c.Healthy("demo")) != 2 {
		t.Fatal("no first view")
	}
	eventually(t, "watcher blocking", 2*time.Second, func() bool { return s.Waiting() == 1 })

	// Consul goes away (the held query fails too): the last view serves,
	// and the watcher backs off instead of hammering.
	s.SetDown(true)
	eventually(t, "failure noticed", 2*time.Second, func() bool {
		st, _ := c.Status("demo")
		return st.Failures > 0
	})
	before := s.Requests()
	time.Sleep(500 * time.Millisecond)
	if n := s.Requests() - before; n > 15 { // back-off ≤ 100 ms: ~5-10 tries
		t.Errorf("%d requests in 500 ms while down: no back-off", n)
	}
	if got := c.Healthy("demo"); len(got) != 2 {
		t.Fatalf("while down: %v, want the last view", got)
	}
	st, _ := c.Status("demo")
	if st.LastError == "" {
		t.Errorf("status while down: %+v", st)
	}

	// Changes while down show up once it is back.
	s.SetDown(false)
	s.Deregister("b")
	eventually(t, "change after recovery", 2*time.Second, func() bool { return len(c.Healthy("demo")) == 1 })
	s.Register("ufop-demo", "d", "127.0.0.1", 4, []string{"v2"})
	eventually(t, "later change", time.Second, func() bool { return len(c.Healthy("demo")) == 2 })
	if st, _ := c.Status("demo"); st.Failures != 0 {
		t.Errorf("status after recovery: %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logs) != 2 {
		t.Errorf("logs: %q, want one line on loss and one on recovery", logs)
	}
}

// TestCatalogIndexBackwards: an X-Consul-Index lower than the one the
// watcher holds (snapshot restore) resets the watch instead of blocking on
// an index that will not come back soon.
func TestCatalogIndexBackwards(t *testing.T) {
	s := consulfake.New()
	defer s.Close()
	for i := range 30 {
		s.Register("ufop-filler", fmt.Sprint("f", i), "127.0.0.1", 1, nil)
	}
	s.Register("ufop-demo", "a", "127.0.0.1", 1, []string{"v1"})
	opts := fastOpts()
	opts.WaitTime = 200 * time.Millisecond // the query held on the old index ends soon
	c := NewCatalog(newClient(t, s), opts)
	defer c.Close()
	if len(c.Healthy("demo")) != 1 {
		t.Fatal("no first view")
	}
	high, _ := c.Status("demo")
	s.SetIndex(25)
	eventually(t, "index reset", 2*time.Second, func() bool {
		st, _ := c.Status("demo")
		return st.Index <= 25
	})
	// From the lower index on, changes are seen promptly again.
	s.Register("ufop-demo", "b", "127.0.0.1", 2, []string{"v1"})
	eventually(t, "change after reset", time.Second, func() bool { return len(c.Healthy("demo")) == 2 })
	if st, _ := c.Status("demo"); st.Index >= high.Index {
		t.Errorf("index %d, was %d before the restore", st.Index, high.Index)
	}
}

func TestCatalogClose(t *testing.T) {
	s := consulfake.New()
	defer s.Close()
	s.Register("ufop-demo", "a", "127.0.0.1", 1, []string{"v1"})
	c := NewCatalog(newClient(t, s), fastOpts())
	c.Healthy("demo")
	eventually(t, "watcher blocking", 2*time.Second, func() bool { return s.Waiting() == 1 })
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Close did not stop the watcher")
	}
	eventually(t, "held query ended", 2*time.Second, func() bool { return s.Waiting() == 0 })
	if len(c.Healthy("demo")) != 1 {
		t.Error("last view lost after Close")
	}
	before := s.Requests()
	if got := c.Healthy("new"); got != nil {
		t.Errorf("Healthy of a new name after Close: %v", got)
	}
	time.Sleep(50 * time.Millisecond)
	if s.Requests() != before {
		t.Error("a watcher started after Close")
	}
}

func TestVersionTag(t *testing.T) {
	for tags, want := range map[string]int{"v1": 1, "canary v12": 12, "vx v3": 3, "": 0, "v0": 0, "version": 0} {
		if got := version(strings.Fields(tags)); got != want {
			t.Errorf("version(%q) = %d, want %d", tags, got, want)
		}
	}
}

// TestCatalogFirstCallWhileDown: with Consul away from the start, the first
// Healthy waits at most FirstWait and returns an empty view; the view fills
// in once Consul answers.
func TestCatalogFirstCallWhileDown(t *testing.T) {
	s := consulfake.New()
	defer s.Close()
	s.Register("ufop-demo", "a", "127.0.0.1", 1, []string{"v1"})
	s.SetDown(true)
	opts := fastOpts()
	opts.FirstWait = 200 * time.Millisecond
	c := NewCatalog(newClient(t, s), opts)
	defer c.Close()
	start := time.Now()
	if got := c.Healthy("demo"); len(got) != 0 {
		t.Fatalf("while down: %v", got)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > time.Second {
		t.Errorf("first call took %v, want about FirstWait (200ms)", d)
	}
	start = time.Now()
	c.Healthy("demo")
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("second call waited %v", d)
	}
	s.SetDown(false)
	eventually(t, "view after Consul is back", 2*time.Second, func() bool { return len(c.Healthy("demo")) == 1 })
}
