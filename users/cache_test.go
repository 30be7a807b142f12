package users

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/tenant"
)

// countingKV counts reads, and fails them while broken is set.
type countingKV struct {
	cluster.KV
	reads  atomic.Int64
	broken atomic.Bool
}

func (k *countingKV) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	k.reads.Add(1)
	if k.broken.Load() {
		return nil, 0, fmt.Errorf("kv down")
	}
	return k.KV.Get(ctx, key)
}

// fakeClock is a clock the test moves.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) add(d time.Duration) { c.t.Add(int64(d)) }
func newClock() *fakeClock {
	c := &fakeClock{}
	c.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func cacheOn(s *Store, static auth.Lookup, size int, clk *fakeClock) *Cache {
	c := NewCache(s, static, time.Second, size)
	c.now = clk.now
	return c
}

func TestLookupSeesRotationAfterTTL(t *testing.T) {
	ctx := context.Background()
	kv := &countingKV{KV: newKV(t)}
	s := NewStore(kv)
	u, err := s.Create(ctx, "alice", tenant.Free)
	require.NoError(t, err)
	old := u.Keys[0]
	clk := newClock()
	c := cacheOn(s, nil, 16, clk)

	sk, user, ok := c.Lookup(old.AccessKey)
	require.True(t, ok)
	assert.Equal(t, old.SecretKey, sk)
	assert.Equal(t, "alice", user)
	reads := kv.reads.Load()
	for range 100 {
		_, _, ok = c.Lookup(old.AccessKey)
		require.True(t, ok)
	}
	assert.Equal(t, reads, kv.reads.Load(), "repeated lookups within the TTL read nothing")

	creds, err := s.Rotate(ctx, "alice")
	require.NoError(t, err)
	for _, tc := range []struct {
		after time.Duration
		oldOK bool
		newOK bool
	}{
		{0, true, true},                      // the old answer is reused; the new key was never asked
		{999 * time.Millisecond, true, true}, // still within the TTL
		{time.Millisecond, false, true},      // TTL reached: the old key is refused
		{time.Hour, false, true},
	} {
		clk.add(tc.after)
		_, _, ok := c.Lookup(old.AccessKey)
		assert.Equal(t, tc.oldOK, ok, "old key after +%s", tc.after)
		sk, user, ok := c.Lookup(creds.AccessKey)
		assert.Equal(t, tc.newOK, ok, "new key after +%s", tc.after)
		if ok {
			assert.Equal(t, creds.SecretKey, sk)
			assert.Equal(t, "alice", user)
		}
	}
}

func TestLookupStaticFirstAndUnknownKeys(t *testing.T) {
	ctx := context.Background()
	kv := &countingKV{KV: newKV(t)}
	s := NewStore(kv, "admin")
	admin := auth.NewCredentials()
	static := &auth.Users{}
	static.Add("admin", admin)
	clk := newClock()
	c := cacheOn(s, static.Lookup, 16, clk)

	sk, user, ok := c.Lookup(admin.AccessKey)
	require.True(t, ok)
	assert.Equal(t, admin.SecretKey, sk)
	assert.Equal(t, "admin", user)
	assert.Zero(t, kv.reads.Load(), "the admin's keys cost no read")

	_, _, ok = c.Lookup("made-up")
	assert.False(t, ok)
	reads := kv.reads.Load()
	_, _, ok = c.Lookup("made-up")
	assert.False(t, ok)
	assert.Equal(t, reads, kv.reads.Load(), "an unknown key is remembered for the TTL")

	// Something that is not an access key costs no read at all.
	reads = kv.reads.Load()
	for _, ak := range []string{"", "../ufops/x", "a/b", "a?b", strings.Repeat("a", 65)} {
		_, _, ok = c.Lookup(ak)
		assert.False(t, ok, ak)
	}
	assert.Equal(t, reads, kv.reads.Load())

	// A stored user's key is found.
	u, err := s.Create(ctx, "bob", tenant.Paid)
	require.NoError(t, err)
	_, user, ok = c.Lookup(u.AccessKey())
	require.True(t, ok)
	assert.Equal(t, "bob", user)

	// A failed read refuses, and is not remembered: once the KV answers
	// again, the same key works at once (no TTL to wait).
	carol, err := s.Create(ctx, "carol", tenant.Free)
	require.NoError(t, err)
	kv.broken.Store(true)
	_, _, ok = c.Lookup(carol.AccessKey())
	assert.False(t, ok)
	kv.broken.Store(false)
	_, user, ok = c.Lookup(carol.AccessKey())
	assert.True(t, ok)
	assert.Equal(t, "carol", user)
}

func TestCacheIsBounded(t *testing.T) {
	kv := &countingKV{KV: newKV(t)}
	c := cacheOn(NewStore(kv), nil, 8, newClock())
	for i := range 1000 {
		c.Lookup(fmt.Sprintf("ak-%d", i))
		c.Class(fmt.Sprintf("user-%d", i))
	}
	assert.Equal(t, 8, c.keys.Len())
	assert.Equal(t, 8, c.users.Len())
	// The newest are kept: asking again reads nothing.
	reads := kv.reads.Load()
	c.Lookup("ak-999")
	assert.Equal(t, reads, kv.reads.Load())
	c.Lookup("ak-0")
	assert.Greater(t, kv.reads.Load(), reads, "the oldest was evicted")
}

func TestClassAndLimits(t *testing.T) {
	ctx := context.Background()
	kv := &countingKV{KV: newKV(t)}
	s := NewStore(kv, "admin")
	clk := newClock()
	c := cacheOn(s, nil, 16, clk)
	_, err := s.Create(ctx, "payer", tenant.Paid)
	require.NoError(t, err)
	_, err = s.Create(ctx, "freebie", tenant.Free)
	require.NoError(t, err)
	require.NoError(t, s.SetClassLimits(ctx, tenant.Free, tenant.Limits{RPS: 5, Burst: 10, Commands: map[string]int{"imageMogr2": 1}}))
	require.NoError(t, s.SetClassLimits(ctx, tenant.Paid, tenant.Limits{RPS: 100, Burst: 200}))
	_, err = s.SetLimits(ctx, "payer", tenant.Limits{Commands: map[string]int{"imageMogr2": 8}})
	require.NoError(t, err)

	for _, tc := range []struct {
		user   string
		class  tenant.Class
		limits tenant.Limits
	}{
		{"payer", tenant.Paid, tenant.Limits{RPS: 100, Burst: 200, Commands: map[string]int{"imageMogr2": 8}}},
		{"freebie", tenant.Free, tenant.Limits{RPS: 5, Burst: 10, Commands: map[string]int{"imageMogr2": 1}}},
		{"admin", tenant.Free, tenant.Limits{RPS: 5, Burst: 10, Commands: map[string]int{"imageMogr2": 1}}},
		{"", tenant.Free, tenant.Limits{RPS: 5, Burst: 10, Commands: map[string]int{"imageMogr2": 1}}},
	} {
		assert.Equal(t, tc.class, c.Class(tc.user), tc.user)
		assert.Equal(t, tenant.Tenant{User: tc.user, Class: tc.class}, c.Tenant(tc.user), tc.user)
		assert.Equal(t, tc.limits, c.Limits(tc.user), tc.user)
	}

	// A change applies after the TTL, not before; within it, no reads.
	_, err = s.SetLimits(ctx, "freebie", tenant.Limits{RPS: 1, Burst: 1})
	require.NoError(t, err)
	require.NoError(t, s.SetClassLimits(ctx, tenant.Paid, tenant.Limits{RPS: 50, Burst: 60}))
	reads := kv.reads.Load()
	assert.Equal(t, 5.0, c.Limits("freebie").RPS)
	assert.Equal(t, 200, c.Limits("payer").Burst)
	assert.Equal(t, reads, kv.reads.Load())
	clk.add(time.Second)
	assert.Equal(t, tenant.Limits{RPS: 1, Burst: 1, Commands: map[string]int{"imageMogr2": 1}}, c.Limits("freebie"))
	assert.Equal(t, 60, c.Limits("payer").Burst)

	// While the KV cannot be read, the last answers stand.
	kv.broken.Store(true)
	clk.add(time.Second)
	assert.Equal(t, tenant.Paid, c.Class("payer"))
	assert.Equal(t, 60, c.Limits("payer").Burst)
}

// gateKV holds every read until open is closed, counting them.
type gateKV struct {
	cluster.KV
	reads atomic.Int64
	open  chan struct{}
}

func (k *gateKV) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	k.reads.Add(1)
	<-k.open
	return k.KV.Get(ctx, key)
}

// Concurrent misses of one entry make one read of the store, for each of
// the three kinds of entry.
func TestConcurrentMissesReadOnce(t *testing.T) {
	ctx := context.Background()
	base := newKV(t)
	s := NewStore(base)
	u, err := s.Create(ctx, "alice", tenant.Paid)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		call func(c *Cache) any
		want any
	}{
		{"access key", func(c *Cache) any { _, user, _ := c.Lookup(u.Keys[0].AccessKey); return user }, "alice"},
		{"user", func(c *Cache) any { return c.Class("alice") }, tenant.Paid},
		{"class limits", func(c *Cache) any { return c.ClassLimits(tenant.Free).RPS }, float64(0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := &gateKV{KV: base, open: make(chan struct{})}
			c := cacheOn(NewStore(kv), nil, 16, newClock())
			const n = 50
			got := make(chan any, n)
			for range n {
				go func() { got <- tc.call(c) }()
			}
			// Every caller is either in the one read or waiting for it.
			deadline := time.Now().Add(time.Minute)
			for kv.reads.Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond) // let the others pile up behind it
			close(kv.open)
			for range n {
				assert.Equal(t, tc.want, <-got)
			}
			// A key lookup reads the key, then the user record: one of each.
			assert.LessOrEqual(t, kv.reads.Load(), int64(2), "reads for %d concurrent misses", n)
		})
	}
}
