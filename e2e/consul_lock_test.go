package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster/consul"
)

// TestRealConsulLock runs electors (cluster/consul.Elector, in the
// e2e/testdata/elector program: the scaler's lock without the scaler) as
// separate processes against a real `consul agent -dev` on ports of its
// own. One leads and is killed with SIGKILL (no release: its TTL check
// runs out, Consul invalidates its session, and the lock delay runs), and
// another takes over; that is done twice. Then the leader stops on SIGTERM
// (an explicit release) and the next takes over at once. At the end only
// the killed electors' services are left on the agent, critical (the
// agent reaps them a minute later).
//
// It asserts no duration: it waits (generously) for each leader and logs
// how long the takeovers took.
func TestRealConsulLock(t *testing.T) {
	consulBin, err := exec.LookPath("consul")
	if err != nil {
		t.Skip("skipping: needs `consul` (v1.16.3) on PATH; it cannot be installed from a package here")
	}
	port := func() string { return strconv.Itoa(freeTCPPort(t)) }
	httpPort := port()
	addr := "127.0.0.1:" + httpPort
	startAgent(t, consulBin, "http://"+addr+"/v1/status/leader",
		"agent", "-dev", "-client", "127.0.0.1", "-bind", "127.0.0.1",
		"-http-port", httpPort, "-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", port(), "-serf-wan-port", port(), "-server-port", port())
	cfg := consulapi.DefaultConfig()
	cfg.Address = addr
	c, err := consulapi.NewClient(cfg)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		leader, err := c.Status().Leader()
		return err == nil && leader != ""
	}, 90*time.Second, 250*time.Millisecond, "consul elected no leader")

	bin := filepath.Join(t.TempDir(), "elector")
	goBuild(t, bin, "./e2e/testdata/elector", false)
	const key = "qufop/e2e/lock"
	tm := consul.LockTimings(consul.DefaultLockTTL)
	t.Logf("TTL %s: check TTL %s, lock delay %s, heartbeat %s, step down %s",
		tm.TTL, tm.CheckTTL, tm.LockDelay, tm.Heartbeat, tm.StepDown)
	holder := func() (value, session string) {
		p, _, err := c.KV().Get(key, nil)
		if err != nil || p == nil || p.Session == "" {
			return "", ""
		}
		return string(p.Value), p.Session
	}
	sessions := func() int {
		ss, _, err := c.Session().List(nil)
		if err != nil {
			return -1
		}
		return len(ss)
	}
	// lockChecks returns the status of every elector's check on the
	// agent, by the elector's name (its service's meta).
	lockChecks := func() map[string]string {
		cs, err := c.Agent().ChecksWithFilter(fmt.Sprintf("ServiceName == %q", consul.DefaultLockService))
		require.NoError(t, err)
		svcs, err := c.Agent().ServicesWithFilter(fmt.Sprintf("Service == %q", consul.DefaultLockService))
		require.NoError(t, err)
		out := map[string]string{}
		for _, ch := range cs {
			require.Contains(t, svcs, ch.ServiceID)
			out[svcs[ch.ServiceID].Meta["elector"]] = ch.Status
		}
		return out
	}
	// sessionGone polls (every 20 ms) until session id is gone and
	// returns when it saw it gone.
	sessionGone := func(id string) <-chan time.Time {
		gone := make(chan time.Time, 1)
		go func() {
			deadline := time.Now().Add(2 * time.Minute)
			for time.Now().Before(deadline) {
				if se, _, err := c.Session().Info(id, nil); err == nil && se == nil {
					gone <- time.Now()
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			close(gone)
		}()
		return gone
	}

	a := startElector(t, bin, addr, key, "a")
	a.waitFor(t, "leading")
	value, _ := holder()
	require.Equal(t, "a", value)
	leader := a
	var takeovers []time.Duration
	for _, next := range []string{"b", "c"} {
		waiter := startElector(t, bin, addr, key, next)
		require.Eventually(t, func() bool { return sessions() == 2 }, 2*time.Minute, 100*time.Millisecond, "%s has no session", next)
		require.False(t, waiter.said("leading"), "%s leads while %s does", next, leader.name)

		// The leader dies: its check is no longer updated, the agent marks
		// it critical CheckTTL after the last update, Consul invalidates
		// the session at that moment, then the lock delay runs.
		_, sess := holder()
		require.NotEmpty(t, sess)
		killed := time.Now()
		require.NoError(t, leader.cmd.Process.Kill())
		gone := sessionGone(sess)
		leader.wait()
		waiter.waitFor(t, "leading")
		took := time.Since(killed)
		takeovers = append(takeovers, took)
		invalidated, ok := <-gone
		require.True(t, ok, "%s's session was never invalidated", leader.name)
		t.Logf("%s leads %s after %s was killed: its session was invalidated %s after the kill (check TTL %s after its last update), %s leads %s after that (lock delay %s)",
			next, took.Round(10*time.Millisecond), leader.name, invalidated.Sub(killed).Round(10*time.Millisecond), tm.CheckTTL,
			next, time.Since(invalidated).Round(10*time.Millisecond), tm.LockDelay)
		value, _ = holder()
		require.Equal(t, next, value)
		leader = waiter
	}
	t.Logf("takeovers after SIGKILL: %v (TTL %s)", takeovers, tm.TTL)

	// The leader stops: it releases the lock, and the next takes it
	// without a lock delay.
	last := startElector(t, bin, addr, key, "d")
	require.Eventually(t, func() bool { return sessions() == 2 }, 2*time.Minute, 100*time.Millisecond, "d has no session")
	stopped := time.Now()
	require.NoError(t, leader.cmd.Process.Signal(syscall.SIGTERM))
	last.waitFor(t, "leading")
	t.Logf("d leads %s after %s got SIGTERM", time.Since(stopped).Round(time.Millisecond), leader.name)
	require.Zero(t, leader.wait(), "%s's exit status after SIGTERM", leader.name)
	require.True(t, leader.said("stopped"))
	value, _ = holder()
	require.Equal(t, "d", value)

	require.NoError(t, last.cmd.Process.Signal(syscall.SIGTERM))
	require.Zero(t, last.wait())
	require.Eventually(t, func() bool {
		v, _ := holder()
		return sessions() == 0 && v == ""
	}, 2*time.Minute, 100*time.Millisecond, "sessions left after every elector stopped")
	// Those stopped cleanly deregistered their checks; the killed ones'
	// are left, critical, until the agent reaps them (a minute after they
	// went critical, or a little more).
	checks := lockChecks()
	t.Logf("checks left on the agent: %v", checks)
	for name, status := range checks {
		require.Contains(t, []string{"a", "b"}, name, "a check left by %s, which stopped cleanly", name)
		require.Equal(t, consulapi.HealthCritical, status, "%s's check", name)
	}
}

// elector is one elector process and what it printed.
type elector struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  []string
	news chan struct{} // closed and replaced on every line
	exit chan int
	log  *os.File
}

func startElector(t *testing.T, bin, addr, key, name string) *elector {
	t.Helper()
	e := &elector{name: name, news: make(chan struct{}), exit: make(chan int, 1)}
	e.cmd = exec.Command(bin, "--consul-addr", addr, "--lock-key", key, "--name", name)
	var err error
	e.log, err = os.Create(filepath.Join(t.TempDir(), name+".log"))
	require.NoError(t, err)
	e.cmd.Stderr = e.log
	stdout, err := e.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, e.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			e.mu.Lock()
			e.out = append(e.out, sc.Text())
			close(e.news)
			e.news = make(chan struct{})
			e.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stdout)
		err := e.cmd.Wait()
		code := 0
		if x, ok := err.(*exec.ExitError); ok {
			code = x.ExitCode()
		}
		e.exit <- code
	}()
	t.Cleanup(func() {
		_ = e.cmd.Process.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(e.log.Name())
			t.Logf("elector %s printed %q, log:\n%s", name, e.lines(), tail(string(b), 20))
		}
	})
	return e
}

func (e *elector) lines() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.out...)
}

func (e *elector) said(line string) bool {
	for _, l := range e.lines() {
		if l == line {
			return true
		}
	}
	return false
}

// waitFor waits (up to 2 min) until the elector printed line.
func (e *elector) waitFor(t *testing.T, line string) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		e.mu.Lock()
		news, got := e.news, strings.Contains("\n"+strings.Join(e.out, "\n")+"\n", "\n"+line+"\n")
		e.mu.Unlock()
		if got {
			return
		}
		select {
		case <-news:
		case code := <-e.exit:
			e.exit <- code
			t.Fatalf("elector %s exited (%d) before printing %q", e.name, code, line)
		case <-deadline:
			t.Fatal(fmt.Sprintf("elector %s did not print %q within 2 min (printed %q)", e.name, line, e.lines()))
		}
	}
}

// wait waits for the process to end and returns its exit status.
func (e *elector) wait() int {
	code := <-e.exit
	e.exit <- code
	return code
}
