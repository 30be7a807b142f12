package platform

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster/local"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/gateway"
	"github.com/qufop/qufop/storage"
	localstore "github.com/qufop/qufop/storage/local"
	"github.com/qufop/qufop/tenant"
	"github.com/qufop/qufop/users"
)

// The gateway's per-user limits are the users store's, read through its
// cache: limits set in the KV apply to the next requests, and removed
// ones stop applying, with no restart.
func TestGatewayLimitsFromTheStore(t *testing.T) {
	data := t.TempDir()
	kv, err := local.NewKV(filepath.Join(data, "kv.json"))
	require.NoError(t, err)
	store := users.NewStore(kv, AdminUser)
	// A TTL of 1 ns: every request reads the store again.
	cache := users.NewCache(store, nil, time.Nanosecond, 0)

	dir := filepath.Join(data, "files")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello"), 0o644))
	b, err := localstore.New("files", dir)
	require.NoError(t, err)
	set, err := storage.NewSet(b)
	require.NoError(t, err)
	srv, err := gateway.New(gateway.NewDefaultConfig(), set, fop.Registry{}, nil, admission(cache))
	require.NoError(t, err)
	get := func() int {
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/files/a.txt", nil))
		return w.Code
	}

	for range 5 {
		require.Equal(t, 200, get(), "no limits by default")
	}
	// One token per 1000 s: the second request is over, however slow
	// the machine.
	require.NoError(t, store.SetClassLimits(t.Context(), tenant.Free, tenant.Limits{RPS: 0.001, Burst: 1}))
	require.Equal(t, 200, get())
	require.Equal(t, 573, get(), "the class's new limit is in force")
	require.NoError(t, store.SetClassLimits(t.Context(), tenant.Free, tenant.Limits{}))
	for range 5 {
		require.Equal(t, 200, get(), "the limit is gone")
	}
}
