package control_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/buckets"
	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/client/clienttest"
	"github.com/qufop/qufop/control"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/ufop"
)

// bucketsServer serves the buckets API; "files" is a flag bucket.
func bucketsServer(t *testing.T) (admin, alice *client.Client, keeper *buckets.Keeper) {
	t.Helper()
	gin.SetMode(gin.TestMode)
	adminCreds, aliceCreds := auth.NewCredentials(), auth.NewCredentials()
	keys := &auth.Users{}
	keys.Add("admin", adminCreds)
	keys.Add("alice", aliceCreds)
	kv := clienttest.NewKV()
	keeper = buckets.NewKeeper(kv)
	cfg := control.NewDefaultConfig()
	cfg.WorkDir = t.TempDir()
	srv := control.New(cfg, ufop.NewKeeper(kv), nil, nil, nil, keys.Lookup, nil).
		WithBuckets(keeper, "admin", func(n string) bool { return n == "files" })
	e := gin.New()
	srv.Mount(e)
	hs := httptest.NewServer(e)
	t.Cleanup(hs.Close)
	return client.New(hs.URL, adminCreds), client.New(hs.URL, aliceCreds), keeper
}

func statusOf(t *testing.T, err error) int {
	t.Helper()
	var e *client.APIError
	require.ErrorAs(t, err, &e)
	return e.Status
}

func TestBucketsAPI(t *testing.T) {
	ctx := context.Background()
	admin, alice, keeper := bucketsServer(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644))

	got, err := admin.AddBucket(ctx, api.NewBucketRequest{Name: "photos", Dir: dir, Owner: "alice", Private: true})
	require.NoError(t, err)
	assert.Equal(t, api.Bucket{Name: "photos", Dir: dir, Owner: "alice", Private: true, CreatedAt: got.CreatedAt}, *got)
	assert.False(t, got.CreatedAt.IsZero())
	pub, err := admin.AddBucket(ctx, api.NewBucketRequest{Name: "pub", Dir: dir + "/"})
	require.NoError(t, err)
	assert.Equal(t, "admin", pub.Owner, "the admin owns a bucket added without --owner")
	assert.Equal(t, dir, pub.Dir, "the dir is kept clean")

	list, err := admin.Buckets(ctx)
	require.NoError(t, err)
	assert.Equal(t, []api.Bucket{*got, *pub}, list)
	rec, err := keeper.Get(ctx, "photos")
	require.NoError(t, err)
	assert.Equal(t, buckets.Record{Name: "photos", Dir: dir, Owner: "alice", Private: true, CreatedAt: got.CreatedAt}, *rec)

	file := filepath.Join(dir, "a.txt")
	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		msg    string
	}{
		{"taken by a record", func() error {
			_, err := admin.AddBucket(ctx, api.NewBucketRequest{Name: "photos", Dir: dir})
			return err
		}, 614, `bucket "photos" already exists`},
		{"taken by a flag", func() error {
			_, err := admin.AddBucket(ctx, api.NewBucketRequest{Name: "files", Dir: dir})
			return err
		}, 614, `bucket "files" already exists (served from a --bucket flag)`},
		{"bad name", func() error { _, err := admin.AddBucket(ctx, api.NewBucketRequest{Name: "Bad", Dir: dir}); return err }, 400, `bad bucket name "Bad": want [a-z0-9][a-z0-9-]{0,62}`},
		{"relative dir", func() error {
			_, err := admin.AddBucket(ctx, api.NewBucketRequest{Name: "rel", Dir: "srv/x"})
			return err
		}, 400, `bucket "rel": dir "srv/x" is not an absolute path`},
		{"missing dir", func() error {
			_, err := admin.AddBucket(ctx, api.NewBucketRequest{Name: "gone", Dir: dir + "/nope"})
			return err
		}, 400, `bucket "gone": dir "` + dir + `/nope" does not exist on this node`},
		{"a file", func() error {
			_, err := admin.AddBucket(ctx, api.NewBucketRequest{Name: "file", Dir: file})
			return err
		}, 400, `bucket "file": "` + file + `" is not a directory`},
		{"rm unknown", func() error { return admin.DeleteBucket(ctx, "nope") }, 631, "bucket does not exist"},
		{"alice adds", func() error { _, err := alice.AddBucket(ctx, api.NewBucketRequest{Name: "mine", Dir: dir}); return err }, 403, "only the admin manages buckets"},
		{"alice lists", func() error { _, err := alice.Buckets(ctx); return err }, 403, "only the admin manages buckets"},
		{"alice removes", func() error { return alice.DeleteBucket(ctx, "photos") }, 403, "only the admin manages buckets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			require.Error(t, err)
			assert.Equal(t, tc.status, statusOf(t, err))
			assert.EqualError(t, err, tc.msg)
		})
	}
	list, err = admin.Buckets(ctx)
	require.NoError(t, err)
	assert.Len(t, list, 2, "the refused calls changed nothing")

	require.NoError(t, admin.DeleteBucket(ctx, "photos"))
	list, err = admin.Buckets(ctx)
	require.NoError(t, err)
	assert.Equal(t, []api.Bucket{*pub}, list)
	b, err := os.ReadFile(file)
	require.NoError(t, err, "removing a bucket leaves its files")
	assert.Equal(t, "a", string(b))
}
