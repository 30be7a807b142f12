package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/buckets"
	"github.com/qufop/qufop/cluster/consul"
	"github.com/qufop/qufop/cluster/consul/consulfake"
)

// A style set, changed or removed in the records is what a running
// `qufop gateway` answers within its refresh.
func TestGatewayFollowsBucketStyles(t *testing.T) {
	ctx := context.Background()
	fake := consulfake.New()
	t.Cleanup(fake.Close) // after the gateway stops
	cc, err := consulapi.NewClient(&consulapi.Config{Address: fake.Addr()})
	require.NoError(t, err)
	keeper := buckets.NewKeeper(consul.NewKV(cc, consul.DefaultPrefix))
	dir := t.TempDir()
	photo, err := os.ReadFile("../testdata/images/storm-1920x1080.jpg")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "storm.jpg"), photo, 0o644))
	require.NoError(t, keeper.Create(ctx, buckets.Record{Name: "photos", Dir: dir, Owner: "admin"}))
	base := startGateway(t, "--consul-addr", fake.Addr())

	// The answers of the chains, as the reference.
	chainAnswer := func(chain string) []byte {
		r, body := get(t, base+"/photos/storm.jpg?"+chain)
		require.Equal(t, 200, r.StatusCode, string(body))
		return body
	}
	w200, w100 := chainAnswer("imageView2/2/w/200"), chainAnswer("imageView2/2/w/100")
	require.NotEqual(t, w200, w100)
	answers := func(u string, status int, body []byte) func() bool {
		return func() bool {
			r, b := get(t, u)
			return r.StatusCode == status && (body == nil || bytes.Equal(b, body))
		}
	}
	styled := base + "/photos/storm.jpg-thumb"
	r, body := get(t, styled)
	assert.Equal(t, 404, r.StatusCode, "no style yet: %s", body)

	_, err = keeper.SetStyle(ctx, "photos", "thumb", "imageView2/2/w/200")
	require.NoError(t, err)
	require.Eventually(t, answers(styled, 200, w200), time.Minute, 20*time.Millisecond, "the style set")

	_, err = keeper.SetStyle(ctx, "photos", "thumb", "imageView2/2/w/100")
	require.NoError(t, err)
	require.Eventually(t, answers(styled, 200, w100), time.Minute, 20*time.Millisecond, "the style changed")

	_, err = keeper.SetSeparator(ctx, "photos", "!")
	require.NoError(t, err)
	require.Eventually(t, answers(base+"/photos/storm.jpg!thumb", 200, w100), time.Minute, 20*time.Millisecond, "the new separator")
	r, body = get(t, styled)
	assert.Equal(t, 404, r.StatusCode, "the old separator is no longer one: %s", body)

	_, err = keeper.RemoveStyle(ctx, "photos", "thumb")
	require.NoError(t, err)
	require.Eventually(t, answers(base+"/photos/storm.jpg!thumb", 404, nil), time.Minute, 20*time.Millisecond, "the style removed")
}
