package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// load runs clients that each GET url in a loop until stopped, and
// counts what failed.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(url string, clients int) *load {
	l := &load{stop: make(chan struct{})}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				r, err := http.Get(url)
				if err != nil {
					l.fail(err.Error())
					continue
				}
				b, _ := io.ReadAll(r.Body)
				r.Body.Close()
				if r.StatusCode != http.StatusOK {
					l.fail(fmt.Sprintf("%d %s", r.StatusCode, b))
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

func (l *load) fail(s string) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.failures) < 5 {
		l.failures = append(l.failures, s)
	}
	l.mu.Unlock()
}

func (l *load) end(t *testing.T, what string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("%s: %d requests served, %d failed", what, l.ok.Load(), l.failed.Load())
	assert.Zero(t, l.failed.Load(), "%s: failed requests: %v", what, l.failures)
}

type infoJSON struct {
	Desired      int                     `json:"desired"`
	ScalePolicy  *struct{ Min, Max int } `json:"scale_policy"`
	ScaleHistory []struct {
		From    int    `json:"from"`
		To      int    `json:"to"`
		By      string `json:"by"`
		Skipped bool   `json:"skipped"`
	} `json:"scale_history"`
}

func (p *platform) info(name string) infoJSON {
	var in infoJSON
	out := p.must("info", name, "--json")
	require.NoError(p.t, json.Unmarshal([]byte(out), &in), out)
	return in
}

// waitCount waits (generously: containers start on a loaded machine) until
// the UFOP runs exactly n instances, all healthy.
func (p *platform) waitCount(name string, n int) {
	p.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		s := p.state(name)
		h := 0
		for _, in := range s.Instances {
			if in.Healthy {
				h++
			}
		}
		if h == n && len(s.Instances) == n {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("ufop %s never ran %d healthy instances: %+v", name, n, s.Instances)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The scaler on `qufop dev` with real Docker: a slow UFOP (200 ms a step,
// concurrency 2) at one instance grows to 4 under 8 concurrent clients,
// shrinks back to min afterwards, and no request fails; from min 0 the
// first request is served, not refused.
func TestScalerOnDev(t *testing.T) {
	p := startPlatform(t)
	demoBin := filepath.Join(p.work, "ufop-demo")
	goBuild(t, demoBin, "./examples/ufop-demo", false)
	name := fmt.Sprintf("e2e-slow-%d", time.Now().UnixNano()%1e6)
	src := demoSource(t, demoBin, "handler", "")
	spec := filepath.Join(src, "ufop.yaml")
	y := strings.Replace(readFile(t, spec), "concurrency: 8", "concurrency: 2", 1)
	writeFile(t, spec, y)

	p.must("reg", name, "-m", "1")
	p.must("build", name, "-f", src)
	p.must("chver", name, "-c", "1")
	p.must("resize", name, "-n", "1")
	out := p.must("scale-policy", name, "--min", "1", "--max", "4", "--target", "2",
		"--interval", "1s", "--down-cooldown", "2s", "--down-window", "4s")
	t.Log(out)
	url := p.base + "/demo/sample.jpg?" + name + "/sleep/200"

	burst := startLoad(url, 8)
	p.waitCount(name, 4)
	// Steady at 4 for a while: no more, no flapping.
	time.Sleep(3 * time.Second)
	assert.Equal(t, 4, p.info(name).Desired)
	// An upgrade under the burst keeps the count the scaler set.
	src2 := demoSource(t, demoBin, "handler", `BUILD: "2"`)
	writeFile(t, filepath.Join(src2, "ufop.yaml"), strings.Replace(readFile(t, filepath.Join(src2, "ufop.yaml")), "concurrency: 8", "concurrency: 2", 1))
	p.must("build", name, "-f", src2)
	p.must("chver", name, "-c", "2")
	p.must("upgrade", name)
	s := p.state(name)
	assert.Equal(t, 2, s.Deployed)
	assert.Len(t, s.Instances, 4, "the upgrade kept the scaler's count: %+v", s.Instances)
	burst.end(t, "burst")

	// After the burst, one client keeps calling while the count goes back
	// to min: the instances that go finish what they have.
	trickle := startLoad(url, 1)
	p.waitCount(name, 1)
	trickle.end(t, "scale-in")

	in := p.info(name)
	var ups, downs int
	for _, e := range in.ScaleHistory {
		if e.By == "scaler" && !e.Skipped {
			if e.To > e.From {
				ups++
			} else {
				downs++
			}
		}
	}
	assert.GreaterOrEqual(t, ups, 1, "history: %+v", in.ScaleHistory)
	assert.GreaterOrEqual(t, downs, 1, "history: %+v", in.ScaleHistory)

	// Bad values get a one-line error.
	out = p.fails("scale-policy", name, "--min", "3", "--max", "2", "--target", "2")
	assert.Contains(t, out, "--min 3 is over --max 2")

	// From min 0: the count goes to 0 when idle, and the first request
	// starts an instance and is served.
	p.must("scale-policy", name, "--min", "0", "--max", "2", "--target", "2",
		"--interval", "1s", "--down-cooldown", "1s", "--down-window", "2s")
	p.waitCount(name, 0)
	code, _, body := p.get("/demo/sample.jpg?" + name + "/sleep/1")
	assert.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"slept_ms":1`)
	// The same after a restart of qufop dev at 0 instances (nothing to
	// adopt: the scaler deploys the UFOP again).
	p.waitCount(name, 0)
	p.stop()
	p.start()
	code, _, body = p.get("/demo/sample.jpg?" + name + "/sleep/1")
	assert.Equal(t, http.StatusOK, code, body)

	// Manual counts again: resize works, outside the old range too.
	p.must("scale-policy", name, "--off")
	p.must("resize", name, "-n", "3")
	p.waitCount(name, 3)
	p.must("unreg", name)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
}
