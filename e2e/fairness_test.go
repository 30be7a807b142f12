package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/control/api"
)

// maxFloodRSS bounds the peak resident memory of `qufop dev` over the flood:
// bench/fairness.sh measures 110-120 MB for a longer and harder one.
const maxFloodRSS = 400 << 20

// TestFairnessUnderFlood is bench/fairness.sh cut short and without its
// timings: on `qufop dev --no-docker` (2 workers, 1 kept for paid work, a
// free queue of 2), a free user with no rate limit floods the gateway from
// 12 connections and fills the free queue, a second free user over its
// class's 5 requests a second floods from 4 more, while a paid user sends
// 30 requests one after the other. What must hold, whatever the machine's
// load: every paid request is served; the free users get only 200 and the
// refusals their limits give (503 naming the free queue, 573 naming the
// rate), each answered in Qiniu's JSON; the metrics count exactly the
// refusals the clients saw, by class, and none for the paid class; and the
// gateway's memory stays bounded.
func TestFairnessUnderFlood(t *testing.T) {
	work := t.TempDir()
	bin := filepath.Join(work, "qufop")
	goBuild(t, bin, "./cmd/qufop", true)
	img, err := os.ReadFile(filepath.Join("..", "testdata", "images", "storm-1920x1080.jpg"))
	require.NoError(t, err)
	dirs := map[string]string{}
	for _, b := range []string{"fa", "fb", "pb"} {
		dirs[b] = filepath.Join(work, b)
		require.NoError(t, os.Mkdir(dirs[b], 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dirs[b], "a.jpg"), img, 0o644))
	}

	base, pid := startDev(t, bin, work, "--workers", "2", "--paid-reserve", "1", "--queue-free", "2")
	ctx := context.Background()
	admin := client.New(base, auth.Credentials{AccessKey: ak, SecretKey: sk})
	for user, class := range map[string]string{"flooder": "free", "over": "free", "payer": "paid"} {
		_, err := admin.AddUser(ctx, user, class)
		require.NoError(t, err)
	}
	for b, owner := range map[string]string{"fa": "flooder", "fb": "over", "pb": "payer"} {
		_, err := admin.AddBucket(ctx, api.NewBucketRequest{Name: b, Dir: dirs[b], Owner: owner})
		require.NoError(t, err)
	}
	_, err = admin.SetClassLimits(ctx, "free", api.Limits{RPS: 5, Burst: 5})
	require.NoError(t, err)
	_, err = admin.SetUserLimits(ctx, "flooder", api.Limits{RPS: 1e6, Burst: 1e6})
	require.NoError(t, err)
	url := func(b string) string { return base + "/" + b + "/a.jpg?imageView2/2/w/200" }
	// The buckets and limits are read within a second of their records.
	require.Eventually(t, func() bool {
		st, _ := get(url("pb"))
		return st == http.StatusOK
	}, time.Minute, 50*time.Millisecond, "the paid bucket is not served")
	require.Eventually(t, func() bool {
		var n int
		for range 10 {
			if st, _ := get(url("fb")); st == 573 {
				n++
			}
		}
		return n > 0
	}, time.Minute, 100*time.Millisecond, "the free class's limit does not apply")
	before := scrape(t, base)

	// The floods run until the paid user is done.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[string]map[int]int{"fa": {}, "fb": {}} // bucket: status: count
	var odd []string
	flood := func(b string, conns int, want map[int]*regexp.Regexp) {
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					st, body := get(url(b))
					mu.Lock()
					answers[b][st]++
					if re, ok := want[st]; !ok || (re != nil && !re.MatchString(body)) {
						odd = append(odd, fmt.Sprintf("%s: %d %.200q", b, st, body))
					}
					mu.Unlock()
				}
			}()
		}
	}
	flood("fa", 12, map[int]*regexp.Regexp{
		200: nil,
		503: regexp.MustCompile(`^\{"code":503,"error":"server busy: the free queue is full \(2 waiting\), retry later"\}$`),
	})
	flood("fb", 4, map[int]*regexp.Regexp{
		200: nil,
		573: regexp.MustCompile(`^\{"code":573,"error":"user \\"over\\": over 5 requests per second \(burst 5\), slow down"\}$`),
		503: regexp.MustCompile(`the free queue is full`),
	})
	var paid []string
	for i := range 30 {
		st, body := get(url("pb"))
		if st != http.StatusOK {
			paid = append(paid, fmt.Sprintf("paid request %d: %d %.200q", i, st, body))
		}
	}
	close(stop)
	wg.Wait()
	after := scrape(t, base)
	peak := vmHWM(t, pid)

	t.Logf("free answers by status: flooder %v, over its limit %v; qufop dev VmHWM %d MB", answers["fa"], answers["fb"], peak>>20)
	assert.Empty(t, paid, "every paid request is served")
	assert.Empty(t, odd, "free users get 200 or the refusal their limits give")
	assert.Positive(t, answers["fa"][503], "the flooder filled the free queue")
	assert.Positive(t, answers["fb"][573], "the user over its rate got 573")
	assert.Positive(t, answers["fa"][200]+answers["fb"][200], "free work is not starved")
	delta := func(series string) int { return int(after[series] - before[series]) }
	assert.Equal(t, answers["fa"][503]+answers["fb"][503], delta(`qufop_gateway_queue_refused_total{class="free"}`))
	assert.Equal(t, 0, delta(`qufop_gateway_queue_refused_total{class="paid"}`))
	assert.Equal(t, answers["fb"][573], delta(`qufop_gateway_rate_limited_total{class="free",reason="rps"}`))
	assert.Equal(t, 0, delta(`qufop_gateway_rate_limited_total{class="paid",reason="rps"}`))
	assert.Less(t, peak, int64(maxFloodRSS), "peak RSS of qufop dev")
}

// floodClient keeps a connection per flooding goroutine (the default
// transport keeps two per host and would open a new one for most requests).
var floodClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// startDev runs `qufop dev --no-docker --quiet` with the test's admin keys
// and extra flags until the test ends; it returns its base URL and pid.
func startDev(t *testing.T, bin, work string, extra ...string) (string, int) {
	t.Helper()
	addr := freePort(t)
	logf, err := os.CreateTemp(work, "dev-*.log")
	require.NoError(t, err)
	data, err := os.MkdirTemp(work, "data-")
	require.NoError(t, err)
	args := append([]string{"dev", "--no-docker", "--quiet", "--data", data, "--listen", addr}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "QUFOP_ACCESS_KEY="+ak, "QUFOP_SECRET_KEY="+sk)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-done:
			assert.NoError(t, err, "qufop dev exit")
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
			t.Error("qufop dev did not stop on SIGINT")
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("qufop dev output:\n%s", tail(string(b), 40))
		}
	})
	base := "http://" + addr
	require.Eventually(t, func() bool {
		r, err := http.Get(base + "/health")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	}, 2*time.Minute, 50*time.Millisecond, "qufop dev did not come up")
	return base, cmd.Process.Pid
}

// get GETs url and returns the status and body (the body only for
// refusals; status 0 and the error on a transport error).
func get(url string) (int, string) {
	r, err := floodClient.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode == http.StatusOK {
		return r.StatusCode, ""
	}
	return r.StatusCode, string(b)
}

// scrape reads the gateway's counters and gauges: series (name{labels}
// as exposed) to value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	r, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	require.NoError(t, err)
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			out[l[:i]] = v
		}
	}
	return out
}

// TestFairnessOrdering: with one worker and no reserve, a paid request
// that queues behind free ones is served before them. A slow free step
// holds the worker while three more free requests and then a paid one
// queue (each seen in the queue gauges before the next is sent); once the
// worker frees, the paid request comes back before any of the queued free
// ones. Should the slow step end before everything is queued (a very
// loaded machine), the round proves nothing and is run again.
func TestFairnessOrdering(t *testing.T) {
	work := t.TempDir()
	bin := filepath.Join(work, "qufop")
	goBuild(t, bin, "./cmd/qufop", true)
	dirs := map[string]string{"fq": filepath.Join(work, "fq"), "pq": filepath.Join(work, "pq")}
	for b, dir := range dirs {
		require.NoError(t, os.Mkdir(dir, 0o755))
		for _, f := range []string{"kleiber-6028x3391.jpg", "storm-1920x1080.jpg"} {
			img, err := os.ReadFile(filepath.Join("..", "testdata", "images", f))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, f), img, 0o644), b)
		}
	}
	base, _ := startDev(t, bin, work, "--workers", "1", "--paid-reserve", "0", "--queue", "8")
	ctx := context.Background()
	admin := client.New(base, auth.Credentials{AccessKey: ak, SecretKey: sk})
	for user, class := range map[string]string{"freeq": "free", "paidq": "paid"} {
		_, err := admin.AddUser(ctx, user, class)
		require.NoError(t, err)
	}
	for b, owner := range map[string]string{"fq": "freeq", "pq": "paidq"} {
		_, err := admin.AddBucket(ctx, api.NewBucketRequest{Name: b, Dir: dirs[b], Owner: owner})
		require.NoError(t, err)
	}
	// Slow: a whole-image rotation and blur of a 20 MP photograph.
	slow := base + "/fq/kleiber-6028x3391.jpg?imageMogr2/rotate/90/blur/20x8"
	quick := func(b string, i int) string {
		return fmt.Sprintf("%s/%s/storm-1920x1080.jpg?imageView2/2/w/%d", base, b, 100+i)
	}
	require.Eventually(t, func() bool {
		st, _ := get(quick("pq", 0))
		return st == http.StatusOK
	}, time.Minute, 50*time.Millisecond, "the buckets are not served")
	gauge := func(series string) float64 { return scrape(t, base)[series] }

	for round := 1; ; round++ {
		require.LessOrEqual(t, round, 5, "the slow step ended before the queue was set up in 5 rounds")
		var mu sync.Mutex
		var order []string
		var wg sync.WaitGroup
		send := func(name, url string) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, body := get(url)
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				assert.Equal(t, http.StatusOK, st, "%s: %s", name, body)
			}()
		}
		finished := func(name string) bool {
			mu.Lock()
			defer mu.Unlock()
			for _, n := range order {
				if n == name {
					return true
				}
			}
			return false
		}
		send("slow", slow)
		require.Eventually(t, func() bool { return gauge("qufop_gateway_workers_busy") == 1 || finished("slow") },
			time.Minute, time.Millisecond)
		for i := 1; i <= 3; i++ {
			send(fmt.Sprint("free", i), quick("fq", i))
			require.Eventually(t, func() bool {
				return gauge(`qufop_gateway_queue_length_by_class{class="free"}`) == float64(i) || finished("slow")
			}, time.Minute, time.Millisecond)
		}
		send("paid", quick("pq", round))
		require.Eventually(t, func() bool {
			return gauge("qufop_gateway_queue_length") == 4 || finished("slow")
		}, time.Minute, time.Millisecond)
		valid := !finished("slow")
		wg.Wait()
		if !valid {
			t.Logf("round %d: the slow step ended before the paid request queued; again", round)
			continue
		}
		require.Len(t, order, 5)
		assert.Equal(t, []string{"slow", "paid"}, order[:2], "completion order %v", order)
		break
	}
}
