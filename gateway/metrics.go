package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the gateway's Prometheus series. They live in a registry of
// their own so that two gateways in one process (tests) do not collide; the
// scaler reads queue length, in-flight and busy workers from here.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec   // by first command, status
	duration    *prometheus.HistogramVec // by first command
	steps       *prometheus.CounterVec   // by command, status
	stepTime    *prometheus.HistogramVec // by command
	inFlight    prometheus.Gauge
	queueLength prometheus.Gauge
	workersBusy prometheus.Gauge
	workers     prometheus.Gauge
	fastConns   *prometheus.CounterVec // by front
}

func newMetrics() *metrics {
	const ns = "qufop_gateway"
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "requests_total",
			Help: "Requests served, by the first command of the chain (\"-\" for plain downloads) and HTTP status.",
		}, []string{"command", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "request_duration_seconds",
			Help:    "Request latency, by the first command of the chain.",
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
		queueLength: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "queue_length", Help: "Steps waiting for a worker.",
		}),
		workersBusy: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "workers_busy", Help: "Workers running a step.",
		}),
		workers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "workers", Help: "Size of the worker pool.",
		}),
		fastConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "connections_total",
			Help: "Connections accepted, by the front that serves them (\"fast\": fasthttp, for UFOP processing URLs; \"std\": net/http).",
		}, []string{"front"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.steps, m.stepTime,
		m.inFlight, m.queueLength, m.workersBusy, m.workers, m.fastConns,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
