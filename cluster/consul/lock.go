package consul

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/consul/api"
)

// DefaultLockKey is the key the scalers compete for.
const DefaultLockKey = "qufop/scaler/lock"

// DefaultLockService is the Consul service under which every elector
// registers, on the agent it talks to, the TTL check its session is tied
// to. With ACLs on, the token needs `service "qufop-lock" { policy =
// "write" }` for it (besides key and session rights).
const DefaultLockService = "qufop-lock"

// Elector defaults and limits.
const (
	// DefaultLockTTL is the default ElectorOptions.TTL: a leader that dies
	// is replaced within about this long.
	DefaultLockTTL = 10 * time.Second
	// MinLockTTL and MaxLockTTL bound ElectorOptions.TTL.
	MinLockTTL = 2 * time.Second
	MaxLockTTL = 24 * time.Hour
	// DefaultLockWait bounds each blocking query while waiting for the
	// lock, and so how long Run takes to return once its ctx ends.
	DefaultLockWait = 5 * time.Second
	// DefaultLockRetry is the pause after an error talking to Consul.
	DefaultLockRetry = time.Second
)

// Timings are the figures an elector derives from its TTL (LockTimings).
//
// Each elector registers a service of its own on its Consul agent
// (ElectorOptions.Service, one instance per elector) whose one check is a
// TTL check, and ties its session to that check and to the node's
// serfHealth. It updates the check and renews the session every
// Heartbeat. When its process dies the updates stop, the agent marks the
// check critical CheckTTL after the last one, and Consul invalidates the
// session at that moment (recorded on Consul 1.16.3: 5.01 s after the last
// update for a 5 s TTL): the lock is released, and the next elector takes
// it once the LockDelay is over. A takeover after a crash thus takes at
// most CheckTTL + LockDelay + one poll (LockDelay/20), 0.92 × TTL, plus
// the time requests take (measured on Consul 1.16.3 with a 10 s TTL: 8.9 s
// to 9.0 s after a SIGKILL).
//
// The leader stops leading once StepDown has passed without both its
// check update and its session renewal succeeding (the renewal goes to
// the Consul servers, so an agent cut off from them counts as a
// failure): that is before its check can go critical (CheckTTL), and
// before the LockDelay that follows any other invalidation (an operator
// destroying the session, the node's serfHealth failing) is over, with
// Heartbeat to spare for the lead function to stop.
//
// SessionTTL is a backstop: should the check's state never reach the
// servers, Consul still drops the session 2 × SessionTTL after its last
// renewal.
type Timings struct {
	TTL        time.Duration // ElectorOptions.TTL
	CheckTTL   time.Duration // TTL/2
	LockDelay  time.Duration // 2/5 TTL
	StepDown   time.Duration // 3/10 TTL
	Heartbeat  time.Duration // TTL/10
	SessionTTL time.Duration // TTL, at least 10 s (Consul's minimum)
	// DeregisterAfter is the check's DeregisterCriticalServiceAfter: the
	// agent removes the service of an elector that died this long after
	// its check went critical (Consul's minimum; its reaper runs every
	// 30 s, so within about 1.5 min).
	DeregisterAfter time.Duration
}

// LockTimings returns the timings of an elector with the given TTL.
func LockTimings(ttl time.Duration) Timings {
	return Timings{
		TTL:             ttl,
		CheckTTL:        ttl / 2,
		LockDelay:       ttl * 2 / 5,
		StepDown:        ttl * 3 / 10,
		Heartbeat:       ttl / 10,
		SessionTTL:      max(ttl, 10*time.Second),
		DeregisterAfter: time.Minute,
	}
}

// poll is the pause between tries while a lock delay refuses the lock.
func (t Timings) poll() time.Duration { return max(t.LockDelay/20, 10*time.Millisecond) }

// ElectorOptions tune an Elector; zero fields take the defaults above.
type ElectorOptions struct {
	// TTL says how soon a leader that died is replaced (within 0.92 of
	// it, see Timings); MinLockTTL to MaxLockTTL.
	TTL time.Duration
	// Wait bounds each blocking query while waiting for the lock.
	Wait time.Duration
	// Retry is the pause after a failed attempt (Consul unreachable, a
	// session lost while waiting); it doubles while failures go on, up to
	// 16 × Retry.
	Retry time.Duration
	// Name of the session in Consul (default "qufop lock <key>").
	Name string
	// Service is the name of the Consul service each elector registers
	// its check under (default DefaultLockService).
	Service string
	// Value is stored in the key while this elector holds it, to tell who
	// leads (default "<hostname> pid <pid>").
	Value []byte
	// Logf, if set, receives a line when the elector starts or stops
	// leading and when it cannot reach Consul.
	Logf func(format string, args ...any)
}

// Elector is a leader election on a Consul lock: a KV key held with a
// session (`?acquire=`), the session tied to a TTL check that the elector
// keeps passing (see Timings). Of all electors on one key, at most one
// runs its lead function at a time. When the leader stops (ctx ends) it
// releases the lock, and the next one takes it at once; when it dies,
// the next one takes it within the TTL.
//
// It drives the lock itself rather than through consul/api's Lock, which
// waits a fixed 5 s after every refusal during a lock delay.
type Elector struct {
	client  *api.Client
	key     string
	opts    ElectorOptions
	t       Timings
	leading atomic.Bool
}

// NewElector returns an elector for key ("" is DefaultLockKey) on client.
// The client must talk to a Consul agent (the local one, as for every
// Consul client) rather than through a load balancer to several: the
// elector's check lives on that agent.
func NewElector(client *api.Client, key string, opts ElectorOptions) *Elector {
	if key == "" {
		key = DefaultLockKey
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultLockTTL
	}
	if opts.Wait == 0 {
		opts.Wait = DefaultLockWait
	}
	if opts.Retry == 0 {
		opts.Retry = DefaultLockRetry
	}
	if opts.Name == "" {
		opts.Name = "qufop lock " + key
	}
	if opts.Service == "" {
		opts.Service = DefaultLockService
	}
	if opts.Value == nil {
		host, _ := os.Hostname()
		opts.Value = fmt.Appendf(nil, "%s pid %d", host, os.Getpid())
	}
	return &Elector{client: client, key: key, opts: opts, t: LockTimings(opts.TTL)}
}

// Key is the lock's key.
func (e *Elector) Key() string { return e.key }

// Timings are the elector's timings.
func (e *Elector) Timings() Timings { return e.t }

// Leading says whether this elector holds the lock and its lead function
// runs.
func (e *Elector) Leading() bool { return e.leading.Load() }

// ErrNotALock is returned (wrapped) by Run when the key holds something
// that is not a lock (a value written without consul/api's lock flags):
// no elector could ever take it.
var ErrNotALock = errors.New("the key is not a lock")

// Run takes part in the election until ctx ends. Each time this elector
// gets the lock it calls lead with a context that is cancelled when the
// lock is lost (the session invalidated, the key taken away, Consul not
// confirming the check and the session for Timings.StepDown) or ctx ends;
// Run waits for lead to return, releases the lock and, unless ctx has
// ended, competes again. When lead returns on its own, the lock is
// released too, and taken part for again after Retry. Run returns nil
// once ctx has ended, or an error wrapping ErrNotALock, or one saying the
// options are wrong.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) error {
	if e.opts.TTL < MinLockTTL || e.opts.TTL > MaxLockTTL {
		return fmt.Errorf("consul lock %s: TTL %s: it must be between %s and %s", e.key, e.opts.TTL, MinLockTTL, MaxLockTTL)
	}
	failures := 0
	for ctx.Err() == nil {
		led, err := e.term(ctx, lead)
		if led {
			failures = 0
		}
		if errors.Is(err, ErrNotALock) {
			return err
		}
		if ctx.Err() != nil {
			break
		}
		pause := e.opts.Retry
		if err != nil {
			// Back off while Consul keeps failing: Retry, 2×, 4×, … 16×.
			pause <<= min(failures, 4)
			failures++
			e.logf("consul lock %s: %v (trying again in %s)", e.key, err, pause)
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
	return nil
}

// errLeadReturned ends a term whose lead function returned by itself.
var errLeadReturned = errors.New("lead returned")

// term is one check and session: wait for the lock, lead while holding
// it, release it. led says whether it got the lock; err is nil when ctx
// ended or lead returned by itself, and says why otherwise.
func (e *Elector) term(ctx context.Context, lead func(context.Context)) (led bool, err error) {
	// beat is when (since base, on the monotonic clock) the last check
	// update and session renewal that both succeeded were sent: the
	// registration counts as the first.
	base := time.Now()
	var beat atomic.Int64
	checkID, err := e.register(ctx)
	if err != nil {
		return false, err
	}
	defer e.deregister(checkID)
	id, err := e.createSession(ctx, checkID)
	if err != nil {
		return false, err
	}
	// sctx ends with ctx or when the session is lost.
	sctx, lose := context.WithCancelCause(ctx)
	defer lose(nil)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		e.keepalive(sctx, checkID, id, base, &beat, lose)
	}()
	defer func() {
		lose(nil)
		<-kept
		e.destroySession(id)
	}()

	index, err := e.acquire(sctx, id)
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return false, nil
		}
		if sctx.Err() != nil {
			return false, fmt.Errorf("waiting for the lock: %w", context.Cause(sctx))
		}
		return false, err
	case index == 0: // stopped: ctx ended, or the session was lost
		if ctx.Err() != nil {
			return false, nil
		}
		return false, fmt.Errorf("waiting for the lock: %w", context.Cause(sctx))
	}

	if stale := time.Since(base.Add(time.Duration(beat.Load()))); stale >= e.t.StepDown {
		// Got the lock while Consul confirmed nothing for a StepDown
		// (the check or the renewals failing): do not lead on it.
		e.release(id)
		return false, fmt.Errorf("got the lock, but Consul confirmed neither the check nor the session for %s", stale.Round(time.Millisecond))
	}
	e.leading.Store(true)
	e.logf("consul lock %s: leading (session %s)", e.key, short(id))
	lctx, stop := context.WithCancel(sctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		lead(lctx)
	}()
	lost := make(chan error, 1)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		e.watch(lctx, id, index, lost)
	}()
	why, held := e.hold(sctx, base, &beat, lost, done)
	e.leading.Store(false)
	stop()
	<-done
	<-watched
	released := ""
	if held && e.release(id) {
		released = ": released"
	}
	switch {
	case ctx.Err() != nil:
		e.logf("consul lock %s: stopped leading%s", e.key, released)
		return true, nil
	case errors.Is(why, errLeadReturned):
		e.logf("consul lock %s: lead returned%s", e.key, released)
		return true, nil
	}
	e.logf("consul lock %s: stopped leading: %v", e.key, why)
	return true, fmt.Errorf("lost the lock: %w", why)
}

// hold waits while this elector leads: until the lock is lost, Consul
// has confirmed nothing for StepDown, sctx ends or lead returns. held
// says whether the lock may still be ours (to be released).
func (e *Elector) hold(sctx context.Context, base time.Time, beat *atomic.Int64, lost <-chan error, done <-chan struct{}) (why error, held bool) {
	timer := time.NewTimer(e.t.StepDown)
	defer timer.Stop()
	for {
		last := base.Add(time.Duration(beat.Load()))
		left := e.t.StepDown - time.Since(last)
		if left <= 0 {
			return fmt.Errorf("Consul confirmed neither the check nor the session for %s", e.t.StepDown), true
		}
		timer.Reset(left)
		select {
		case <-timer.C:
		case err := <-lost:
			return err, false
		case <-sctx.Done():
			return context.Cause(sctx), true
		case <-done:
			return errLeadReturned, true
		}
	}
}

func (e *Elector) logf(format string, args ...any) {
	if e.opts.Logf != nil {
		e.opts.Logf(format, args...)
	}
}

// register registers this term's service and its TTL check, passing, on
// the agent, and returns the check's ID (the service's too).
func (e *Elector) register(ctx context.Context) (string, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	id := e.opts.Service + "-" + hex.EncodeToString(b[:])
	// Meta says which lock and which elector (Consul takes values up to
	// 512 bytes).
	meta := map[string]string{"lock_key": e.key, "elector": string(e.opts.Value)}
	for k, v := range meta {
		if len(v) > 512 || !utf8.ValidString(v) {
			delete(meta, k)
		}
	}
	reg := &api.AgentServiceRegistration{
		ID: id, Name: e.opts.Service, Meta: meta,
		Check: &api.AgentServiceCheck{
			CheckID: id, Name: "lock " + e.key, TTL: e.t.CheckTTL.String(), Status: api.HealthPassing,
			Notes: fmt.Sprintf("updated every %s by an elector of the lock %s; critical once it stops: its session is then invalidated",
				e.t.Heartbeat, e.key),
			DeregisterCriticalServiceAfter: e.t.DeregisterAfter.String(),
		},
	}
	cctx, cancel := context.WithTimeout(ctx, e.opts.Wait)
	defer cancel()
	if err := e.client.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(cctx)); err != nil {
		hint := ""
		if statusCode(err) == http.StatusForbidden {
			hint = fmt.Sprintf(" (the Consul token needs `service %q { policy = \"write\" }`)", e.opts.Service)
		}
		return "", fmt.Errorf("registering the lock's check %s on the Consul agent: %w%s", id, err, hint)
	}
	return id, nil
}

// deregister removes the service and its check, bounded in time; if the
// agent cannot be reached it removes them DeregisterAfter after the check
// went critical.
func (e *Elector) deregister(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.Wait)
	defer cancel()
	if err := e.client.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(ctx)); err != nil && statusCode(err) != http.StatusNotFound {
		e.logf("consul lock %s: deregistering check %s: %v (the agent removes it %s after it went critical)", e.key, id, err, e.t.DeregisterAfter)
	}
}

func (e *Elector) createSession(ctx context.Context, checkID string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, e.opts.Wait)
	defer cancel()
	id, _, err := e.client.Session().Create(&api.SessionEntry{
		Name: e.opts.Name, TTL: e.t.SessionTTL.String(), LockDelay: e.t.LockDelay,
		Behavior:      api.SessionBehaviorRelease,
		NodeChecks:    []string{"serfHealth"},
		ServiceChecks: []api.ServiceCheck{{ID: checkID}},
	}, (&api.WriteOptions{}).WithContext(cctx))
	if err != nil {
		return "", fmt.Errorf("creating a session: %w", err)
	}
	return id, nil
}

// keepalive updates the check and renews the session every Heartbeat
// until ctx ends, and stores in beat when the last round that both
// succeeded was sent. It calls lose when the agent no longer knows the
// check or Consul the session.
func (e *Elector) keepalive(ctx context.Context, checkID, id string, base time.Time, beat *atomic.Int64, lose context.CancelCauseFunc) {
	output := fmt.Sprintf("alive: %s", e.opts.Value)
	failing := false
	next := time.Now().Add(e.t.Heartbeat)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		sent := time.Now()
		next = sent.Add(e.t.Heartbeat)
		rctx, cancel := context.WithTimeout(ctx, e.t.StepDown)
		err := e.client.Agent().UpdateTTLOpts(checkID, output, api.HealthPassing, (&api.QueryOptions{}).WithContext(rctx))
		var entry *api.SessionEntry
		if err == nil {
			entry, _, err = e.client.Session().Renew(id, (&api.WriteOptions{}).WithContext(rctx))
			if err != nil {
				err = fmt.Errorf("renewing session %s: %w", short(id), err)
			}
		} else {
			if statusCode(err) == http.StatusNotFound {
				cancel()
				lose(fmt.Errorf("the Consul agent no longer knows check %s (restarted?)", checkID))
				return
			}
			err = fmt.Errorf("updating check %s: %w", checkID, err)
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && entry == nil:
			lose(fmt.Errorf("session %s is gone", short(id)))
			return
		case err == nil:
			beat.Store(int64(sent.Sub(base)))
			if failing {
				e.logf("consul lock %s: check and session confirmed again", e.key)
				failing = false
			}
		case !failing:
			e.logf("consul lock %s: %v", e.key, err)
			failing = true
		}
	}
}

// acquire waits until this elector holds the lock, and returns the
// index at which it saw it held (0 if ctx ended first).
func (e *Elector) acquire(ctx context.Context, id string) (uint64, error) {
	kv := e.client.KV()
	var index uint64
	for {
		if ctx.Err() != nil {
			return 0, nil
		}
		pair, meta, err := kv.Get(e.key, (&api.QueryOptions{WaitIndex: index, WaitTime: e.opts.Wait}).WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return 0, nil
			}
			return 0, fmt.Errorf("reading the lock: %w", err)
		}
		if pair != nil && pair.Flags != api.LockFlagValue {
			return 0, fmt.Errorf("consul lock %s: %w (it holds a value written without the lock flags; delete it or choose another key)", e.key, ErrNotALock)
		}
		if pair != nil && pair.Session == id {
			return max(meta.LastIndex, 1), nil
		}
		if pair != nil && pair.Session != "" {
			// Held: wait for it to change.
			index = max(meta.LastIndex, 1)
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, e.opts.Wait)
		ok, _, err := kv.Acquire(&api.KVPair{Key: e.key, Value: e.opts.Value, Session: id, Flags: api.LockFlagValue},
			(&api.WriteOptions{}).WithContext(wctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return 0, nil
			}
			return 0, fmt.Errorf("acquiring the lock: %w", err)
		}
		if ok {
			return max(meta.LastIndex, 1), nil
		}
		// Refused with the key free: a lock delay runs (the last holder's
		// session was invalidated), or another elector was quicker. Look
		// again shortly, without blocking.
		index = 0
		select {
		case <-ctx.Done():
			return 0, nil
		case <-time.After(e.t.poll()):
		}
	}
}

// watch follows the key while this elector leads and sends on lost when
// it no longer holds it (the session was invalidated, the key deleted or
// overwritten). Errors are retried: hold steps down if Consul stays
// unreachable.
func (e *Elector) watch(ctx context.Context, id string, index uint64, lost chan<- error) {
	kv := e.client.KV()
	for ctx.Err() == nil {
		pair, meta, err := kv.Get(e.key, (&api.QueryOptions{WaitIndex: index, WaitTime: e.opts.Wait}).WithContext(ctx))
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(min(e.opts.Retry, e.t.Heartbeat)):
			}
			continue
		}
		if pair == nil || pair.Session != id {
			lost <- errors.New("the lock was taken away (session invalidated, or the key deleted or changed)")
			return
		}
		if meta.LastIndex < index {
			index = 0 // the index went backwards (a snapshot restore): start over
		} else {
			index = meta.LastIndex
		}
	}
}

// release gives the lock back explicitly (no lock delay for the next
// holder), bounded in time: ctx may have ended already. It reports
// whether Consul released it.
func (e *Elector) release(id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.Wait)
	defer cancel()
	pair := &api.KVPair{Key: e.key, Value: e.opts.Value, Session: id, Flags: api.LockFlagValue}
	ok, _, err := e.client.KV().Release(pair, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		e.logf("consul lock %s: release: %v (the session's end releases it)", e.key, err)
	}
	return err == nil && ok
}

// destroySession ends session id, bounded in time; if Consul cannot be
// reached, the check going critical ends it.
func (e *Elector) destroySession(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.Wait)
	defer cancel()
	_, _ = e.client.Session().Destroy(id, (&api.WriteOptions{}).WithContext(ctx))
}

// statusCode is the HTTP status of a consul/api error (0 if none).
func statusCode(err error) int {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
