package control_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/client/clienttest"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/tenant"
)

func apiStatus(t *testing.T, err error) int {
	t.Helper()
	var e *client.APIError
	require.ErrorAs(t, err, &e)
	return e.Status
}

// Every users and classes route is the admin's: anybody else gets a 403.
func TestUsersAPIIsAdminOnly(t *testing.T) {
	srv := clienttest.Start(t)
	ctx := context.Background()
	admin := client.New(srv.URL, srv.AdminCreds)
	keys, err := admin.AddUser(ctx, "bob", "paid")
	require.NoError(t, err)
	bob := client.New(srv.URL, auth.Credentials{AccessKey: keys.AccessKey, SecretKey: keys.SecretKey})
	alice := client.New(srv.URL, srv.Creds)
	for _, c := range []*client.Client{alice, bob} {
		for name, call := range map[string]func() error{
			"add":    func() error { _, err := c.AddUser(ctx, "carol", ""); return err },
			"list":   func() error { _, err := c.Users(ctx); return err },
			"rm":     func() error { return c.DeleteUser(ctx, "bob") },
			"rotate": func() error { _, err := c.RotateKeys(ctx, "bob"); return err },
			"limits": func() error { _, err := c.SetUserLimits(ctx, "bob", api.Limits{RPS: 1, Burst: 1}); return err },
			"class":  func() error { _, err := c.SetClassLimits(ctx, "free", api.Limits{RPS: 1, Burst: 1}); return err },
		} {
			err := call()
			require.Error(t, err, name)
			assert.Equal(t, http.StatusForbidden, apiStatus(t, err), name)
			assert.EqualError(t, err, "only the admin manages users and classes", name)
		}
	}
	list, err := admin.Users(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1, "the refused calls changed nothing")
	assert.Equal(t, api.User{Name: "bob", Class: "paid", AccessKey: keys.AccessKey, CreatedAt: list[0].CreatedAt}, list[0])
	u, err := srv.Users.Get(ctx, "bob")
	require.NoError(t, err)
	assert.Equal(t, keys.AccessKey, u.AccessKey(), "not rotated")
	assert.Equal(t, tenant.Limits{}, u.Limits)
}

func TestUsersAPIValidation(t *testing.T) {
	srv := clienttest.Start(t)
	ctx := context.Background()
	admin := client.New(srv.URL, srv.AdminCreds)
	_, err := admin.AddUser(ctx, "bob", "")
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		msg    string
	}{
		{"bad name", func() error { _, err := admin.AddUser(ctx, "B", ""); return err }, 400, `bad user name "B": want 3-50 of [a-z0-9-], not starting or ending with '-'`},
		{"bad class", func() error { _, err := admin.AddUser(ctx, "carol", "gold"); return err }, 400, `unknown class "gold": want free or paid`},
		{"taken", func() error { _, err := admin.AddUser(ctx, "bob", ""); return err }, 614, `user "bob" already exists`},
		{"admin's name", func() error { _, err := admin.AddUser(ctx, "admin", ""); return err }, 614, `user "admin" already exists (it is the platform's)`},
		{"negative rps", func() error { _, err := admin.SetUserLimits(ctx, "bob", api.Limits{RPS: -1, Burst: 1}); return err }, 400, "bad rps -1: want 0 (the class's) or more"},
		{"rps without burst", func() error { _, err := admin.SetUserLimits(ctx, "bob", api.Limits{RPS: 3}); return err }, 400, "bad burst 0: a rate of 3/s needs a burst of at least 1"},
		{"empty command", func() error {
			_, err := admin.SetUserLimits(ctx, "bob", api.Limits{Commands: map[string]int{"": 1}})
			return err
		}, 400, "bad command limit: empty command name"},
		{"zero command limit", func() error {
			_, err := admin.SetUserLimits(ctx, "bob", api.Limits{Commands: map[string]int{"imageMogr2": 0}})
			return err
		}, 400, "bad limit 0 for command imageMogr2: want at least 1 step at once"},
		{"class rps without burst", func() error { _, err := admin.SetClassLimits(ctx, "free", api.Limits{RPS: 3}); return err }, 400, "bad burst 0: a rate of 3/s needs a burst of at least 1"},
		{"unknown class", func() error { _, err := admin.SetClassLimits(ctx, "gold", api.Limits{}); return err }, 404, `no such class "gold": want free or paid`},
		{"limits of nobody", func() error { _, err := admin.SetUserLimits(ctx, "nobody", api.Limits{}); return err }, 404, `no such user "nobody"`},
		{"rotate nobody", func() error { _, err := admin.RotateKeys(ctx, "nobody"); return err }, 404, `no such user "nobody"`},
		{"rotate the admin", func() error { _, err := admin.RotateKeys(ctx, "admin"); return err }, 400, "the admin's keys are the platform's (its environment or admin.json), not the user store's"},
		{"delete nobody", func() error { return admin.DeleteUser(ctx, "nobody") }, 404, `no such user "nobody"`},
		{"delete the admin", func() error { return admin.DeleteUser(ctx, "admin") }, 403, `the admin user "admin" cannot be deleted`},
	} {
		err := tc.call()
		require.Error(t, err, tc.name)
		assert.Equal(t, tc.status, apiStatus(t, err), tc.name)
		assert.EqualError(t, err, tc.msg, tc.name)
	}

	u, err := admin.SetUserLimits(ctx, "bob", api.Limits{RPS: 2, Burst: 4, Commands: map[string]int{"imageMogr2": 1}})
	require.NoError(t, err)
	assert.Equal(t, api.Limits{RPS: 2, Burst: 4, Commands: map[string]int{"imageMogr2": 1}}, u.Limits)
	cl, err := admin.SetClassLimits(ctx, "paid", api.Limits{RPS: 100, Burst: 200})
	require.NoError(t, err)
	assert.Equal(t, &api.ClassLimits{Class: "paid", Limits: api.Limits{RPS: 100, Burst: 200}}, cl)
	stored, err := srv.Users.ClassLimits(ctx, tenant.Paid)
	require.NoError(t, err)
	assert.Equal(t, tenant.Limits{RPS: 100, Burst: 200}, stored)
}

// A user added by the admin signs in with its keys, registers UFOPs it
// owns, cannot be deleted while it owns them, and its rotated keys replace
// the old ones.
func TestAddedUserOwnsItsUFOPs(t *testing.T) {
	srv := clienttest.Start(t)
	ctx := context.Background()
	admin := client.New(srv.URL, srv.AdminCreds)
	keys, err := admin.AddUser(ctx, "bob", "")
	require.NoError(t, err)
	assert.Equal(t, "free", keys.Class)
	oldCreds := auth.Credentials{AccessKey: keys.AccessKey, SecretKey: keys.SecretKey}
	bob := client.New(srv.URL, oldCreds)
	who, err := bob.WhoAmI(ctx)
	require.NoError(t, err)
	assert.Equal(t, "bob", who)
	rec, err := bob.Register(ctx, "bob-thumb", "private", "")
	require.NoError(t, err)
	assert.Equal(t, "bob", rec.Owner)
	stored, err := srv.Keeper.Get(ctx, "bob-thumb")
	require.NoError(t, err)
	assert.Equal(t, "bob", stored.Owner)
	_, err = bob.Register(ctx, "bob-other", "public", "")
	require.NoError(t, err)

	err = admin.DeleteUser(ctx, "bob")
	require.Error(t, err)
	assert.Equal(t, http.StatusConflict, apiStatus(t, err))
	assert.EqualError(t, err, `user "bob" owns ufops bob-other, bob-thumb: unreg them first`)

	nk, err := admin.RotateKeys(ctx, "bob")
	require.NoError(t, err)
	newBob := client.New(srv.URL, auth.Credentials{AccessKey: nk.AccessKey, SecretKey: nk.SecretKey})
	who, err = newBob.WhoAmI(ctx)
	require.NoError(t, err)
	assert.Equal(t, "bob", who)
	// The old pair stops working once the lookup cache forgets it (1 s).
	require.Eventually(t, func() bool {
		_, err := bob.WhoAmI(ctx)
		return err != nil && apiStatus(t, err) == http.StatusUnauthorized
	}, time.Minute, 50*time.Millisecond)

	for _, n := range []string{"bob-thumb", "bob-other"} {
		_, err := newBob.Unregister(ctx, n)
		require.NoError(t, err)
	}
	require.NoError(t, admin.DeleteUser(ctx, "bob"))
	require.Eventually(t, func() bool {
		_, err := newBob.WhoAmI(ctx)
		return err != nil && apiStatus(t, err) == http.StatusUnauthorized
	}, time.Minute, 50*time.Millisecond)
	list, err := admin.Users(ctx)
	require.NoError(t, err)
	assert.Empty(t, list)
}
