package dispatch

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

// recordCache is the dispatcher's cache of UFOP records. The gateway asks
// about every command name that is not built in, and the names come from
// whoever sends a URL, so everything here is bounded:
//
//   - records of UFOPs that exist: at most RecordCacheSize, each for
//     RecordTTL;
//   - names without a UFOP: at most MissCacheSize, each for MissTTL, in an
//     LRU of their own, so that a flood of made-up names cannot push the
//     records of real UFOPs out;
//   - a name that cannot be a UFOP's (ufop.CheckName) is answered without a
//     read;
//   - when the store can list every UFOP's name in one read (Namer: the
//     Keeper, from the KV's keys), a name missing from that list, read at
//     most once per MissTTL, is answered without a read of its own;
//   - concurrent lookups of one name are one read (singleflight), and at
//     most MaxLookups reads run at once;
//   - every read has LookupTimeout, whoever waits for it.
//
// So with a Namer, unknown names cost one read per MissTTL in all, however
// many there are; without one, one read per name per MissTTL. Memory stays
// under about (RecordCacheSize records + MissCacheSize names of at most 50
// bytes + the names of the UFOPs that exist).
type recordCache struct {
	records Records
	cfg     Config
	now     *func() time.Time // the dispatcher's clock (tests move it)

	hits    *lru.Cache[string, cached]    // records, by name
	misses  *lru.Cache[string, time.Time] // names without a UFOP -> when read
	flights singleflight.Group
	slots   chan struct{} // one per read running
	waiting atomic.Int64  // callers waiting for a read (tests watch it)

	namer Namer // nil: records cannot list names
	index struct {
		sync.Mutex
		names map[string]bool // every UFOP's name; nil until read
		at    time.Time       // when it was read
	}
}

// Namer is Records that can list the name of every UFOP in one cheap read
// (ufop.Keeper does, from the KV's keys).
type Namer interface {
	Names(ctx context.Context) ([]string, error)
}

// indexFlight is the singleflight key of reading the names: no UFOP name
// can contain a NUL.
const indexFlight = "\x00names"

type cached struct {
	rec     *ufop.Record
	fetched time.Time
}

func newRecordCache(records Records, cfg Config, now *func() time.Time) *recordCache {
	hits, err := lru.New[string, cached](max(cfg.RecordCacheSize, 1))
	if err != nil {
		panic(err) // only for a size below 1
	}
	misses, err := lru.New[string, time.Time](max(cfg.MissCacheSize, 1))
	if err != nil {
		panic(err)
	}
	c := &recordCache{
		records: records, cfg: cfg, now: now, hits: hits, misses: misses,
		slots: make(chan struct{}, max(cfg.MaxLookups, 1)),
	}
	c.namer, _ = records.(Namer)
	return c
}

// get returns the record of name, nil if there is no such UFOP.
func (c *recordCache) get(ctx context.Context, name string) (*ufop.Record, error) {
	now := (*c.now)()
	// A cached record first: its name is valid, and CheckName's regexp is
	// the dearest part of a hit (1 % of the gateway's CPU on bench/ufop.sh).
	if e, ok := c.hits.Get(name); ok && now.Sub(e.fetched) < c.cfg.RecordTTL {
		return e.rec, nil
	}
	if ufop.CheckName(name) != nil {
		return nil, nil // no UFOP can have this name: nothing to read
	}
	if at, ok := c.misses.Get(name); ok && now.Sub(at) < c.cfg.MissTTL {
		return nil, nil
	}
	if c.namer != nil {
		known, err := c.known(ctx, name, now)
		if err != nil {
			return nil, err
		}
		if !known {
			return nil, nil
		}
	}
	ch := c.flights.DoChan(name, func() (any, error) { return c.read(ctx, name) })
	c.waiting.Add(1)
	defer c.waiting.Add(-1)
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*ufop.Record), nil
	case <-ctx.Done():
		// This caller leaves; the read goes on for the others (and the
		// cache).
		return nil, lookupError(ctx.Err(), name, c.cfg.LookupTimeout)
	}
}

// read reads name's record once for every caller waiting on it. It runs
// under a deadline of its own, not the first caller's: a caller that leaves
// does not fail the others.
func (c *recordCache) read(ctx context.Context, name string) (*ufop.Record, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LookupTimeout)
	defer cancel()
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-rctx.Done():
		return nil, lookupError(rctx.Err(), name, c.cfg.LookupTimeout)
	}
	rec, err := c.records.Get(rctx, name)
	now := (*c.now)()
	switch {
	case errors.Is(err, ufop.ErrNoSuchUFOP):
		c.misses.Add(name, now)
		c.hits.Remove(name)
		return nil, nil
	case err != nil && rctx.Err() != nil:
		// Not cached: the next request asks again.
		return nil, lookupError(rctx.Err(), name, c.cfg.LookupTimeout)
	case err != nil:
		return nil, err
	}
	c.hits.Add(name, cached{rec: rec, fetched: now})
	c.misses.Remove(name)
	return rec, nil
}

// known reports whether name is among the UFOPs' names, reading the names
// again (once for all callers) when they are older than MissTTL.
func (c *recordCache) known(ctx context.Context, name string, now time.Time) (bool, error) {
	lookup := func() (bool, bool) {
		c.index.Lock()
		defer c.index.Unlock()
		fresh := c.index.names != nil && now.Sub(c.index.at) < c.cfg.MissTTL
		return c.index.names[name], fresh
	}
	if in, fresh := lookup(); fresh {
		return in, nil
	}
	ch := c.flights.DoChan(indexFlight, func() (any, error) { return nil, c.readNames(ctx) })
	c.waiting.Add(1)
	defer c.waiting.Add(-1)
	select {
	case r := <-ch:
		if r.Err != nil {
			return false, r.Err
		}
	case <-ctx.Done():
		return false, lookupError(ctx.Err(), name, c.cfg.LookupTimeout)
	}
	in, _ := lookup()
	return in, nil
}

// readNames reads every UFOP's name into the index, under a deadline of its
// own as read does.
func (c *recordCache) readNames(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LookupTimeout)
	defer cancel()
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-rctx.Done():
		return lookupError(rctx.Err(), "", c.cfg.LookupTimeout)
	}
	names, err := c.namer.Names(rctx)
	if err != nil {
		if rctx.Err() != nil {
			return lookupError(rctx.Err(), "", c.cfg.LookupTimeout)
		}
		return err
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	c.index.Lock()
	c.index.names, c.index.at = m, (*c.now)()
	c.index.Unlock()
	return nil
}

// forget drops what is known of name, so that the next get reads it (and
// does not join a read started before).
func (c *recordCache) forget(name string) {
	c.hits.Remove(name)
	c.misses.Remove(name)
	c.flights.Forget(name)
}

// StatusClientClosed is nginx's code for a client that went away (the
// gateway logs it, never sends it).
const StatusClientClosed = 499

func lookupError(err error, name string, timeout time.Duration) error {
	if errors.Is(err, context.Canceled) {
		return errs.Wrap(StatusClientClosed, err, "client closed request")
	}
	if name == "" {
		return errs.Wrap(http.StatusGatewayTimeout, err, "listing ufops: the record store did not answer within %s, retry later", timeout)
	}
	return errs.Wrap(http.StatusGatewayTimeout, err, "looking up ufop %q: the record store did not answer within %s, retry later", name, timeout)
}
