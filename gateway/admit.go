package gateway

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/tenant"
)

// Admission admits a data-path request once its tenant (tenant.From) and
// chain are known, before its source is read (package ratelimit implements
// it: requests per second and steps of a command at once, per user).
// release gives back what the request holds; it is called once the
// request is done, failed or not.
type Admission interface {
	Admit(ctx context.Context, chain fop.Chain) (release func(), err error)
}

// refusal is an Admission's error that says which limit it was over (the
// reason label of rate_limited_total).
type refusal interface {
	error
	RefusedReason() string
}

// WithAdmission admits every request on a bucket (processing and plain
// downloads, on both fronts) through a, and counts its refusals in
// qufop_gateway_rate_limited_total{class, reason}. reasons are the values
// a's refusals give, so the series exist from the start.
func WithAdmission(a Admission, reasons ...string) Option {
	return func(s *Server) {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "qufop_gateway", Name: "rate_limited_total",
			// No user label: one series per user would grow without
			// bound; the access log names the request.
			Help: "Requests refused by the per-user limits, by the user's class and the limit (\"rps\": requests per second, \"command\": steps of one command at once).",
		}, []string{"class", "reason"})
		for _, cl := range tenant.Classes {
			for _, r := range reasons {
				c.WithLabelValues(string(cl), r)
			}
		}
		s.m.reg.MustRegister(c)
		s.adm = &admitter{a: a, limited: c}
	}
}

// admitter is the Server's Admission and its counter.
type admitter struct {
	a       Admission
	limited *prometheus.CounterVec
}

func noRelease() {}

// limit admits a request on chain by the per-user limits (nothing to admit without an Admission).
func (s *Server) limit(ctx context.Context, chain fop.Chain) (release func(), err error) {
	if s.adm == nil {
		return noRelease, nil
	}
	release, err = s.adm.a.Admit(ctx, chain)
	if err != nil {
		var r refusal
		if errors.As(err, &r) {
			s.adm.limited.WithLabelValues(string(tenant.From(ctx).Class), r.RefusedReason()).Inc()
		}
		return nil, err
	}
	return release, nil
}
