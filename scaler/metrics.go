package scaler

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the scaler's series: decisions by direction and result, the
// count wanted and the count set per UFOP, and evaluation errors by stage.
// A Metrics is a prometheus.Collector.
type Metrics struct {
	decisions *prometheus.CounterVec // ufop, direction (up|down), result (done|skipped|failed)
	desired   *prometheus.GaugeVec   // ufop
	current   *prometheus.GaugeVec   // ufop
	errors    *prometheus.CounterVec // stage: source|keeper|target|not_deployed
	Leader    prometheus.Gauge       // 1 while this scaler holds the lock
}

// NewMetrics returns the scaler's series.
func NewMetrics() *Metrics {
	const ns = "qufop_scaler"
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "decisions_total",
			Help: "Changes of count the scaler decided, by UFOP, direction (up, down) and result (done, skipped: the orchestrator declined during a deployment, failed).",
		}, []string{"ufop", "direction", "result"}),
		desired: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "desired_instances",
			Help: "Instances the figures ask for at the last evaluation, within the policy's range.",
		}, []string{"ufop"}),
		current: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "current_instances",
			Help: "Instance count asked for (the record's desired count, starting instances included).",
		}, []string{"ufop"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "evaluation_errors_total",
			Help: "Evaluations that failed, by stage: source (figures), keeper (records), target (orchestrator), not_deployed (a policy on a UFOP with nothing deployed).",
		}, []string{"stage"}),
		Leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "leader",
			Help: "1 while this scaler is the one deciding (holds the lock).",
		}),
	}
	for _, st := range []string{"source", "keeper", "target", "not_deployed"} {
		m.errors.WithLabelValues(st)
	}
	return m
}

func (m *Metrics) forget(name string) {
	m.desired.DeleteLabelValues(name)
	m.current.DeleteLabelValues(name)
	m.decisions.DeletePartialMatch(prometheus.Labels{"ufop": name})
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.decisions.Describe(ch)
	m.desired.Describe(ch)
	m.current.Describe(ch)
	m.errors.Describe(ch)
	m.Leader.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.decisions.Collect(ch)
	m.desired.Collect(ch)
	m.current.Collect(ch)
	m.errors.Collect(ch)
	m.Leader.Collect(ch)
}
