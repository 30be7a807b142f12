package scrape

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/cluster/consul"
	"github.com/qufop/qufop/cluster/consul/consulfake"
	"github.com/qufop/qufop/scaler"
)

// gateway serves a real promhttp registry with the per-UFOP gauges set to
// figs (and some unrelated series, as a gateway has), on 127.0.0.1. With
// textOnly it answers in the text format whatever the client asks.
func gateway(t *testing.T, figs map[string]scaler.Figures, textOnly bool) *httptest.Server {
	t.Helper()
	reg := prometheus.NewRegistry()
	vec := func(name string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: name}, []string{scaler.LabelUFOP})
		reg.MustRegister(g)
		return g
	}
	pending, inFlight := vec(scaler.MetricPending), vec(scaler.MetricInFlight)
	capacity, healthy := vec(scaler.MetricCapacity), vec(scaler.MetricHealthy)
	noInst := vec(scaler.MetricNoInstance)
	other := prometheus.NewGauge(prometheus.GaugeOpts{Name: "qufop_gateway_queue_length", Help: "built-in queue"})
	other.Set(99)
	reg.MustRegister(other, collectors.NewGoCollector())
	for name, f := range figs {
		pending.WithLabelValues(name).Set(f.Pending)
		inFlight.WithLabelValues(name).Set(f.InFlight)
		capacity.WithLabelValues(name).Set(f.Capacity)
		healthy.WithLabelValues(name).Set(f.Healthy)
		noInst.WithLabelValues(name).Set(f.NoInstance)
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if textOnly {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Accept")
			inner.ServeHTTP(w, r)
		})
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func addr(ts *httptest.Server) string { return strings.TrimPrefix(ts.URL, "http://") }

// deadAddr is a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func source(t *testing.T, cfg Config) *Source {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Minute // generous: a loaded machine must not fail the healthy ones
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func static(addrs ...string) func() []string { return func() []string { return addrs } }

var (
	// Gateway A and B see the same two instances of demo, but B's view is
	// newer and already has a third (capacity is the highest, not a sum).
	figsA = map[string]scaler.Figures{
		"demo":  {Pending: 3, InFlight: 4, Capacity: 4, Healthy: 2, NoInstance: 0},
		"idle":  {Capacity: 2, Healthy: 1},
		"empty": {Pending: 2, NoInstance: 2},
	}
	figsB = map[string]scaler.Figures{
		"demo":  {Pending: 5, InFlight: 2, Capacity: 6, Healthy: 3, NoInstance: 0},
		"empty": {Pending: 1, NoInstance: 1},
		"onlyb": {Pending: 1, InFlight: 1, Capacity: 1, Healthy: 1},
	}
	wantAB = map[string]scaler.Figures{
		"demo":  {Pending: 8, InFlight: 6, Capacity: 6, Healthy: 3, NoInstance: 0},
		"idle":  {Capacity: 2, Healthy: 1},
		"empty": {Pending: 3, NoInstance: 3},
		"onlyb": {Pending: 1, InFlight: 1, Capacity: 1, Healthy: 1},
	}
)

func TestTwoGateways(t *testing.T) {
	a := gateway(t, figsA, false)
	b := gateway(t, figsB, true)                                      // the text format parses too
	s := source(t, Config{Gateways: static(addr(a), b.URL, addr(a))}) // a base URL; a duplicate is scraped once
	got, err := s.Figures(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, wantAB) {
		t.Fatalf("figures\n got %v\nwant %v", got, wantAB)
	}
}

func TestOneGatewayDown(t *testing.T) {
	a := gateway(t, figsA, false)
	dead := deadAddr(t)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "draining", http.StatusServiceUnavailable)
	}))
	t.Cleanup(broken.Close)
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html>not metrics</html>\n"))
	}))
	t.Cleanup(garbage.Close)

	s := source(t, Config{Gateways: static(addr(a), dead, addr(broken), addr(garbage))})
	got, err := s.Figures(context.Background())
	if !errors.Is(err, scaler.ErrPartial) {
		t.Fatalf("err = %v, want one wrapping ErrPartial", err)
	}
	if !reflect.DeepEqual(got, figsA) {
		t.Fatalf("figures of the gateway that answered\n got %v\nwant %v", got, figsA)
	}
	var e *Error
	if !errors.As(err, &e) || e.Answered != 1 || len(e.Failed) != 3 {
		t.Fatalf("err = %#v", err)
	}
	for _, want := range []string{dead, "connection refused", addr(broken), "503", "draining", addr(garbage), "parsing", "3 of 4 gateways"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestNoGatewayAnswers(t *testing.T) {
	s := source(t, Config{Gateways: static(deadAddr(t), deadAddr(t))})
	got, err := s.Figures(context.Background())
	if err == nil || errors.Is(err, scaler.ErrPartial) || got != nil {
		t.Fatalf("figures %v, err %v: want no figures and an error that is not partial", got, err)
	}
	if !strings.Contains(err.Error(), "2 of 2 gateways did not answer") {
		t.Errorf("error %q", err)
	}

	s = source(t, Config{Gateways: static()})
	if got, err := s.Figures(context.Background()); err == nil || errors.Is(err, scaler.ErrPartial) || got != nil {
		t.Fatalf("no gateway: figures %v, err %v", got, err)
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hung.Close)
	t.Cleanup(func() { close(release) }) // runs first: the handler returns, Close does not wait on it
	s := source(t, Config{Gateways: static(addr(hung)), Timeout: 50 * time.Millisecond})
	_, err := s.Figures(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Fatalf("err = %v", err)
	}
}

func TestNew(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("no Gateways: no error")
	}
	if _, err := New(Config{Gateways: static(), Timeout: -1}); err == nil {
		t.Error("negative timeout: no error")
	}
}

// The gateways are found in Consul as service qufop-gateway through a
// Catalog with the prefix "qufop-".
func TestFromConsulCatalog(t *testing.T) {
	a := gateway(t, figsA, false)
	b := gateway(t, figsB, false)
	c := gateway(t, map[string]scaler.Figures{"demo": {Pending: 100}}, false)
	fake := consulfake.New()
	t.Cleanup(fake.Close)
	for i, ts := range []*httptest.Server{a, b, c} {
		host, port, _ := net.SplitHostPort(addr(ts))
		p, _ := strconv.Atoi(port)
		fake.Register("qufop-gateway", "gw"+strconv.Itoa(i), host, p, []string{"qufop", "gateway"})
	}
	fake.SetHealth("gw2", false)                                       // a failing gateway is not scraped
	fake.Register("ufop-gateway", "u", "127.0.0.1", 1, []string{"v1"}) // a UFOP named "gateway" is not one
	client, err := consulapi.NewClient(&consulapi.Config{Address: fake.Addr(), Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	cat := consul.NewCatalog(client, consul.CatalogOptions{ServicePrefix: "qufop-", FirstWait: time.Minute})
	t.Cleanup(func() { cat.Close() })
	var _ cluster.Catalog = cat

	s := source(t, Config{Gateways: FromCatalog(cat, "gateway")})
	got, err := s.Figures(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, wantAB) {
		t.Fatalf("figures\n got %v\nwant %v", got, wantAB)
	}
}
