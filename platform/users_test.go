package platform

import (
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/builder"
	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/client/clienttest"
	"github.com/qufop/qufop/cluster/local"
	"github.com/qufop/qufop/tenant"
	"github.com/qufop/qufop/ufop"
)

// The control plane looks keys up in the admin's and the user store's: a
// user the admin adds signs its own requests and owns what it registers,
// and its class is what the gateway's admission will read.
func TestControlPlaneServesStoredUsers(t *testing.T) {
	gin.SetMode(gin.TestMode)
	data := t.TempDir()
	kv, err := local.NewKV(filepath.Join(data, "kv.json"))
	require.NoError(t, err)
	admin := auth.NewCredentials()
	cfg := ControlConfig{Creds: admin}
	bcfg := cfg.builderConfig(data)
	cp, err := newControlPlane(cfg, data, bcfg, builder.NewProcess(bcfg), kv, ufop.NewKeeper(kv),
		clienttest.NewOrchestrator(time.Millisecond), nil)
	require.NoError(t, err)
	e := gin.New()
	cp.server.Mount(e)
	ts := httptest.NewServer(e)
	t.Cleanup(func() {
		ts.Close()
		cp.server.Close()
	})
	ctx := t.Context()

	ac := client.New(ts.URL, admin)
	who, err := ac.WhoAmI(ctx)
	require.NoError(t, err)
	assert.Equal(t, AdminUser, who)
	keys, err := ac.AddUser(ctx, "bob", "paid")
	require.NoError(t, err)

	bob := client.New(ts.URL, auth.Credentials{AccessKey: keys.AccessKey, SecretKey: keys.SecretKey})
	who, err = bob.WhoAmI(ctx)
	require.NoError(t, err)
	assert.Equal(t, "bob", who)
	rec, err := bob.Register(ctx, "bob-thumb", "private", "")
	require.NoError(t, err)
	assert.Equal(t, "bob", rec.Owner)
	_, err = bob.Users(ctx)
	assert.EqualError(t, err, "only the admin manages users and classes")

	assert.Equal(t, tenant.Paid, cp.users.Class("bob"))
	assert.Equal(t, tenant.Free, cp.users.Class(AdminUser))
}
