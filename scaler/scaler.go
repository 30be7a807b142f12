// Package scaler sizes every UFOP that has a scale policy from the work
// waiting for it and running at it. It is split as nomad-autoscaler is: a
// Source of figures (the gateways' own counters in process, Prometheus, or
// a direct scrape of every gateway), a Strategy that turns figures and a
// policy into a count, and a Target that applies the count (an
// Orchestrator, with the Keeper recording every change).
package scaler

import (
	"context"
)

// Figures are one UFOP's load as the gateways see it, summed over every
// gateway (Capacity and Healthy are what each gateway sees of the same
// instances, so they are the highest over gateways, not a sum).
type Figures struct {
	Pending    float64 // steps waiting in the UFOP's queues
	InFlight   float64 // steps running at its instances
	Capacity   float64 // sum of concurrency over healthy instances
	Healthy    float64 // healthy instances
	NoInstance float64 // of Pending, steps waiting that found no instance at all
}

// Work is what the policy's target divides: steps waiting plus in flight.
func (f Figures) Work() float64 { return f.Pending + f.InFlight }

// Source reads the figures of every UFOP the gateways have seen. A UFOP
// missing from the map has none of its steps waiting or running.
type Source interface {
	Figures(ctx context.Context) (map[string]Figures, error)
}

// Metric names the gateways export per UFOP (label "ufop"); docs/metrics.md
// describes them. Sources at scale read these.
const (
	MetricPending    = "qufop_gateway_ufop_queue_length"
	MetricInFlight   = "qufop_gateway_ufop_in_flight"
	MetricCapacity   = "qufop_gateway_ufop_capacity"
	MetricHealthy    = "qufop_gateway_ufop_healthy_instances"
	MetricNoInstance = "qufop_gateway_ufop_waiting_no_instance"
	// Counters.
	MetricNoInstanceTotal = "qufop_gateway_ufop_no_instance_total"
	MetricRejectedTotal   = "qufop_gateway_ufop_rejected_total" // labels ufop, reason: queue_full | no_instance
	LabelUFOP             = "ufop"
)
