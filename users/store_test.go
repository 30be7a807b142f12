package users

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/cluster/consul"
	"github.com/qufop/qufop/cluster/consul/consulfake"
	"github.com/qufop/qufop/cluster/local"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/tenant"
)

// newKV is a local file KV (the one of qufop dev) in a temporary folder.
func newKV(t *testing.T) *local.KV {
	t.Helper()
	kv, err := local.NewKV(filepath.Join(t.TempDir(), "kv.json"))
	require.NoError(t, err)
	return kv
}

// kvs are the platform's KVs: the file KV of qufop dev and Consul's (on
// the Consul fake) of qufop builder.
var kvs = map[string]func(t *testing.T) cluster.KV{
	"local file": func(t *testing.T) cluster.KV { return newKV(t) },
	"consul": func(t *testing.T) cluster.KV {
		s := consulfake.New()
		t.Cleanup(s.Close)
		c, err := consulapi.NewClient(&consulapi.Config{Address: s.Addr(), Scheme: "http"})
		require.NoError(t, err)
		return consul.NewKV(c, consul.DefaultPrefix)
	},
}

// onEachKV runs test on each of kvs.
func onEachKV(t *testing.T, test func(t *testing.T, kv cluster.KV)) {
	for name, kv := range kvs {
		t.Run(name, func(t *testing.T) { test(t, kv(t)) })
	}
}

func TestCreateAndNames(t *testing.T) {
	ctx := context.Background()
	s := NewStore(newKV(t), "admin")
	for _, tc := range []struct {
		name   string
		class  tenant.Class
		status int // 0: created
		msg    string
	}{
		{"alice", "", 0, ""},
		{"bob-2", tenant.Paid, 0, ""},
		{"alice", tenant.Paid, StatusExists, `user "alice" already exists`},
		{"admin", "", StatusExists, `user "admin" already exists (it is the platform's)`},
		{"Al", "", 400, `bad user name "Al": want 3-50 of [a-z0-9-], not starting or ending with '-'`},
		{"-bob", "", 400, `bad user name "-bob": want 3-50 of [a-z0-9-], not starting or ending with '-'`},
		{"a/b", "", 400, `bad user name "a/b": want 3-50 of [a-z0-9-], not starting or ending with '-'`},
		{strings.Repeat("a", 51), "", 400, "bad user name"},
		{"carol", "gold", 400, `unknown class "gold": want free or paid`},
	} {
		u, err := s.Create(ctx, tc.name, tc.class)
		if tc.status != 0 {
			require.Error(t, err, tc.name)
			assert.Equal(t, tc.status, errs.Status(err), tc.name)
			assert.Contains(t, errs.Public(err), tc.msg, tc.name)
			continue
		}
		require.NoError(t, err, tc.name)
		want := tc.class
		if want == "" {
			want = tenant.Free
		}
		assert.Equal(t, want, u.Class)
		require.Len(t, u.Keys, 1)
		assert.Len(t, u.Keys[0].AccessKey, 20)
		assert.Len(t, u.Keys[0].SecretKey, 40)
		got, creds, err := s.ByAccessKey(ctx, u.AccessKey())
		require.NoError(t, err)
		assert.Equal(t, tc.name, got.Name)
		assert.Equal(t, u.Keys[0], creds)
	}
	list, err := s.List(ctx)
	require.NoError(t, err)
	var names []string
	for _, u := range list {
		names = append(names, u.Name)
	}
	assert.Equal(t, []string{"alice", "bob-2"}, names, "sorted, and the failed creates left nothing")
}

func TestRotateReplacesThePair(t *testing.T) { onEachKV(t, testRotateReplacesThePair) }

func testRotateReplacesThePair(t *testing.T, kv cluster.KV) {
	ctx := context.Background()
	s := NewStore(kv)
	u, err := s.Create(ctx, "alice", tenant.Free)
	require.NoError(t, err)
	old := u.Keys[0]
	creds, err := s.Rotate(ctx, "alice")
	require.NoError(t, err)
	assert.NotEqual(t, old.AccessKey, creds.AccessKey)
	assert.NotEqual(t, old.SecretKey, creds.SecretKey)

	_, _, err = s.ByAccessKey(ctx, old.AccessKey)
	assert.ErrorIs(t, err, ErrNoSuchUser, "no grace period: the old pair is gone")
	got, c, err := s.ByAccessKey(ctx, creds.AccessKey)
	require.NoError(t, err)
	assert.Equal(t, "alice", got.Name)
	assert.Equal(t, creds, c)
	_, _, err = kv.Get(ctx, KeyPrefix+old.AccessKey)
	assert.ErrorIs(t, err, cluster.ErrNotFound, "the old key's index is removed")

	_, err = s.Rotate(ctx, "nobody")
	assert.Equal(t, http.StatusNotFound, errs.Status(err))
}

// A stale key index (a failed rotation's) does not let the old key in:
// the record must hold the key.
func TestStaleKeyIndexIsRefused(t *testing.T) {
	ctx := context.Background()
	kv := newKV(t)
	s := NewStore(kv)
	u, err := s.Create(ctx, "alice", tenant.Free)
	require.NoError(t, err)
	old := u.Keys[0]
	_, err = s.Rotate(ctx, "alice")
	require.NoError(t, err)
	ok, err := kv.CAS(ctx, KeyPrefix+old.AccessKey, []byte("alice"), 0)
	require.NoError(t, err)
	require.True(t, ok)
	_, _, err = s.ByAccessKey(ctx, old.AccessKey)
	assert.ErrorIs(t, err, ErrNoSuchUser)
}

func TestDelete(t *testing.T) { onEachKV(t, testDelete) }

func testDelete(t *testing.T, kv cluster.KV) {
	ctx := context.Background()
	s := NewStore(kv)
	u, err := s.Create(ctx, "alice", tenant.Paid)
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "alice"))
	_, err = s.Get(ctx, "alice")
	assert.ErrorIs(t, err, ErrNoSuchUser)
	_, _, err = s.ByAccessKey(ctx, u.AccessKey())
	assert.ErrorIs(t, err, ErrNoSuchUser)
	pairs, err := kv.List(ctx, "qufop/")
	require.NoError(t, err)
	assert.Empty(t, pairs, "nothing left behind")
	assert.Equal(t, http.StatusNotFound, errs.Status(s.Delete(ctx, "alice")))
	// The name can be taken again, with new keys.
	u2, err := s.Create(ctx, "alice", tenant.Free)
	require.NoError(t, err)
	assert.NotEqual(t, u.AccessKey(), u2.AccessKey())
}

func TestCheckLimits(t *testing.T) {
	for _, tc := range []struct {
		l   tenant.Limits
		err string
	}{
		{tenant.Limits{}, ""},
		{tenant.Limits{RPS: 10, Burst: 20}, ""},
		{tenant.Limits{RPS: 0.5, Burst: 1, Commands: map[string]int{"imageMogr2": 2}}, ""},
		{tenant.Limits{Burst: 5}, ""},
		{tenant.Limits{RPS: -1, Burst: 1}, "bad rps -1: want 0 (the class's) or more"},
		{tenant.Limits{RPS: 10}, "bad burst 0: a rate of 10/s needs a burst of at least 1"},
		{tenant.Limits{Burst: -1}, "bad burst -1: want 0 (the class's) or more"},
		{tenant.Limits{Commands: map[string]int{"": 2}}, "bad command limit: empty command name"},
		{tenant.Limits{Commands: map[string]int{" ": 2}}, "bad command limit: empty command name"},
		{tenant.Limits{Commands: map[string]int{"imageMogr2": 0}}, "bad limit 0 for command imageMogr2: want at least 1 step at once"},
	} {
		err := CheckLimits(tc.l)
		if tc.err == "" {
			assert.NoError(t, err, "%+v", tc.l)
			continue
		}
		assert.Equal(t, http.StatusBadRequest, errs.Status(err))
		assert.Equal(t, tc.err, errs.Public(err))
	}
}

func TestClassLimits(t *testing.T) {
	ctx := context.Background()
	s := NewStore(newKV(t))
	l, err := s.ClassLimits(ctx, tenant.Free)
	require.NoError(t, err)
	assert.Equal(t, tenant.Limits{}, l, "none set: no limits")
	want := tenant.Limits{RPS: 5, Burst: 10, Commands: map[string]int{"imageMogr2": 1}}
	require.NoError(t, s.SetClassLimits(ctx, tenant.Free, want))
	require.NoError(t, s.SetClassLimits(ctx, tenant.Paid, tenant.Limits{RPS: 100, Burst: 200}))
	l, err = s.ClassLimits(ctx, tenant.Free)
	require.NoError(t, err)
	assert.Equal(t, want, l)
	require.NoError(t, s.SetClassLimits(ctx, tenant.Free, tenant.Limits{RPS: 6, Burst: 6}), "a second write replaces the first (CAS on its index)")
	l, err = s.ClassLimits(ctx, tenant.Free)
	require.NoError(t, err)
	assert.Equal(t, tenant.Limits{RPS: 6, Burst: 6}, l)

	err = s.SetClassLimits(ctx, "gold", tenant.Limits{})
	assert.Equal(t, http.StatusBadRequest, errs.Status(err))
	err = s.SetClassLimits(ctx, "", tenant.Limits{})
	assert.Equal(t, http.StatusBadRequest, errs.Status(err), "the class is named")
	err = s.SetClassLimits(ctx, tenant.Paid, tenant.Limits{RPS: 3})
	assert.Equal(t, http.StatusBadRequest, errs.Status(err))
}

// racingKV makes another writer change a user's record right before the
// first CAS on it, as a second control-plane process would.
type racingKV struct {
	cluster.KV
	once  sync.Once
	other func()
}

func (k *racingKV) CAS(ctx context.Context, key string, val []byte, index uint64) (bool, error) {
	if strings.HasPrefix(key, UserPrefix) && index != 0 {
		k.once.Do(k.other)
	}
	return k.KV.CAS(ctx, key, val, index)
}

// SetLimits racing with a rotation keeps both: the limits update is
// re-applied on the rotated record instead of writing back the old keys.
func TestUpdatesDoNotLoseEachOther(t *testing.T) { onEachKV(t, testUpdatesDoNotLoseEachOther) }

func testUpdatesDoNotLoseEachOther(t *testing.T, base cluster.KV) {
	ctx := context.Background()
	plain := NewStore(base)
	_, err := plain.Create(ctx, "alice", tenant.Free)
	require.NoError(t, err)
	var rotated string
	kv := &racingKV{KV: base, other: func() {
		c, err := plain.Rotate(ctx, "alice")
		require.NoError(t, err)
		rotated = c.AccessKey
	}}
	s := NewStore(kv)
	limits := tenant.Limits{RPS: 2, Burst: 4}
	_, err = s.SetLimits(ctx, "alice", limits)
	require.NoError(t, err)
	require.NotEmpty(t, rotated)

	b, _, err := base.Get(ctx, UserPrefix+"alice")
	require.NoError(t, err)
	var u User
	require.NoError(t, json.Unmarshal(b, &u))
	assert.Equal(t, limits, u.Limits)
	assert.Equal(t, rotated, u.AccessKey(), "the rotation is kept")
}
