package platform

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/cluster/consul/consulfake"
	"github.com/qufop/qufop/cluster/nomad"
	"github.com/qufop/qufop/cluster/nomad/nomadfake"
	"github.com/qufop/qufop/jobspecs"
	"github.com/qufop/qufop/scaler"
	"github.com/qufop/qufop/ufop"
)

// fakeGateway serves the per-UFOP series a gateway exports, with the
// figures the test sets.
func fakeGateway(t *testing.T, name string, pending, inFlight float64) *httptest.Server {
	reg := prometheus.NewRegistry()
	for metric, v := range map[string]float64{scaler.MetricPending: pending, scaler.MetricInFlight: inFlight, scaler.MetricCapacity: 2, scaler.MetricHealthy: 1} {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metric, Help: "test"}, []string{scaler.LabelUFOP})
		g.WithLabelValues(name).Set(v)
		reg.MustRegister(g)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return srv
}

// The scaler role on faithful fakes of Consul and Nomad: it takes the
// lock, finds the gateway through Consul (service qufop-gateway), reads
// its figures, scales the Nomad job with the figures as meta, and records
// the change in the record in Consul KV.
func TestScalerRole(t *testing.T) {
	cs := consulfake.New()
	t.Cleanup(cs.Close)
	ns := nomadfake.New()
	t.Cleanup(ns.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	nc, err := nomadapi.NewClient(&nomadapi.Config{Address: ns.URL()})
	require.NoError(t, err)
	w := cluster.Workload{Name: "slow", Owner: "admin", Version: 1, Image: "127.0.0.1:5000/admin/slow:v1",
		Port: 9100, HealthPath: "/health", CPUs: 1, MemoryMB: 64, Count: 1, KillTimeout: 5 * time.Second,
		Scaling: &cluster.Scaling{Min: 1, Max: 4}}
	require.NoError(t, nomad.New(nc, jobspecs.DefaultOptions()).Deploy(ctx, w))

	cc, _, err := consulClient(cs.Addr())
	require.NoError(t, err)
	keeper := consulKeeper(cc)
	require.NoError(t, keeper.Create(ctx, ufop.Record{Name: "slow", Owner: "admin", Mode: ufop.Public,
		Current: 1, Deployed: 1, Desired: 1, MaxInstances: 5, Scale: &ufop.ScalePolicy{Min: 1, Max: 4, Target: 2}}))

	gw := fakeGateway(t, "slow", 6, 2)
	host, port, _ := net.SplitHostPort(gw.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	cs.Register("qufop-gateway", "gw-1", host, p, nil)

	cfg := NewDefaultScalerConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.NomadAddr, cfg.ConsulAddr = ns.URL(), cs.Addr()
	s, err := NewScaler(ctx, cfg)
	require.NoError(t, err)
	defer s.Close()
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Serve(sctx) }()

	var rec *ufop.Record
	require.Eventually(t, func() bool {
		rec, err = keeper.Get(ctx, "slow")
		return err == nil && rec.Desired == 4
	}, time.Minute, 20*time.Millisecond, "the scaler never scaled: %+v", rec)
	require.Len(t, rec.ScaleHistory, 1)
	assert.Equal(t, ufop.ByScaler, rec.ScaleHistory[0].By)
	assert.Equal(t, 6.0, rec.ScaleHistory[0].Pending)
	job := ns.Job(nomad.JobID("slow"))
	assert.Equal(t, 4, *job.TaskGroups[0].Count)
	evs := ns.ScaleEvents(nomad.JobID("slow"))
	require.NotEmpty(t, evs)
	assert.Equal(t, "6", evs[len(evs)-1].Meta["qufop.scaler.pending"])
	assert.Contains(t, evs[len(evs)-1].Message, "1 -> 4")

	r, err := http.Get("http://" + s.Addr() + "/health")
	require.NoError(t, err)
	var h struct{ Leader bool }
	require.NoError(t, json.NewDecoder(r.Body).Decode(&h))
	r.Body.Close()
	assert.True(t, h.Leader)

	stop()
	require.NoError(t, <-served)
	assert.Empty(t, cs.LockHolder(cfg.LockKey), "the lock is released on stop")
}
