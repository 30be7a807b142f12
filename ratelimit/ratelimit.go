// Package ratelimit is the per-user admission of the data path: a token
// bucket of requests per second for each user, and a cap on how many steps
// of one command a user runs at once, both on one gateway (limits are per
// node, not global: N gateways let a user through N times the rate).
//
// Limits come from a Policy on every request, so a change in the user
// store takes effect on the next request without a restart; the buckets
// live in a bounded LRU, so many users cannot grow memory without bound.
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/tenant"
)

// Policy gives a user's limits as stored (the user store: a user's own
// over its class's). A zero field is "not set": the Limiter's class
// defaults fill it. It is called on every request, so it must be cheap
// (a cache in front of the KV).
type Policy interface {
	Limits(user string) tenant.Limits
}

// StaticPolicy is a fixed table of limits by user (tests, configuration).
type StaticPolicy map[string]tenant.Limits

// Limits returns the user's entry, zero (nothing set) if none.
func (p StaticPolicy) Limits(user string) tenant.Limits { return p[user] }

// The reasons of a refusal, as the metric labels them.
const (
	ReasonRPS     = "rps"
	ReasonCommand = "command"
)

// Reasons are all the reasons a Limiter refuses for (the series of the
// gateway's counter: gateway.WithAdmission(l, Reasons...)).
var Reasons = []string{ReasonRPS, ReasonCommand}

// Refused is the error of a request over a limit: a 573 that names the
// limit, and the reason for the metric.
//
// 573, not 503, for both limits: Qiniu uses 573 for "request rate too high
// (single resource/user)" and its SDKs treat it as non-retryable (the ObjC
// SDK's couldRetry, the JS SDK's getErrorTypeFromStatusCode; see
// shared/reference/qiniu-compat.md §1.6), while 503 is retried
// automatically. Both limits are the user's own, not the server's
// capacity: an automatic retry would only add load from the user already
// over its share. (Go SDK v7.11.0 retries by status nowhere: its
// client.ResponseError turns any status over 299 into an ErrorInfo with
// the code and the JSON "error", which the gateway tests read back.)
type Refused struct {
	Reason string
	err    *errs.Error
}

func (r *Refused) Error() string { return r.err.Error() }

// Unwrap gives the *errs.Error, whose status and message the gateway sends.
func (r *Refused) Unwrap() error { return r.err }

// RefusedReason is the metric label of the refusal (gateway's role
// interface, so it needs not import this package).
func (r *Refused) RefusedReason() string { return r.Reason }

// DefaultUsers is how many users' buckets a Limiter keeps by default.
const DefaultUsers = 10000

// Limiter admits requests by their tenant's limits. It implements the
// gateway's Admission.
type Limiter struct {
	policy   Policy                         // nil: only the class defaults
	defaults map[tenant.Class]tenant.Limits // by class, under the policy's
	buckets  *lru.Cache[string, *rate.Limiter]
	now      func() time.Time

	mu      sync.Mutex
	running map[running]int // steps held, by user and command; no zero entries
}

type running struct{ user, cmd string }

// Options configure a Limiter.
type Options struct {
	// Defaults are the limits of each class, under what Policy sets.
	// Missing or zero: no limit.
	Defaults map[tenant.Class]tenant.Limits
	// Users bounds the users whose buckets are kept (DefaultUsers if
	// not positive).
	// A user evicted from it comes back with a full bucket: the bound
	// trades a burst of a long-idle user for bounded memory.
	Users int
	// Now is the clock (time.Now if nil), for tests.
	Now func() time.Time
}

// New returns a limiter reading p (nil: only o.Defaults).
func New(p Policy, o Options) *Limiter {
	n := o.Users
	if n <= 0 {
		n = DefaultUsers
	}
	c, _ := lru.New[string, *rate.Limiter](n) // fails only for n ≤ 0
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &Limiter{policy: p, defaults: o.Defaults, buckets: c, now: now, running: map[running]int{}}
}

// Limits are the limits in force for t: its stored ones over its class's
// defaults.
func (l *Limiter) Limits(t tenant.Tenant) tenant.Limits {
	var own tenant.Limits
	if l.policy != nil {
		own = l.policy.Limits(t.User)
	}
	return own.Over(l.defaults[t.Class])
}

// Admit admits a request on chain for the tenant of ctx, or refuses it
// with a *Refused (573). The user "" (a bucket nobody owns) is limited like
// any user, as one: exempting it would let anonymous traffic bypass every
// limit.
//
// A request holds one slot of each distinct command of its chain for its
// whole run: its steps run one after another, so it never runs two steps
// at once, and taking the slots before the source is read makes a refusal
// cost no I/O and never waste the steps already run. release gives them
// back; it must be called once, also when the request fails or panics.
func (l *Limiter) Admit(ctx context.Context, chain fop.Chain) (release func(), err error) {
	t := tenant.From(ctx)
	lim := l.Limits(t)
	if err := l.allow(t.User, lim); err != nil {
		return nil, err
	}
	return l.acquire(t.User, chain, lim.Commands)
}

// allow takes a token from the user's bucket, if the user has a rate.
func (l *Limiter) allow(user string, lim tenant.Limits) error {
	if lim.RPS <= 0 {
		return nil
	}
	burst := lim.Burst
	if burst <= 0 {
		// A bucket of 0 refuses everything: unset, it holds one
		// second's worth.
		burst = max(1, int(math.Ceil(lim.RPS)))
	}
	now := l.now()
	b, ok := l.buckets.Get(user)
	if !ok {
		b = rate.NewLimiter(rate.Limit(lim.RPS), burst)
		if prev, found, _ := l.buckets.PeekOrAdd(user, b); found {
			b = prev // another request added it first
		}
	}
	// The limits changed since the bucket was made (the store was
	// edited): adjust it in place, keeping the tokens it has.
	if b.Limit() != rate.Limit(lim.RPS) {
		b.SetLimitAt(now, rate.Limit(lim.RPS))
	}
	if b.Burst() != burst {
		b.SetBurstAt(now, burst)
	}
	if b.AllowN(now, 1) {
		return nil
	}
	return &Refused{Reason: ReasonRPS, err: errs.New(errs.StatusTooFrequent,
		"user %q: over %s requests per second (burst %d), slow down", user, fmtRate(lim.RPS), burst)}
}

// acquire takes a slot of each distinct command of chain that caps has.
func (l *Limiter) acquire(user string, chain fop.Chain, caps map[string]int) (func(), error) {
	if len(caps) == 0 {
		return func() {}, nil
	}
	var held []running
	l.mu.Lock()
	for _, c := range chain.Cmds {
		n, ok := caps[c.Name]
		if !ok || n <= 0 {
			continue
		}
		k := running{user, c.Name}
		if contains(held, k) {
			continue
		}
		if l.running[k] >= n {
			l.releaseLocked(held)
			l.mu.Unlock()
			return nil, &Refused{Reason: ReasonCommand, err: errs.New(errs.StatusTooFrequent,
				"user %q: over %d %s steps at once, slow down", user, n, c.Name)}
		}
		l.running[k]++
		held = append(held, k)
	}
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.releaseLocked(held)
			l.mu.Unlock()
		})
	}, nil
}

// releaseLocked gives back held; entries that reach zero are deleted, so
// the map holds only what runs now.
func (l *Limiter) releaseLocked(held []running) {
	for _, k := range held {
		if l.running[k]--; l.running[k] <= 0 {
			delete(l.running, k)
		}
	}
}

// Running is how many steps of cmd user holds now.
func (l *Limiter) Running(user, cmd string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running[running{user, cmd}]
}

// Users is how many users' buckets are kept now.
func (l *Limiter) Users() int { return l.buckets.Len() }

func contains(ks []running, k running) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// fmtRate prints a rate without a needless fraction: 10, 0.5.
func fmtRate(r float64) string { return fmt.Sprintf("%g", r) }
