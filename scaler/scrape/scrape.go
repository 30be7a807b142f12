// Package scrape is a scaler.Source for clusters without Prometheus: it
// reads every gateway's /metrics itself, all gateways in parallel, and adds
// up their per-UFOP gauges (label ufop) the way the Prometheus source's
// queries do:
//
//	Pending     sum over gateways of qufop_gateway_ufop_queue_length
//	InFlight    sum over gateways of qufop_gateway_ufop_in_flight
//	Capacity    max over gateways of qufop_gateway_ufop_capacity
//	Healthy     max over gateways of qufop_gateway_ufop_healthy_instances
//	NoInstance  sum over gateways of qufop_gateway_ufop_waiting_no_instance
//
// Pending, InFlight and NoInstance are each gateway's own work; every
// gateway sees the same instances, so Capacity and Healthy are the highest
// over gateways, not a sum.
//
// The gateways come from Config.Gateways, called on every Figures. On
// Consul they are the healthy instances of service "qufop-gateway", which a
// Catalog with the prefix "qufop-" finds under the name "gateway":
//
//	cat := consul.NewCatalog(client, consul.CatalogOptions{ServicePrefix: "qufop-"})
//	src, err := scrape.New(scrape.Config{Gateways: scrape.FromCatalog(cat, "gateway")})
//
// Partial data: a gateway that does not answer within Config.Timeout, or
// answers with anything but a parsable 200, is left out. Figures then
// returns the figures of the gateways that answered with an *Error that
// names the others and wraps scaler.ErrPartial: their steps are missing
// from the sums, so the caller may scale up on these figures but must not
// scale down this round. When no gateway answers (or none is found) the
// figures are nil and the error does not wrap scaler.ErrPartial.
package scrape

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/scaler"
)

// Defaults of Config.
const (
	DefaultPath    = "/metrics"
	DefaultTimeout = 2 * time.Second
)

// maxBody bounds what is read of one gateway's /metrics.
const maxBody = 32 << 20

// accept asks for the delimited protobuf format promhttp serves, or text.
const accept = `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3`

// Config says how to find and read the gateways.
type Config struct {
	// Gateways returns the address (host:port, or a base URL such as
	// https://host:port) of every gateway to scrape; it is called on every
	// Figures. FromCatalog builds one from a cluster.Catalog.
	Gateways func() []string
	// Path of the metrics endpoint, default DefaultPath.
	Path string
	// Timeout bounds the scrape of one gateway (they run in parallel, so it
	// bounds a Figures call too), default DefaultTimeout.
	Timeout time.Duration
	// Client, if set, sends the requests; default a plain client.
	Client *http.Client
}

// FromCatalog returns a Config.Gateways that lists the addresses of the
// healthy instances of name in c.
func FromCatalog(c cluster.Catalog, name string) func() []string {
	return func() []string {
		var addrs []string
		for _, e := range c.Healthy(name) {
			addrs = append(addrs, e.Addr)
		}
		return addrs
	}
}

// Source scrapes the gateways. It is safe for concurrent use.
type Source struct {
	gateways func() []string
	path     string
	timeout  time.Duration
	client   *http.Client
}

var _ scaler.Source = (*Source)(nil)

// New checks cfg and returns a Source. It does not contact the gateways.
func New(cfg Config) (*Source, error) {
	if cfg.Gateways == nil {
		return nil, errors.New("scrape: no Gateways function to find the gateways with")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("scrape: timeout %v: must not be negative", cfg.Timeout)
	}
	s := &Source{gateways: cfg.Gateways, path: cfg.Path, timeout: cfg.Timeout, client: cfg.Client}
	if s.path == "" {
		s.path = DefaultPath
	}
	if !strings.HasPrefix(s.path, "/") {
		s.path = "/" + s.path
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if s.client == nil {
		s.client = &http.Client{}
	}
	return s, nil
}

// GatewayError is the failure of one gateway's scrape.
type GatewayError struct {
	Addr string
	Err  error
}

func (e GatewayError) Error() string { return e.Addr + ": " + e.Err.Error() }

// Error reports the gateways that could not be scraped. It wraps
// scaler.ErrPartial when some others could (Answered > 0).
type Error struct {
	Failed   []GatewayError // sorted by address
	Answered int            // gateways whose figures were returned
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scrape: %d of %d gateways did not answer", len(e.Failed), len(e.Failed)+e.Answered)
	if e.Answered > 0 {
		b.WriteString(" (their steps are not counted)")
	}
	for i, f := range e.Failed {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.Error())
	}
	return b.String()
}

// Unwrap returns scaler.ErrPartial if some gateways answered.
func (e *Error) Unwrap() error {
	if e.Answered > 0 {
		return scaler.ErrPartial
	}
	return nil
}

// Figures scrapes every gateway at once and combines their figures. See
// the package doc for partial data.
func (s *Source) Figures(ctx context.Context) (map[string]scaler.Figures, error) {
	addrs := slices.Compact(slices.Sorted(slices.Values(s.gateways())))
	addrs = slices.DeleteFunc(addrs, func(a string) bool { return a == "" })
	if len(addrs) == 0 {
		return nil, errors.New("scrape: no gateway found to scrape")
	}
	per := make([]map[string]scaler.Figures, len(addrs))
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() { per[i], errs[i] = s.scrape(ctx, a) })
	}
	wg.Wait()

	out := map[string]scaler.Figures{}
	var failed []GatewayError
	for i, figs := range per {
		if errs[i] != nil {
			failed = append(failed, GatewayError{Addr: addrs[i], Err: errs[i]})
			continue
		}
		for name, f := range figs {
			o := out[name]
			o.Pending += f.Pending
			o.InFlight += f.InFlight
			o.Capacity = max(o.Capacity, f.Capacity)
			o.Healthy = max(o.Healthy, f.Healthy)
			o.NoInstance += f.NoInstance
			out[name] = o
		}
	}
	if len(failed) == 0 {
		return out, nil
	}
	e := &Error{Failed: failed, Answered: len(addrs) - len(failed)}
	if e.Answered == 0 {
		return nil, e
	}
	return out, e
}

// scrape reads one gateway's figures; a UFOP's figure is the sum of the
// gateway's series of that metric carrying its ufop label.
func (s *Source) scrape(ctx context.Context, addr string) (map[string]scaler.Figures, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+s.path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("no answer within %v: %w", s.timeout, err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return nil, fmt.Errorf("GET %s: %s: %s", req.URL, resp.Status, strings.TrimSpace(string(msg)))
	}
	dec := expfmt.NewDecoder(io.LimitReader(resp.Body, maxBody), expfmt.ResponseFormat(resp.Header))
	out := map[string]scaler.Figures{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err == io.EOF {
			break
		} else if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("GET %s: reading: %w", req.URL, ctx.Err())
			}
			return nil, fmt.Errorf("GET %s: parsing: %w", req.URL, err)
		}
		field := fieldOf(mf.GetName())
		if field == nil {
			continue
		}
		for _, m := range mf.GetMetric() {
			name := ufopOf(m)
			if name == "" {
				continue
			}
			var v float64
			switch {
			case m.GetGauge() != nil:
				v = m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				v = m.GetUntyped().GetValue()
			default:
				continue
			}
			if v != v { // NaN
				continue
			}
			f := out[name]
			*field(&f) += v
			out[name] = f
		}
	}
	return out, nil
}

// fieldOf returns the field of Figures that metric feeds, nil for others.
func fieldOf(metric string) func(*scaler.Figures) *float64 {
	switch metric {
	case scaler.MetricPending:
		return func(f *scaler.Figures) *float64 { return &f.Pending }
	case scaler.MetricInFlight:
		return func(f *scaler.Figures) *float64 { return &f.InFlight }
	case scaler.MetricCapacity:
		return func(f *scaler.Figures) *float64 { return &f.Capacity }
	case scaler.MetricHealthy:
		return func(f *scaler.Figures) *float64 { return &f.Healthy }
	case scaler.MetricNoInstance:
		return func(f *scaler.Figures) *float64 { return &f.NoInstance }
	}
	return nil
}

func ufopOf(m *dto.Metric) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == scaler.LabelUFOP {
			return l.GetValue()
		}
	}
	return ""
}
