package dispatch

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qufop/qufop/scaler"
	"github.com/qufop/qufop/tenant"
)

// collector exports the per-UFOP figures, read from the pools when
// Prometheus scrapes (docs/metrics.md).
type collector struct {
	d                                                   *Dispatcher
	pending, inFlight, capacity, healthy, noInstWaiting *prometheus.Desc
	noInstance, rejected                                *prometheus.Desc
	pendingByClass                                      *prometheus.Desc
}

// MetricPendingByClass splits scaler.MetricPending (the total the scaler
// reads) by class of service.
const MetricPendingByClass = "qufop_gateway_ufop_queue_length_by_class"

// Collector returns the Prometheus collector of the dispatcher's figures.
func (d *Dispatcher) Collector() prometheus.Collector {
	l := []string{scaler.LabelUFOP}
	return &collector{
		d:             d,
		pending:       prometheus.NewDesc(scaler.MetricPending, "Steps waiting in the UFOP's queue for a free instance.", l, nil),
		inFlight:      prometheus.NewDesc(scaler.MetricInFlight, "Steps running at the UFOP's instances.", l, nil),
		capacity:      prometheus.NewDesc(scaler.MetricCapacity, "Steps the UFOP's healthy instances can run at once (sum of their concurrency).", l, nil),
		healthy:       prometheus.NewDesc(scaler.MetricHealthy, "Healthy instances of the UFOP this gateway routes to.", l, nil),
		noInstWaiting: prometheus.NewDesc(scaler.MetricNoInstance, "Steps waiting while the UFOP has no healthy instance at all.", l, nil),
		noInstance:    prometheus.NewDesc(scaler.MetricNoInstanceTotal, "Steps that found no healthy instance of the UFOP when they arrived.", l, nil),
		pendingByClass: prometheus.NewDesc(MetricPendingByClass, "Steps waiting in the UFOP's queue for a free instance, by class of service (paid, free).",
			[]string{scaler.LabelUFOP, "class"}, nil),
		rejected: prometheus.NewDesc(scaler.MetricRejectedTotal, "Steps refused with 503, by reason: queue_full, or no_instance (and no scale policy to start one).", []string{scaler.LabelUFOP, "reason"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pending, c.inFlight, c.capacity, c.healthy, c.noInstWaiting, c.noInstance, c.rejected, c.pendingByClass} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for name, st := range c.d.Stats() {
		g := func(d *prometheus.Desc, v int) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), name)
		}
		g(c.pending, st.Pending)
		ch <- prometheus.MustNewConstMetric(c.pendingByClass, prometheus.GaugeValue, float64(st.PendingPaid), name, string(tenant.Paid))
		ch <- prometheus.MustNewConstMetric(c.pendingByClass, prometheus.GaugeValue, float64(st.Pending-st.PendingPaid), name, string(tenant.Free))
		g(c.inFlight, st.InFlight)
		g(c.capacity, st.Capacity)
		g(c.healthy, st.Healthy)
		g(c.noInstWaiting, st.NoInstanceWaiting)
		ch <- prometheus.MustNewConstMetric(c.noInstance, prometheus.CounterValue, float64(st.NoInstance), name)
		ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(st.RejectedFull), name, "queue_full")
		ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(st.RejectedNoInst), name, "no_instance")
	}
}
