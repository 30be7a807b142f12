// Package tenant names who a request on the data path works for — the
// owner of the bucket it reads — and the class of service that user pays
// for. Admission (rate limits, the classes of the worker pool and of the
// UFOP queues) reads them from the request's context; the user store (the
// management API's users) sets them.
package tenant

import (
	"context"
	"fmt"
)

// Class is a user's class of service: paid work goes before free work.
type Class string

// The classes. The zero Class is Free: whoever the platform knows nothing
// about gets the free class.
const (
	Free Class = "free"
	Paid Class = "paid"
)

// Classes lists the classes, highest priority first.
var Classes = []Class{Paid, Free}

// ParseClass returns the class called s ("" is free).
func ParseClass(s string) (Class, error) {
	switch Class(s) {
	case "", Free:
		return Free, nil
	case Paid:
		return Paid, nil
	}
	return "", fmt.Errorf("unknown class %q: want free or paid", s)
}

// Tenant is whom a request works for.
type Tenant struct {
	User  string // "" for nobody known (a public bucket without an owner)
	Class Class
}

type ctxKey struct{}

// With returns ctx carrying t.
func With(ctx context.Context, t Tenant) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// From returns the tenant ctx carries; a free nobody if none.
func From(ctx context.Context) Tenant {
	t, _ := ctx.Value(ctxKey{}).(Tenant)
	if t.Class == "" {
		t.Class = Free
	}
	return t
}

// Limits are the admission limits of a class or of one user. A zero field
// means "not set": a user's unset field falls back to its class's, a
// class's to no limit.
type Limits struct {
	// RPS is the rate of requests per second a user may make on one
	// gateway (a token bucket), Burst the bucket's size.
	RPS   float64 `json:"rps,omitempty"`
	Burst int     `json:"burst,omitempty"`
	// Commands caps the steps of one command a user may run at once on
	// one gateway, by command name ("imageMogr2": 2).
	Commands map[string]int `json:"commands,omitempty"`
}

// Over returns l with every field it leaves unset taken from base.
func (l Limits) Over(base Limits) Limits {
	out := base
	if l.RPS != 0 {
		out.RPS = l.RPS
	}
	if l.Burst != 0 {
		out.Burst = l.Burst
	}
	if len(l.Commands) > 0 {
		m := make(map[string]int, len(base.Commands)+len(l.Commands))
		for k, v := range base.Commands {
			m[k] = v
		}
		for k, v := range l.Commands {
			m[k] = v
		}
		out.Commands = m
	}
	return out
}
