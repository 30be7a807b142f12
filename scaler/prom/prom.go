// Package prom is a scaler.Source that reads the gateways' per-UFOP gauges
// from the Prometheus HTTP API (instant queries, /api/v1/query).
//
// One query per figure answers for every UFOP at once; with Config.Matcher
// set (say job="qufop-gateway") the selectors read
// metric{job="qufop-gateway"}:
//
//	Pending     sum by (ufop) (qufop_gateway_ufop_queue_length)
//	InFlight    sum by (ufop) (qufop_gateway_ufop_in_flight)
//	Capacity    max by (ufop) (qufop_gateway_ufop_capacity)
//	Healthy     max by (ufop) (qufop_gateway_ufop_healthy_instances)
//	NoInstance  sum by (ufop) (qufop_gateway_ufop_waiting_no_instance)
//
// Pending, InFlight and NoInstance are each gateway's own work, so they are
// summed; every gateway sees the same instances, so Capacity and Healthy
// are the highest over gateways, not a sum.
//
// Partial data: when a scrape of a gateway fails, Prometheus marks that
// gateway's series stale and the sums above leave it out. With a Matcher,
// Figures also reads up{<matcher>}: if a target is down it returns the
// figures of the others with an error wrapping scaler.ErrPartial that
// names the missing instances (the caller may scale up, not down, on
// them); if no target matches at all it returns an error and no figures.
// Without a Matcher nothing tells which targets are gateways, so a down
// gateway goes unnoticed: set one in production.
//
// A failed query (Prometheus away, a bad matcher, a timeout) fails the
// whole call, with Prometheus's own message where it sent one.
package prom

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/qufop/qufop/scaler"
)

// DefaultTimeout bounds one Figures call when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Config says where Prometheus is and which series are the gateways'.
type Config struct {
	// URL of the Prometheus server, e.g. http://prometheus.service.consul:9090
	// (a path prefix, as behind a proxy, is kept).
	URL string
	// Timeout bounds one Figures call, all queries together; it is also
	// passed to Prometheus as the queries' timeout. Default DefaultTimeout.
	Timeout time.Duration
	// Matcher, if set, is added to every selector: label matchers without
	// braces, e.g. `job="qufop-gateway"` or `job="qufop-gateway",dc="eu"`.
	Matcher string
	// Client, if set, sends the requests (auth, TLS); default a plain
	// client.
	Client *http.Client
}

// Source reads figures from Prometheus. It is safe for concurrent use.
type Source struct {
	url     string
	api     v1.API
	timeout time.Duration
	figures []figure
	up      string // "" without a Matcher
}

var _ scaler.Source = (*Source)(nil)

// figure is one query and where its result goes.
type figure struct {
	query string
	set   func(f *scaler.Figures, v float64)
}

// New checks cfg and returns a Source. It does not contact Prometheus.
func New(cfg Config) (*Source, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus URL %q: want http(s)://host:port", cfg.URL)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("prometheus timeout %v: must not be negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	m := strings.TrimSpace(cfg.Matcher)
	if strings.ContainsAny(m, "{}") {
		return nil, fmt.Errorf("prometheus matcher %q: give label matchers without braces, e.g. job=\"qufop-gateway\"", cfg.Matcher)
	}
	c, err := api.NewClient(api.Config{Address: cfg.URL, Client: cfg.Client})
	if err != nil {
		return nil, fmt.Errorf("prometheus URL %q: %w", cfg.URL, err)
	}
	sel := func(metric string) string {
		if m == "" {
			return metric
		}
		return metric + "{" + m + "}"
	}
	agg := func(op, metric string) string {
		return op + " by (" + scaler.LabelUFOP + ") (" + sel(metric) + ")"
	}
	s := &Source{
		url:     cfg.URL,
		api:     v1.NewAPI(c),
		timeout: cfg.Timeout,
		figures: []figure{
			{agg("sum", scaler.MetricPending), func(f *scaler.Figures, v float64) { f.Pending = v }},
			{agg("sum", scaler.MetricInFlight), func(f *scaler.Figures, v float64) { f.InFlight = v }},
			{agg("max", scaler.MetricCapacity), func(f *scaler.Figures, v float64) { f.Capacity = v }},
			{agg("max", scaler.MetricHealthy), func(f *scaler.Figures, v float64) { f.Healthy = v }},
			{agg("sum", scaler.MetricNoInstance), func(f *scaler.Figures, v float64) { f.NoInstance = v }},
		},
	}
	if m != "" {
		s.up = sel("up")
	}
	return s, nil
}

// Queries returns the PromQL Figures sends, the figures' first, then the
// up query if there is a Matcher.
func (s *Source) Queries() []string {
	var q []string
	for _, f := range s.figures {
		q = append(q, f.query)
	}
	if s.up != "" {
		q = append(q, s.up)
	}
	return q
}

// Figures runs every query at once and returns the figures of every UFOP
// that appears in any of them. See the package doc for partial data.
func (s *Source) Figures(ctx context.Context) (map[string]scaler.Figures, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	queries := s.Queries()
	results := make([]model.Vector, len(queries))
	errs := make([]error, len(queries))
	var wg sync.WaitGroup
	for i, q := range queries {
		wg.Go(func() { results[i], errs[i] = s.query(ctx, q) })
	}
	wg.Wait()
	if err := firstErr(errs); err != nil {
		return nil, err
	}

	out := map[string]scaler.Figures{}
	for i, f := range s.figures {
		for _, smp := range results[i] {
			name := string(smp.Metric[model.LabelName(scaler.LabelUFOP)])
			v := float64(smp.Value)
			if name == "" || math.IsNaN(v) {
				continue
			}
			fig := out[name]
			f.set(&fig, v)
			out[name] = fig
		}
	}
	if s.up == "" {
		return out, nil
	}
	up := results[len(results)-1]
	if len(up) == 0 {
		return nil, fmt.Errorf("prometheus %s: no target matches %s: does Prometheus scrape the gateways, and with these labels?", s.url, s.up)
	}
	var down []string
	for _, smp := range up {
		if smp.Value != 1 {
			down = append(down, string(smp.Metric[model.InstanceLabel]))
		}
	}
	if len(down) > 0 {
		slices.Sort(down)
		return out, fmt.Errorf("%w: prometheus %s: %d of %d gateways down (%s): their steps are not counted",
			scaler.ErrPartial, s.url, len(down), len(up), strings.Join(down, ", "))
	}
	return out, nil
}

// query runs one instant query at Prometheus's present time.
func (s *Source) query(ctx context.Context, q string) (model.Vector, error) {
	val, _, _, err := s.api.Query(ctx, q, time.Time{}, v1.WithTimeout(s.timeout))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("prometheus %s: %s: no answer within %v: %w", s.url, q, s.timeout, err)
		}
		return nil, fmt.Errorf("prometheus %s: %s: %w", s.url, q, err)
	}
	vec, ok := val.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("prometheus %s: %s: got a %s, want a vector", s.url, q, val.Type())
	}
	return vec, nil
}

// firstErr returns the first error of errs, saying how many failed
// (Prometheus away fails them all the same way: one line is enough).
func firstErr(errs []error) error {
	var first error
	n := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		}
		n++
	}
	if n > 1 {
		return fmt.Errorf("%w (%d of %d queries failed)", first, n, len(errs))
	}
	return first
}
