package control_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/control/api"
)

func TestBucketStylesAPI(t *testing.T) {
	ctx := context.Background()
	admin, alice, keeper := bucketsServer(t)
	dir := t.TempDir()
	_, err := admin.AddBucket(ctx, api.NewBucketRequest{Name: "photos", Dir: dir, Owner: "alice", Private: true})
	require.NoError(t, err)

	got, err := admin.BucketStyles(ctx, "photos")
	require.NoError(t, err)
	assert.Equal(t, api.BucketStyles{Bucket: "photos", Separator: "-", Styles: map[string]string{}}, *got)

	got, err = admin.SetBucketStyle(ctx, "photos", "thumb", "imageView2/2/w/200")
	require.NoError(t, err)
	assert.Equal(t, api.BucketStyles{Bucket: "photos", Separator: "-", Styles: map[string]string{"thumb": "imageView2/2/w/200"}}, *got)
	got, err = admin.SetBucketStyle(ctx, "photos", "info", "imageView2/2/w/200|imageInfo")
	require.NoError(t, err)
	got, err = admin.SetBucketSeparator(ctx, "photos", "-!")
	require.NoError(t, err)
	want := api.BucketStyles{Bucket: "photos", Separator: "-!", Styles: map[string]string{"thumb": "imageView2/2/w/200", "info": "imageView2/2/w/200|imageInfo"}}
	assert.Equal(t, want, *got)
	got, err = admin.BucketStyles(ctx, "photos")
	require.NoError(t, err)
	assert.Equal(t, want, *got)
	// Stored with the record, the rest of which is unchanged.
	rec, err := keeper.Get(ctx, "photos")
	require.NoError(t, err)
	assert.Equal(t, want.Styles, rec.Styles)
	assert.Equal(t, "-!", rec.Separator)
	assert.True(t, rec.Private)
	assert.Equal(t, "alice", rec.Owner)

	got, err = admin.RemoveBucketStyle(ctx, "photos", "info")
	require.NoError(t, err)
	assert.Equal(t, api.BucketStyles{Bucket: "photos", Separator: "-!", Styles: map[string]string{"thumb": "imageView2/2/w/200"}}, *got)

	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		msg    string
	}{
		{"bad chain", func() error { _, err := admin.SetBucketStyle(ctx, "photos", "x", "imageView2//w"); return err }, 400, `style chain "imageView2//w": bad fop segment 1 "imageView2//w": empty token at position 2`},
		{"bad name", func() error { _, err := admin.SetBucketStyle(ctx, "photos", "big-thumb", "imageInfo"); return err }, 400, `style name "big-thumb" holds '-', a style separator of the bucket (-!)`},
		{"bad separator", func() error { _, err := admin.SetBucketSeparator(ctx, "photos", "."); return err }, 400, `style separator ".": '.' is not allowed (use one or more of ~@$^&*()-_/!+={}[]|:;"'<>,)`},
		{"no such style", func() error { _, err := admin.RemoveBucketStyle(ctx, "photos", "nope"); return err }, 404, `bucket "photos" has no style "nope"`},
		{"no such bucket", func() error { _, err := admin.BucketStyles(ctx, "nope"); return err }, 631, "bucket does not exist"},
		{"style of no bucket", func() error { _, err := admin.SetBucketStyle(ctx, "nope", "x", "imageInfo"); return err }, 631, "bucket does not exist"},
		{"alice lists", func() error { _, err := alice.BucketStyles(ctx, "photos"); return err }, 403, "only the admin manages buckets"},
		{"alice sets", func() error { _, err := alice.SetBucketStyle(ctx, "photos", "x", "imageInfo"); return err }, 403, "only the admin manages buckets"},
		{"alice removes", func() error { _, err := alice.RemoveBucketStyle(ctx, "photos", "thumb"); return err }, 403, "only the admin manages buckets"},
		{"alice separates", func() error { _, err := alice.SetBucketSeparator(ctx, "photos", "_"); return err }, 403, "only the admin manages buckets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			require.Error(t, err)
			assert.Equal(t, tc.status, statusOf(t, err))
			assert.EqualError(t, err, tc.msg)
		})
	}
	got, err = admin.BucketStyles(ctx, "photos")
	require.NoError(t, err)
	assert.Equal(t, api.BucketStyles{Bucket: "photos", Separator: "-!", Styles: map[string]string{"thumb": "imageView2/2/w/200"}}, *got, "the refused calls changed nothing")
}
