package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/qufop/qufop/tenant"
)

// metrics are the gateway's Prometheus series. They live in a registry of
// their own so that two gateways in one process (tests) do not collide; the
// pool of built-in commands adds its gauges (NewPool), the dispatcher its
// per-UFOP figures (WithCollector).
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec   // by first command, status
	duration  *prometheus.HistogramVec // by first command
	steps     *prometheus.CounterVec   // by command, status
	stepTime  *prometheus.HistogramVec // by command
	inFlight  prometheus.Gauge
	fastConns *prometheus.CounterVec // by front
	refused   *prometheus.CounterVec // by reason (connlimit.go)
	timedOut  *prometheus.CounterVec // by phase (connlimit.go)
}

func newMetrics() *metrics {
	const ns = "qufop_gateway"
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "requests_total",
			Help: "Requests served, by the first command of the chain (\"-\" for plain downloads, \"other\" when it is neither a built-in command nor a UFOP) and HTTP status.",
		}, []string{"command", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "request_duration_seconds",
			Help:    "Request latency, by the first command of the chain (as in requests_total).",
			Buckets: buckets,
		}, []string{"command"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "steps_total",
			Help: "Chain steps run, by command and HTTP status of the step.",
		}, []string{"command", "status"}),
		stepTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "step_duration_seconds",
			Help:    "Time a step took, queueing included, by command.",
			Buckets: buckets,
		}, []string{"command"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "requests_in_flight", Help: "Requests being served now.",
		}),
		fastConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "connections_total",
			Help: "Connections accepted, by the front that serves them (\"fast\": fasthttp, for UFOP processing URLs; \"std\": net/http).",
		}, []string{"front"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "connections_refused_total",
			Help: "Connections answered 503 and closed at accept, by the limit they were over (\"max_conns\": the gateway's, \"max_conns_per_ip\": their client address's).",
		}, []string{"reason"}),
		timedOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "connections_timed_out_total",
			Help: "Connections closed because the client sent nothing in time, by phase (\"header\": a request not received within the header timeout, on the fast front the whole request; \"idle\": no next request within the idle timeout).",
		}, []string{"phase"}),
	}
	for _, r := range []string{refusedMaxConns, refusedMaxConnsPerIP} {
		m.refused.WithLabelValues(r)
	}
	for _, p := range []string{"header", "idle"} {
		m.timedOut.WithLabelValues(p)
	}
	m.reg.MustRegister(m.requests, m.duration, m.steps, m.stepTime,
		m.inFlight, m.fastConns, m.refused, m.timedOut,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// poolGauges reads the pool's counters at scrape time, so the figures are
// exact (no gauge set from the racing results of two Adds).
func (m *metrics) poolGauges(p *Pool) {
	const ns = "qufop_gateway"
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "queue_length", Help: "Built-in steps waiting for a worker, all classes.",
		}, func() float64 { return float64(p.Waiting()) }),
	)
	// One series per class; queue_length above stays their total.
	for _, c := range tenant.Classes {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "queue_length_by_class",
			Help:        "Built-in steps waiting for a worker, by class of service (paid, free).",
			ConstLabels: prometheus.Labels{"class": string(c)},
		}, func() float64 { return float64(p.WaitingClass(c)) }))
	}
	p.full = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "queue_refused_total",
		Help: "Built-in steps refused with 503 because their class's queue was full, by class.",
	}, []string{"class"})
	for _, c := range tenant.Classes {
		p.full.WithLabelValues(string(c))
	}
	m.reg.MustRegister(p.full)
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "workers_busy", Help: "Workers running a built-in step.",
		}, func() float64 { return float64(p.Busy()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "workers", Help: "Size of the worker pool of built-in steps.",
		}, func() float64 { return float64(p.size) }),
	)
}

// connGauge reads the open connections from the limiter at scrape time.
func (m *metrics) connGauge(l *connLimiter) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "qufop_gateway", Name: "connections_open",
		Help: "Connections open now (each holds a slot of max-conns and one of max-conns-per-ip).",
	}, func() float64 { return float64(l.Open()) }))
}
