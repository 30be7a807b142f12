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
// own: one leads, it is killed with SIGKILL (no release: Consul has to
// expire its session), and another takes over; then the new leader stops
// on SIGTERM (an explicit release) and a third takes over at once.
//
// It asserts no duration: it waits (generously) for each leader and logs
// how long the handovers took.
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
	holder := func() string {
		p, _, err := c.KV().Get(key, nil)
		if err != nil || p == nil || p.Session == "" {
			return ""
		}
		return string(p.Value)
	}

	a := startElector(t, bin, addr, key, "a")
	a.waitFor(t, "leading")
	require.Equal(t, "a", holder())
	b := startElector(t, bin, addr, key, "b")
	require.Eventually(t, func() bool {
		ss, _, err := c.Session().List(nil)
		return err == nil && len(ss) == 2
	}, 2*time.Minute, 100*time.Millisecond, "b has no session")
	require.False(t, b.said("leading"), "b leads while a does")

	// a dies: Consul invalidates its session 2 × TTL after its last
	// renewal, then the lock delay runs, then b's next try takes it.
	killed := time.Now()
	require.NoError(t, a.cmd.Process.Kill())
	a.wait()
	b.waitFor(t, "leading")
	t.Logf("b leads %s after a was killed (session TTL %s: Consul expires it after up to 2 × TTL, lock delay %s, consul/api retries 5 s after a refusal)",
		time.Since(killed).Round(100*time.Millisecond), consul.DefaultLockTTL, consul.DefaultLockDelay)
	require.Equal(t, "b", holder())

	// b stops: it releases the lock, and c takes it without a lock delay.
	third := startElector(t, bin, addr, key, "c")
	require.Eventually(t, func() bool {
		ss, _, err := c.Session().List(nil)
		return err == nil && len(ss) == 2
	}, 2*time.Minute, 100*time.Millisecond, "c has no session")
	stopped := time.Now()
	require.NoError(t, b.cmd.Process.Signal(syscall.SIGTERM))
	third.waitFor(t, "leading")
	t.Logf("c leads %s after b got SIGTERM", time.Since(stopped).Round(10*time.Millisecond))
	require.Zero(t, b.wait(), "b's exit status after SIGTERM")
	require.True(t, b.said("stopped"))
	require.Equal(t, "c", holder())

	require.NoError(t, third.cmd.Process.Signal(syscall.SIGTERM))
	require.Zero(t, third.wait())
	require.Eventually(t, func() bool {
		ss, _, err := c.Session().List(nil)
		return err == nil && len(ss) == 0 && holder() == ""
	}, 2*time.Minute, 100*time.Millisecond, "sessions left after every elector stopped")
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
