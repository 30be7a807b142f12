package prom

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/dispatch"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/gateway"
	"github.com/qufop/qufop/scaler"
	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/storage/local"
	"github.com/qufop/qufop/ufop"
)

// wait bounds every wait for Prometheus (start, first scrapes, staleness):
// far above what it takes, so that a loaded machine does not fail.
const wait = 3 * time.Minute

func TestNewChecks(t *testing.T) {
	for _, c := range []Config{
		{URL: ""},
		{URL: "127.0.0.1:9090"}, // no scheme
		{URL: "ftp://127.0.0.1:9090"},
		{URL: "http://"},
		{URL: "http://127.0.0.1:9090", Timeout: -time.Second},
		{URL: "http://127.0.0.1:9090", Matcher: `{job="x"}`},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v): no error", c)
		}
	}
	s, err := New(Config{URL: "http://127.0.0.1:9090/prom/", Matcher: ` job="qufop-gateway" `})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`sum by (ufop) (qufop_gateway_ufop_queue_length{job="qufop-gateway"})`,
		`sum by (ufop) (qufop_gateway_ufop_in_flight{job="qufop-gateway"})`,
		`max by (ufop) (qufop_gateway_ufop_capacity{job="qufop-gateway"})`,
		`max by (ufop) (qufop_gateway_ufop_healthy_instances{job="qufop-gateway"})`,
		`sum by (ufop) (qufop_gateway_ufop_waiting_no_instance{job="qufop-gateway"})`,
		`up{job="qufop-gateway"}`,
	}
	if got := s.Queries(); !reflect.DeepEqual(got, want) {
		t.Errorf("queries\n got %q\nwant %q", got, want)
	}
	s, _ = New(Config{URL: "http://127.0.0.1:9090"})
	if got := s.Queries(); len(got) != 5 || got[0] != `sum by (ufop) (qufop_gateway_ufop_queue_length)` {
		t.Errorf("queries without a matcher: %q", got)
	}
}

func TestPrometheusDown(t *testing.T) {
	u := "http://" + deadAddr(t)
	s, err := New(Config{URL: u, Matcher: `job="qufop-gateway"`})
	if err != nil {
		t.Fatal(err)
	}
	figs, err := s.Figures(context.Background())
	if err == nil || figs != nil || errors.Is(err, scaler.ErrPartial) {
		t.Fatalf("figures %v, err %v", figs, err)
	}
	for _, want := range []string{"prometheus " + u, "connection refused", "6 of 6 queries failed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// The source against a real Prometheus server scraping three targets: two
// real gateways (job qufop-gateway) with steps waiting at and running on a
// slow UFOP, and a target of another job exporting the same names.
func TestRealPrometheus(t *testing.T) {
	i1, i2, i3 := newSlowInstance(t), newSlowInstance(t), newSlowInstance(t)
	// Both gateways see instances 1 and 2 of "slow"; B's view is newer and
	// has instance 3 too (capacity is the highest over gateways, not a sum).
	// "empty" has a scale policy and no instance: its steps wait.
	a := newGateway(t, i1, i2)
	b := newGateway(t, i1, i2, i3)
	c := newTarget(t, map[string]scaler.Figures{
		"slow": {Pending: 100, Capacity: 50, Healthy: 25},
	})
	url := startPrometheus(t, fmt.Sprintf(`
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: qufop-gateway
    static_configs:
      - targets: [%q, %q]
  - job_name: other
    static_configs:
      - targets: [%q]
`, a.addr, b.addr, c.addr))

	// Steps at the instances' concurrency of 2 (4 at A, 6 at B) run, the
	// others wait.
	a.send(t, "slow", 6)  // 4 in flight, 2 waiting
	b.send(t, "slow", 1)  // 1 in flight
	a.send(t, "empty", 2) // waiting, no instance
	b.send(t, "empty", 1)

	gw := newSource(t, Config{URL: url, Matcher: `job="qufop-gateway"`})
	wantAB := map[string]scaler.Figures{
		"slow":  {Pending: 2, InFlight: 5, Capacity: 6, Healthy: 3},
		"empty": {Pending: 3, NoInstance: 3},
	}
	expect(t, "the two gateways summed (max for capacity and healthy)", gw, wantAB, false)

	// The matcher keeps the other job out; without one every target counts.
	expect(t, "job other", newSource(t, Config{URL: url, Matcher: `job="other"`}), c.figures(), false)
	expect(t, "no matcher", newSource(t, Config{URL: url}), map[string]scaler.Figures{
		"slow":  {Pending: 102, InFlight: 5, Capacity: 50, Healthy: 25},
		"empty": {Pending: 3, NoInstance: 3},
	}, false)

	// A matcher that matches no target is an error, not "no work".
	none := newSource(t, Config{URL: url, Matcher: `job="nobody"`})
	if figs, err := none.Figures(context.Background()); err == nil || figs != nil || !strings.Contains(err.Error(), "no target matches up{job=\"nobody\"}") {
		t.Errorf("no target: figures %v, err %v", figs, err)
	}
	// A query Prometheus refuses fails with Prometheus's message.
	bad := newSource(t, Config{URL: url, Matcher: `job=~"("`})
	if figs, err := bad.Figures(context.Background()); err == nil || figs != nil || !strings.Contains(err.Error(), "bad_data") || !strings.Contains(err.Error(), "missing closing )") {
		t.Errorf("bad matcher: figures %v, err %v", figs, err)
	} else {
		t.Logf("bad matcher: %v", err)
	}

	// The figures follow the gateways.
	b.send(t, "slow", 2)
	wantAB["slow"] = scaler.Figures{Pending: 2, InFlight: 7, Capacity: 6, Healthy: 3}
	expect(t, "two more steps at gateway B", gw, wantAB, false)

	// Gateway B stops answering its scrapes: Prometheus marks its series
	// stale, its up is 0, and the source returns A's figures as partial,
	// naming B.
	b.down.Store(true)
	expect(t, "gateway B down", gw, map[string]scaler.Figures{
		"slow":  {Pending: 2, InFlight: 4, Capacity: 4, Healthy: 2},
		"empty": {Pending: 2, NoInstance: 2},
	}, true)
	_, err := gw.Figures(context.Background())
	if err == nil || !strings.Contains(err.Error(), b.addr) || !strings.Contains(err.Error(), "1 of 2 gateways down") {
		t.Errorf("partial error %v does not name gateway B (%s)", err, b.addr)
	} else {
		t.Logf("partial: %v", err)
	}
}

// slowInstance is a UFOP instance (handler protocol) whose steps run until
// the test ends.
type slowInstance struct {
	srv     *httptest.Server
	release chan struct{}
}

func newSlowInstance(t *testing.T) *slowInstance {
	in := &slowInstance{release: make(chan struct{})}
	in.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-in.release:
		case <-r.Context().Done():
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("done"))
	}))
	t.Cleanup(in.srv.Close)
	t.Cleanup(func() { close(in.release) }) // first: Close waits for the handlers
	return in
}

// records are the UFOPs the test's gateways know.
type records map[string]*ufop.Record

func (r records) Get(_ context.Context, name string) (*ufop.Record, error) {
	if rec, ok := r[name]; ok {
		return rec, nil
	}
	return nil, errs.Wrap(http.StatusNotFound, ufop.ErrNoSuchUFOP, "no such ufop")
}

func testRecords() records {
	rec := func(name string, policy *ufop.ScalePolicy) *ufop.Record {
		return &ufop.Record{Name: name, Owner: "alice", Mode: ufop.Public, Deployed: 1, Scale: policy,
			Versions: []ufop.Version{{N: 1, State: ufop.BuildSuccess, Spec: &ufop.Spec{
				Protocol: ufop.ProtocolHandler, Concurrency: 2, Timeout: time.Hour,
			}}}}
	}
	return records{
		"slow":  rec("slow", nil),
		"empty": rec("empty", &ufop.ScalePolicy{Min: 0, Max: 3, Target: 1}),
	}
}

type catalog map[string][]cluster.Endpoint

func (c catalog) Healthy(name string) []cluster.Endpoint { return slices.Clone(c[name]) }

// gw is a real qufop gateway (gateway.Server with a dispatcher and its
// collector) on 127.0.0.1 whose UFOP "slow" has the given instances.
type gw struct {
	addr string
	url  string
	down atomic.Bool // /metrics answers 503

	ctx     context.Context // of the steps sent
	clients sync.WaitGroup
}

func newGateway(t *testing.T, slow ...*slowInstance) *gw {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in.txt"), []byte("input"), 0o644); err != nil {
		t.Fatal(err)
	}
	bk, err := local.New("files", dir)
	if err != nil {
		t.Fatal(err)
	}
	set, err := storage.NewSet(bk)
	if err != nil {
		t.Fatal(err)
	}
	cat := catalog{}
	for i, in := range slow {
		cat["slow"] = append(cat["slow"], cluster.Endpoint{
			ID: fmt.Sprintf("slow-%d", i+1), Addr: strings.TrimPrefix(in.srv.URL, "http://"), Version: 1,
		})
	}
	d := dispatch.New(dispatch.NewDefaultConfig(), testRecords(), cat, nil)
	cfg := gateway.NewDefaultConfig()
	cfg.RequestTimeout = time.Hour // the steps wait until the test ends
	srv, err := gateway.New(cfg, set, fop.Registry{}, nil,
		gateway.WithUFOPs(d, func(string) string { return "alice" }),
		gateway.WithCollector(d.Collector()))
	if err != nil {
		t.Fatal(err)
	}
	g := &gw{}
	h := srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && g.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	g.url, g.addr = ts.URL, strings.TrimPrefix(ts.URL, "http://")
	ctx, cancel := context.WithCancel(context.Background())
	g.ctx = ctx
	t.Cleanup(func() { cancel(); g.clients.Wait() }) // before ts.Close: its handlers return
	return g
}

// send starts n requests with a step of UFOP name; they end with the test.
func (g *gw) send(t *testing.T, name string, n int) {
	for range n {
		g.clients.Go(func() {
			req, _ := http.NewRequestWithContext(g.ctx, http.MethodGet, g.url+"/files/in.txt?"+name+"/x", nil)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
		})
	}
}

// expect waits until src returns want, with an error wrapping
// scaler.ErrPartial if partial, else none.
func expect(t *testing.T, what string, src *Source, want map[string]scaler.Figures, partial bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got, err := src.Figures(context.Background())
		okErr := err == nil
		if partial {
			okErr = errors.Is(err, scaler.ErrPartial)
		}
		if okErr && reflect.DeepEqual(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last figures %v, err %v; want %v (partial %v)\nprometheus log:\n%s",
				what, wait, got, err, want, partial, promLog.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func newSource(t *testing.T, cfg Config) *Source {
	t.Helper()
	cfg.Timeout = time.Minute
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// target is a scrape target exporting the per-UFOP gauges from a real
// promhttp registry, on 127.0.0.1.
type target struct {
	server *httptest.Server
	addr   string
	gauges map[string]*prometheus.GaugeVec

	mu   sync.Mutex
	figs map[string]scaler.Figures
}

func newTarget(t *testing.T, figs map[string]scaler.Figures) *target {
	t.Helper()
	reg := prometheus.NewRegistry()
	tg := &target{gauges: map[string]*prometheus.GaugeVec{}, figs: map[string]scaler.Figures{}}
	for _, name := range []string{scaler.MetricPending, scaler.MetricInFlight, scaler.MetricCapacity, scaler.MetricHealthy, scaler.MetricNoInstance} {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: name}, []string{scaler.LabelUFOP})
		reg.MustRegister(g)
		tg.gauges[name] = g
	}
	reg.MustRegister(collectors.NewGoCollector())
	for name, f := range figs {
		tg.set(name, f)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	tg.server = httptest.NewServer(mux)
	t.Cleanup(tg.server.Close)
	tg.addr = strings.TrimPrefix(tg.server.URL, "http://")
	return tg
}

func (tg *target) set(name string, f scaler.Figures) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.figs[name] = f
	tg.gauges[scaler.MetricPending].WithLabelValues(name).Set(f.Pending)
	tg.gauges[scaler.MetricInFlight].WithLabelValues(name).Set(f.InFlight)
	tg.gauges[scaler.MetricCapacity].WithLabelValues(name).Set(f.Capacity)
	tg.gauges[scaler.MetricHealthy].WithLabelValues(name).Set(f.Healthy)
	tg.gauges[scaler.MetricNoInstance].WithLabelValues(name).Set(f.NoInstance)
}

func (tg *target) figures() map[string]scaler.Figures {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	out := map[string]scaler.Figures{}
	for k, v := range tg.figs {
		out[k] = v
	}
	return out
}

// promLog holds the output of the Prometheus of the running test.
var promLog syncBuffer

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// procAttr is set on Linux so that Prometheus dies with the test binary
// even if the binary is killed before its cleanups run.
var procAttr *syscall.SysProcAttr

// startPrometheus runs the prometheus binary on 127.0.0.1 with config,
// storage in a temporary directory, and returns its URL once it is ready.
// The process is stopped in t.Cleanup. The test is skipped without the
// binary.
func startPrometheus(t *testing.T, config string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not on PATH (Debian package prometheus, installed by .ci/deps.sh): the Prometheus source is not tested against a real server")
	}
	if out, err := exec.Command(bin, "--version").CombinedOutput(); err == nil {
		t.Logf("%s", bytes.SplitN(out, []byte("\n"), 2)[0])
	}
	dir := t.TempDir() // before the process's cleanup: removed after it stops
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// The free port may be taken between its discovery and Prometheus's
	// listen: then start again on another.
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		cmd := exec.Command(bin,
			"--config.file="+cfgFile,
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr,
		)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = &promLog, &promLog
		cmd.SysProcAttr = procAttr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { stop(t, cmd, exited) })

		url := "http://" + addr
		switch waitReady(url, exited) {
		case nil:
			return url
		case errExited:
			if attempt < 5 && strings.Contains(promLog.String(), "address already in use") {
				continue
			}
			t.Fatalf("prometheus exited: %v\n%s", cmd.ProcessState, promLog.String())
		default:
			t.Fatalf("prometheus not ready within %v\n%s", wait, promLog.String())
		}
	}
}

var errExited = errors.New("exited")

// waitReady polls /-/ready until it answers 200 or the process exits.
func waitReady(url string, exited <-chan struct{}) error {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errExited
		default:
		}
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("not ready")
}

// stop ends Prometheus: SIGTERM, then SIGKILL if it lingers.
func stop(t *testing.T, cmd *exec.Cmd, exited <-chan struct{}) {
	select {
	case <-exited:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(wait):
		t.Logf("prometheus ignored SIGTERM for %v: killing it", wait)
		cmd.Process.Kill()
		<-exited
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// deadAddr is a loopback address nobody listens on.
func deadAddr(t *testing.T) string { return freeAddr(t) }
