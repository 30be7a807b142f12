package ufop_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster/local"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

func newKeeper(t *testing.T) *ufop.Keeper {
	kv, err := local.NewKV(filepath.Join(t.TempDir(), "kv.json"))
	require.NoError(t, err)
	return ufop.NewKeeper(kv)
}

func TestKeeperLifecycle(t *testing.T) {
	k := newKeeper(t)
	ctx := context.Background()
	require.NoError(t, k.Create(ctx, ufop.Record{Name: "demo-a", Owner: "alice", Mode: ufop.Private}))
	err := k.Create(ctx, ufop.Record{Name: "demo-a", Owner: "bob"})
	assert.Equal(t, ufop.StatusExists, errs.Status(err), "names are global")
	assert.Equal(t, 400, errs.Status(k.Create(ctx, ufop.Record{Name: "Bad_Name"})))
	assert.Equal(t, 400, errs.Status(k.Create(ctx, ufop.Record{Name: "imageview2"})), "reserved")

	rec, err := k.Update(ctx, "demo-a", func(r *ufop.Record) error {
		r.Versions = append(r.Versions, ufop.Version{N: r.NextVersion(), State: ufop.Building})
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 1, rec.Versions[0].N)
	assert.Equal(t, 2, rec.NextVersion())

	got, err := k.Get(ctx, "demo-a")
	require.NoError(t, err)
	assert.Equal(t, ufop.Building, got.Version(1).State)
	assert.Nil(t, got.Version(9))

	list, err := k.List(ctx)
	require.NoError(t, err)
	assert.Len(t, list, 1)

	// An error from the update function writes nothing.
	_, err = k.Update(ctx, "demo-a", func(r *ufop.Record) error {
		r.Desc = "changed"
		return errs.BadRequest("no")
	})
	assert.Error(t, err)
	got, _ = k.Get(ctx, "demo-a")
	assert.Empty(t, got.Desc)

	require.NoError(t, k.Delete(ctx, "demo-a"))
	_, err = k.Get(ctx, "demo-a")
	assert.Equal(t, 404, errs.Status(err))
	assert.ErrorIs(t, err, ufop.ErrNoSuchUFOP)
	assert.Equal(t, 404, errs.Status(k.Delete(ctx, "demo-a")))
}

// Concurrent updates never lose each other: every version number is used
// exactly once.
func TestKeeperConcurrentUpdates(t *testing.T) {
	k := newKeeper(t)
	ctx := context.Background()
	require.NoError(t, k.Create(ctx, ufop.Record{Name: "race", Owner: "alice"}))
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := k.Update(ctx, "race", func(r *ufop.Record) error {
				r.Versions = append(r.Versions, ufop.Version{N: r.NextVersion()})
				return nil
			})
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	rec, err := k.Get(ctx, "race")
	require.NoError(t, err)
	require.Len(t, rec.Versions, n)
	for i, v := range rec.Versions {
		assert.Equal(t, i+1, v.N)
	}
}

func TestModesAndNames(t *testing.T) {
	for in, want := range map[string]ufop.Mode{"": ufop.Private, "2": ufop.Private, "private": ufop.Private, "1": ufop.Public, "public": ufop.Public} {
		m, err := ufop.ParseMode(in)
		require.NoError(t, err)
		assert.Equal(t, want, m)
	}
	_, err := ufop.ParseMode("protected")
	assert.Error(t, err)
	for _, ok := range []string{"abc", "ufop-demo", "a1-b2"} {
		assert.NoError(t, ufop.CheckName(ok), ok)
	}
	for _, bad := range []string{"", "ab", "-abc", "abc-", "ABC", "a_b", "exif"} {
		assert.Error(t, ufop.CheckName(bad), bad)
	}
}
