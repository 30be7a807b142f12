package cli

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	qauth "github.com/qiniu/go-sdk/v7/auth"
	qstorage "github.com/qiniu/go-sdk/v7/storage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/buckets"
	"github.com/qufop/qufop/cluster/consul"
	"github.com/qufop/qufop/cluster/consul/consulfake"
	"github.com/qufop/qufop/internal/testutil"
	"github.com/qufop/qufop/tenant"
	"github.com/qufop/qufop/users"
)

// `qufop gateway --consul-addr` serves the bucket records in Consul KV,
// and checks a private one's download tokens with the users' keys there.
func TestGatewayServesBucketRecords(t *testing.T) {
	ctx := context.Background()
	fake := consulfake.New()
	t.Cleanup(fake.Close) // after the gateways stop
	cc, err := consulapi.NewClient(&consulapi.Config{Address: fake.Addr()})
	require.NoError(t, err)
	kv := consul.NewKV(cc, consul.DefaultPrefix)
	u, err := users.NewStore(kv, "admin").Create(ctx, "alice", tenant.Paid)
	require.NoError(t, err)
	alice := qauth.New(u.Keys[0].AccessKey, u.Keys[0].SecretKey)
	keeper := buckets.NewKeeper(kv)
	priv := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(priv, "note.txt"), []byte("secret"), 0o644))
	require.NoError(t, keeper.Create(ctx, buckets.Record{Name: "photos", Dir: priv, Owner: "alice", Private: true}))
	// A record may not take a flag bucket's name from a gateway.
	require.NoError(t, keeper.Create(ctx, buckets.Record{Name: "files", Dir: priv, Owner: "alice", Private: true}))

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "note.txt"), []byte("hello"), 0o644))
	base := startGateway(t, "--bucket", "files="+dir, "--consul-addr", fake.Addr())

	r, body := get(t, base+"/files/note.txt")
	assert.Equal(t, 200, r.StatusCode, string(body))
	assert.Equal(t, "hello", string(body), "the flag's bucket, not the record's")
	r, body = get(t, base+"/photos/note.txt")
	assert.Equal(t, 401, r.StatusCode, string(body))
	r, body = get(t, qstorage.MakePrivateURL(alice, base, "photos/note.txt", time.Now().Add(time.Hour).Unix()))
	assert.Equal(t, 200, r.StatusCode, string(body))
	assert.Equal(t, "secret", string(body))

	// With Consul, the records alone are enough to start.
	only := startGateway(t, "--consul-addr", fake.Addr())
	r, body = get(t, only+"/files/note.txt")
	assert.Equal(t, 401, r.StatusCode, "the record's private bucket: %s", body)

	require.NoError(t, keeper.Delete(ctx, "photos"))
	require.Eventually(t, func() bool {
		r, _ := get(t, base+"/photos/note.txt")
		return r.StatusCode == 631
	}, time.Minute, 20*time.Millisecond)
}

// startGateway runs `qufop gateway args...` in-process until the test ends.
func startGateway(t *testing.T, args ...string) string {
	t.Helper()
	addr := freeAddr(t)
	root := NewRoot()
	out := &testutil.SyncBuffer{}
	root.SetOut(out)
	root.SetErr(out)
	root.SetArgs(append([]string{"gateway", "--listen", addr, "--quiet"}, args...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	base := "http://" + addr
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			done <- err
			return true
		default:
		}
		r, err := http.Get(base + "/health")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	}, time.Minute, 20*time.Millisecond, out.String())
	return base
}
