package dispatch

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/cluster/consul"
	"github.com/qufop/qufop/cluster/consul/consulfake"
	"github.com/qufop/qufop/cluster/local"
	"github.com/qufop/qufop/ufop"
)

// consulKV is a Consul KV under qufop/ on srv, closed with the test.
func consulKV(t *testing.T, srv *consulfake.Server) *consul.KV {
	t.Helper()
	t.Cleanup(srv.Close)
	c, err := api.NewClient(&api.Config{Address: srv.Addr(), Scheme: "http"})
	require.NoError(t, err)
	return consul.NewKV(c, "qufop/")
}

// countingKV counts the reads of a KV that can list its keys.
type countingKV struct {
	cluster.KV
	gets, lists, keys atomic.Int64
}

func (c *countingKV) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	c.gets.Add(1)
	return c.KV.Get(ctx, key)
}

func (c *countingKV) List(ctx context.Context, prefix string) ([]cluster.Pair, error) {
	c.lists.Add(1)
	return c.KV.List(ctx, prefix)
}

func (c *countingKV) Keys(ctx context.Context, prefix string) ([]string, error) {
	c.keys.Add(1)
	return c.KV.(cluster.KeyLister).Keys(ctx, prefix)
}

func (c *countingKV) reads() int64 { return c.gets.Load() + c.lists.Load() + c.keys.Load() }

// With the Keeper as its store, the dispatcher tells made-up names from
// UFOPs by the list of names: 10,000 distinct unknown names cost one read of
// the keys per MissTTL, not one read each, on the local KV of qufop dev and
// on Consul's of qufop gateway.
func TestUnknownNamesCostOneReadInAll(t *testing.T) {
	kvs := map[string]func(t *testing.T) cluster.KV{
		"local": func(t *testing.T) cluster.KV {
			kv, err := local.NewKV(filepath.Join(t.TempDir(), "kv.json"))
			require.NoError(t, err)
			return kv
		},
		"consul": func(t *testing.T) cluster.KV {
			return consulKV(t, consulfake.New())
		},
	}
	for name, mk := range kvs {
		t.Run(name, func(t *testing.T) {
			kv := &countingKV{KV: mk(t)}
			keeper := ufop.NewKeeper(kv)
			ctx := context.Background()
			require.NoError(t, keeper.Create(ctx, ufop.Record{Name: "real-one", Mode: ufop.Public, CreatedAt: time.Now()}))

			cfg := NewDefaultConfig()
			cfg.RecordTTL, cfg.MissTTL = time.Hour, time.Second
			d := New(cfg, keeper, noCatalog(), nil)
			clock := newFakeClock()
			d.now = clock.Now
			before := kv.reads()

			const n = 10000
			for i := range n {
				p, err := d.Resolve(ctx, cmd(fmt.Sprintf("nosuch-%d/x", i)), "")
				require.NoError(t, err)
				require.Nil(t, p)
			}
			assert.EqualValues(t, 1, kv.reads()-before, "10,000 unknown names: one read of the names")
			assert.EqualValues(t, 1, kv.keys.Load(), "the names come from the keys, not the values")
			assert.Zero(t, d.cache.misses.Len(), "nothing to remember per unknown name")

			p, err := d.Resolve(ctx, cmd("real-one/x"), "")
			require.NoError(t, err)
			require.NotNil(t, p, "a UFOP that exists is still found")
			assert.EqualValues(t, 2, kv.reads()-before, "and its record read once")

			// A UFOP registered since is found once the names are older
			// than MissTTL, and the flood costs one read per MissTTL.
			require.NoError(t, keeper.Create(ctx, ufop.Record{Name: "newer-one", Mode: ufop.Public, CreatedAt: time.Now()}))
			p, err = d.Resolve(ctx, cmd("newer-one/x"), "")
			require.NoError(t, err)
			assert.Nil(t, p, "within MissTTL the old list of names holds")
			clock.Advance(cfg.MissTTL)
			for i := range n {
				_, err := d.Resolve(ctx, cmd(fmt.Sprintf("other-%d/x", i)), "")
				require.NoError(t, err)
			}
			p, err = d.Resolve(ctx, cmd("newer-one/x"), "")
			require.NoError(t, err)
			assert.NotNil(t, p)
			assert.EqualValues(t, 4, kv.reads()-before, "one more read of the names, one of the new record")
		})
	}
}

// A store whose listing hangs makes the lookup a 504 within LookupTimeout,
// as a hung read of one record does.
func TestHungNamesAreA504(t *testing.T) {
	srv := consulfake.New()
	kv := consulKV(t, srv)
	cfg := NewDefaultConfig()
	cfg.LookupTimeout = 200 * time.Millisecond
	d := New(cfg, ufop.NewKeeper(kv), noCatalog(), nil)
	srv.SetHang(true)
	t.Cleanup(func() { srv.SetHang(false) })
	_, err := d.Resolve(context.Background(), cmd("some-name/x"), "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "did not answer within 200ms")
}
