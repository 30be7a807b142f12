package dispatch

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/ufop"
)

// readCounter counts the reads of a record store and can hold them: while
// hold is set, every read waits for it to be closed (or for its context).
type readCounter struct {
	records
	reads atomic.Int64

	mu   sync.Mutex
	hold chan struct{}
}

func (c *readCounter) Get(ctx context.Context, name string) (*ufop.Record, error) {
	c.reads.Add(1)
	c.mu.Lock()
	h := c.hold
	c.mu.Unlock()
	if h != nil {
		select {
		case <-h:
		case <-ctx.Done():
			return nil, errs.Failed(ctx.Err(), "reading ufop %q failed", name)
		}
	}
	return c.records.Get(ctx, name)
}

func (c *readCounter) setHold(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on {
		c.hold = make(chan struct{})
	} else if c.hold != nil {
		close(c.hold)
		c.hold = nil
	}
}

func noCatalog() cluster.Catalog { return &catalog{eps: map[string][]cluster.Endpoint{}} }

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// 10,000 unknown names cost one read each and leave at most the cache's
// bound behind; the records of the UFOPs that exist stay cached meanwhile;
// names no UFOP can have cost no read at all.
func TestUnknownNamesAreBounded(t *testing.T) {
	recs := &readCounter{records: records{"real": rec("real", ufop.Public, ufop.ProtocolHandler, 1)}}
	cfg := NewDefaultConfig()
	cfg.RecordTTL, cfg.MissTTL = time.Hour, time.Hour
	d := New(cfg, recs, noCatalog(), nil)
	clock := newFakeClock()
	d.now = clock.Now

	p, err := d.Resolve(context.Background(), cmd("real/x"), "")
	require.NoError(t, err)
	require.NotNil(t, p)
	require.EqualValues(t, 1, recs.reads.Load())

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 10000
	for i := range n {
		p, err := d.Resolve(context.Background(), cmd(fmt.Sprintf("nosuch-%d/x", i)), "")
		require.NoError(t, err)
		require.Nil(t, p)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("heap after %d unknown names: %+d bytes", n, int64(after.HeapAlloc)-int64(before.HeapAlloc))

	assert.EqualValues(t, 1+n, recs.reads.Load(), "one read per unknown name")
	assert.LessOrEqual(t, d.cache.misses.Len(), cfg.MissCacheSize, "misses kept within the bound")
	assert.LessOrEqual(t, d.cache.hits.Len(), cfg.RecordCacheSize)

	// The flood did not push the real record out.
	_, err = d.Resolve(context.Background(), cmd("real/x"), "")
	require.NoError(t, err)
	assert.EqualValues(t, 1+n, recs.reads.Load(), "the real record is still cached")

	// The newest misses are still known: asked again, no read.
	_, err = d.Resolve(context.Background(), cmd(fmt.Sprintf("nosuch-%d/x", n-1)), "")
	require.NoError(t, err)
	assert.EqualValues(t, 1+n, recs.reads.Load(), "a recent miss is cached")

	// Names that cannot be UFOP names are not looked up.
	for _, name := range []string{"n1", "UPPER", "-dash", "a_b"} {
		p, err := d.Resolve(context.Background(), fop.Cmd{Name: name, Raw: name}, "")
		require.NoError(t, err)
		assert.Nil(t, p)
	}
	assert.EqualValues(t, 1+n, recs.reads.Load(), "no read for impossible names")
}

// Entries live for their TTL: a miss for MissTTL, a record for RecordTTL.
func TestRecordCacheTTL(t *testing.T) {
	recs := &readCounter{records: records{"real": rec("real", ufop.Public, ufop.ProtocolHandler, 1)}}
	cfg := NewDefaultConfig()
	cfg.RecordTTL, cfg.MissTTL = time.Minute, 10*time.Second
	d := New(cfg, recs, noCatalog(), nil)
	clock := newFakeClock()
	d.now = clock.Now
	resolve := func(name string) {
		t.Helper()
		_, err := d.Resolve(context.Background(), cmd(name+"/x"), "")
		require.NoError(t, err)
	}
	resolve("real")
	resolve("later")
	require.EqualValues(t, 2, recs.reads.Load())

	clock.Advance(9 * time.Second)
	resolve("real")
	resolve("later")
	assert.EqualValues(t, 2, recs.reads.Load(), "both cached")

	// The UFOP "later" is created: it is found once its miss expires.
	recs.records["later"] = rec("later", ufop.Public, ufop.ProtocolHandler, 1)
	clock.Advance(2 * time.Second)
	p, err := d.Resolve(context.Background(), cmd("later/x"), "")
	require.NoError(t, err)
	assert.NotNil(t, p, "the miss expired after MissTTL")
	resolve("real")
	assert.EqualValues(t, 3, recs.reads.Load(), "the record is still cached")

	clock.Advance(time.Minute)
	resolve("real")
	assert.EqualValues(t, 4, recs.reads.Load(), "the record expired after RecordTTL")
}

// Concurrent lookups of one name are one read.
func TestConcurrentLookupsCollapse(t *testing.T) {
	recs := &readCounter{records: records{}}
	d := New(NewDefaultConfig(), recs, noCatalog(), nil)
	recs.setHold(true)
	const n = 50
	errc := make(chan error, n)
	for range n {
		go func() {
			_, err := d.Resolve(context.Background(), cmd("same-name/x"), "")
			errc <- err
		}()
	}
	require.Eventually(t, func() bool { return d.cache.waiting.Load() == n }, time.Minute, time.Millisecond,
		"every lookup waits on the one read")
	recs.setHold(false)
	for range n {
		require.NoError(t, <-errc)
	}
	assert.EqualValues(t, 1, recs.reads.Load())
}

// A lookup that does not answer fails with a 504 after LookupTimeout, even
// for a caller without a deadline, and leaves nothing in the cache.
func TestLookupTimeout(t *testing.T) {
	recs := &readCounter{records: records{"real": rec("real", ufop.Public, ufop.ProtocolHandler, 1)}}
	cfg := NewDefaultConfig()
	cfg.LookupTimeout = 50 * time.Millisecond
	d := New(cfg, recs, noCatalog(), nil)
	recs.setHold(true)
	for _, name := range []string{"real", "nosuch"} {
		_, err := d.Resolve(context.Background(), cmd(name+"/x"), "")
		require.Error(t, err, name)
		assert.Equal(t, 504, errs.Status(err), "%v", err)
		assert.Contains(t, errs.Public(err), "did not answer")
	}
	assert.Equal(t, 0, d.cache.hits.Len()+d.cache.misses.Len(), "failures are not cached")

	// A caller whose own deadline comes first leaves at it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err := d.Resolve(ctx, cmd("other/x"), "")
	assert.Equal(t, 504, errs.Status(err), "%v", err)

	recs.setHold(false)
	p, err := d.Resolve(context.Background(), cmd("real/x"), "")
	require.NoError(t, err)
	assert.NotNil(t, p, "found once the store answers again")
}
