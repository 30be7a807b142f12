package consul

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// DefaultLockKey is the key the scalers compete for.
const DefaultLockKey = "qufop/scaler/lock"

// Elector defaults.
const (
	// DefaultLockTTL is the session TTL: Consul's minimum. Consul
	// invalidates a session only once 2 × TTL has passed without a
	// renewal.
	DefaultLockTTL = 10 * time.Second
	// DefaultLockDelay is how long Consul refuses the lock to everyone
	// after the holder's session was invalidated (the holder died or lost
	// its agent), so that a holder that has not noticed yet stops first.
	// consul/api's Lock retries 5 s after such a refusal anyway, so any
	// delay up to 5 s costs nothing more on a takeover.
	DefaultLockDelay = 2 * time.Second
	// DefaultLockWait bounds each blocking query while waiting for the
	// lock, and so how long Run takes to return once its ctx ends.
	DefaultLockWait = 5 * time.Second
	// DefaultLockRetry is the pause after an error talking to Consul.
	DefaultLockRetry = time.Second
)

// ElectorOptions tune an Elector; zero fields take the defaults above.
type ElectorOptions struct {
	// TTL of the Consul session, between 10s and 24h. The leader renews it
	// every TTL/3 and stops leading when it could not renew it for a whole
	// TTL (well before Consul, which waits 2 × TTL, lets anyone else in).
	TTL time.Duration
	// LockDelay is the session's lock delay (see DefaultLockDelay). An
	// explicit release (ctx ending, lead returning) has none: the next
	// elector takes the lock at once.
	LockDelay time.Duration
	// Wait bounds each blocking query while waiting for the lock.
	Wait time.Duration
	// Retry is the pause after a failed attempt (Consul unreachable, a
	// session lost while waiting).
	Retry time.Duration
	// Name of the session in Consul (default "qufop lock <key>").
	Name string
	// Value is stored in the key while this elector holds it, to tell who
	// leads (default "<hostname> pid <pid>").
	Value []byte
	// Logf, if set, receives a line when the elector starts or stops
	// leading and when it cannot reach Consul.
	Logf func(format string, args ...any)
}

// Elector is a leader election on a Consul lock: a session with a TTL that
// the elector renews, and the KV key it holds with that session
// (consul/api's Lock: `?acquire=`, then a blocking query that watches the
// key). Of all electors on one key, at most one runs its lead function at a
// time. When the leader's process dies, its session is no longer renewed,
// Consul invalidates it 2 × TTL after its last renewal, and another
// elector takes the lock once the lock delay is over (consul/api retries 5
// s after the refusal). When the leader stops (ctx ends) it releases the
// lock, and the next one takes it at once.
type Elector struct {
	client  *api.Client
	key     string
	opts    ElectorOptions
	leading atomic.Bool
}

// NewElector returns an elector for key ("" is DefaultLockKey) on client.
func NewElector(client *api.Client, key string, opts ElectorOptions) *Elector {
	if key == "" {
		key = DefaultLockKey
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultLockTTL
	}
	if opts.LockDelay == 0 {
		opts.LockDelay = DefaultLockDelay
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
	if opts.Value == nil {
		host, _ := os.Hostname()
		opts.Value = fmt.Appendf(nil, "%s pid %d", host, os.Getpid())
	}
	return &Elector{client: client, key: key, opts: opts}
}

// Key is the lock's key.
func (e *Elector) Key() string { return e.key }

// Leading says whether this elector holds the lock and its lead function
// runs.
func (e *Elector) Leading() bool { return e.leading.Load() }

// ErrNotALock is returned (wrapped) by Run when the key holds something
// that is not a lock (a value written without consul/api's lock flags):
// no elector could ever take it.
var ErrNotALock = errors.New("the key is not a lock")

// Run takes part in the election until ctx ends. Each time this elector
// gets the lock it calls lead with a context that is cancelled when the
// lock is lost (the session invalidated, the key taken away, renewals
// failing for a TTL) or ctx ends; Run waits for lead to return, releases
// the lock and, unless ctx has ended, competes again. When lead returns on
// its own, the lock is released too, and taken part for again after
// Retry. Run returns nil once ctx has ended, or an error wrapping
// ErrNotALock, or one saying the options are wrong.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) error {
	if e.opts.TTL < 10*time.Second || e.opts.TTL > 24*time.Hour {
		return fmt.Errorf("consul lock %s: TTL %s: Consul allows 10s to 24h", e.key, e.opts.TTL)
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

// term is one session: wait for the lock, lead while holding it, release
// it. led says whether it got the lock; err is nil when ctx ended or lead
// returned by itself, and says why otherwise.
func (e *Elector) term(ctx context.Context, lead func(context.Context)) (led bool, err error) {
	id, err := e.createSession(ctx)
	if err != nil {
		return false, err
	}
	// sctx ends with ctx or when the session is lost.
	sctx, lose := context.WithCancelCause(ctx)
	defer lose(nil)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		e.renew(sctx, id, lose)
	}()
	defer func() {
		lose(nil)
		<-renewed
		e.destroySession(id)
	}()

	// The monitor of a held lock rides out Consul errors for about a TTL
	// (one try a second) instead of giving the lock up at the first 500;
	// renew stops the leader if the session could not be renewed for a
	// TTL.
	lock, err := e.client.LockOpts(&api.LockOptions{
		Key: e.key, Value: e.opts.Value, Session: id, LockWaitTime: e.opts.Wait,
		MonitorRetries: max(1, int(e.opts.TTL/time.Second)), MonitorRetryTime: time.Second,
	})
	if err != nil {
		return false, err
	}
	lost, err := lock.Lock(sctx.Done())
	switch {
	case errors.Is(err, api.ErrLockConflict):
		return false, fmt.Errorf("consul lock %s: %w (it holds a value written without the lock flags; delete it or choose another key)", e.key, ErrNotALock)
	case err != nil:
		return false, err
	case lost == nil: // stopped: ctx ended, or the session was lost
		if ctx.Err() != nil {
			return false, nil
		}
		return false, fmt.Errorf("waiting for the lock: %w", context.Cause(sctx))
	}

	e.leading.Store(true)
	e.logf("consul lock %s: leading (session %s)", e.key, short(id))
	lctx, stop := context.WithCancel(sctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		lead(lctx)
	}()
	var why error
	held := true // as far as we know: releasing a lock we lost is refused, harmlessly
	select {
	case <-lost:
		why, held = errors.New("the lock was taken away (session invalidated, key changed or Consul unreachable)"), false
	case <-sctx.Done():
		why = context.Cause(sctx)
	case <-done:
		why = errLeadReturned
	}
	e.leading.Store(false)
	stop()
	<-done
	if held {
		e.release(id)
	}
	switch {
	case ctx.Err() != nil:
		e.logf("consul lock %s: stopped leading: released", e.key)
		return true, nil
	case errors.Is(why, errLeadReturned):
		e.logf("consul lock %s: lead returned: released", e.key)
		return true, nil
	}
	e.logf("consul lock %s: stopped leading: %v", e.key, why)
	return true, fmt.Errorf("lost the lock: %w", why)
}

func (e *Elector) logf(format string, args ...any) {
	if e.opts.Logf != nil {
		e.opts.Logf(format, args...)
	}
}

func (e *Elector) createSession(ctx context.Context) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, e.opts.TTL)
	defer cancel()
	id, _, err := e.client.Session().Create(&api.SessionEntry{
		Name: e.opts.Name, TTL: e.opts.TTL.String(), LockDelay: e.opts.LockDelay,
		Behavior: api.SessionBehaviorRelease,
	}, (&api.WriteOptions{}).WithContext(cctx))
	if err != nil {
		return "", fmt.Errorf("creating a session: %w", err)
	}
	return id, nil
}

// renew renews session id every TTL/3 until ctx ends. It calls lose when
// Consul no longer knows the session, or when no renewal succeeded for a
// TTL: Consul keeps a session at least 2 × TTL after its last renewal, so
// a leader that stops then still stops before anyone else can take over.
func (e *Elector) renew(ctx context.Context, id string, lose context.CancelCauseFunc) {
	ttl := e.opts.TTL
	last := time.Now() // the session was just created
	wait := ttl / 3
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		sent := time.Now()
		rctx, cancel := context.WithTimeout(ctx, ttl/3)
		entry, _, err := e.client.Session().Renew(id, (&api.WriteOptions{}).WithContext(rctx))
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && entry == nil:
			lose(fmt.Errorf("session %s is gone", short(id)))
			return
		case err == nil:
			last, wait = sent, ttl/3
			continue
		}
		if time.Since(last) >= ttl {
			lose(fmt.Errorf("session %s not renewed for %s: %w", short(id), ttl, err))
			return
		}
		e.logf("consul lock %s: renewing session %s: %v", e.key, short(id), err)
		wait = min(time.Second, ttl/3)
	}
}

// release gives the lock back explicitly (no lock delay for the next
// holder), bounded in time: ctx may have ended already.
func (e *Elector) release(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.Wait)
	defer cancel()
	pair := &api.KVPair{Key: e.key, Value: e.opts.Value, Session: id, Flags: api.LockFlagValue}
	if _, _, err := e.client.KV().Release(pair, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		e.logf("consul lock %s: release: %v (the session's end releases it)", e.key, err)
	}
}

// destroySession ends session id, bounded in time; if Consul cannot be
// reached the TTL ends it.
func (e *Elector) destroySession(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.Wait)
	defer cancel()
	_, _ = e.client.Session().Destroy(id, (&api.WriteOptions{}).WithContext(ctx))
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
