package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client/clienttest"
	"github.com/qufop/qufop/tenant"
)

// as makes the next commands run with creds (the environment overrides
// the saved login).
func as(t *testing.T, url string, creds auth.Credentials) {
	t.Setenv(envAddr, url)
	t.Setenv(envAccessKey, creds.AccessKey)
	t.Setenv(envSecretKey, creds.SecretKey)
}

func TestUserVerbs(t *testing.T) {
	srv := clienttest.Start(t)
	cliEnv(t)
	as(t, srv.URL, srv.AdminCreds)

	out, _, err := runCLI(t, "user", "list")
	require.NoError(t, err)
	assert.Equal(t, "No users: add one with qufop user add NAME.\n", out)

	// --json is exactly name, access_key, secret_key.
	out, _, err = runCLI(t, "user", "add", "bob", "--class", "paid", "--json")
	require.NoError(t, err)
	var keys map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &keys))
	require.Len(t, keys, 3, out)
	assert.Equal(t, "bob", keys["name"])
	assert.Len(t, keys["access_key"], 20)
	assert.Len(t, keys["secret_key"], 40)
	bob := auth.Credentials{AccessKey: keys["access_key"], SecretKey: keys["secret_key"]}
	u, err := srv.Users.Get(t.Context(), "bob")
	require.NoError(t, err)
	assert.Equal(t, tenant.Paid, u.Class)
	assert.Equal(t, bob, u.Keys[0])

	out, _, err = runCLI(t, "user", "add", "carol")
	require.NoError(t, err)
	carol, err := srv.Users.Get(t.Context(), "carol")
	require.NoError(t, err)
	assert.Equal(t, "User carol added (class free).\n"+
		"Access key:\t "+carol.Keys[0].AccessKey+"\n"+
		"Secret key:\t "+carol.Keys[0].SecretKey+"\n"+
		"The secret key is shown only now. The user logs in with: qufop login -u "+carol.Keys[0].AccessKey+" -p <secret key>\n", out)

	out, _, err = runCLI(t, "user", "list", "--json")
	require.NoError(t, err)
	assert.NotContains(t, out, "secret")
	assert.NotContains(t, out, bob.SecretKey)
	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list, 2)
	assert.Equal(t, "bob", list[0]["name"])
	assert.Equal(t, "paid", list[0]["class"])
	assert.Equal(t, bob.AccessKey, list[0]["access_key"])

	out, _, err = runCLI(t, "user", "limits", "bob", "--rps", "5", "--burst", "10", "--command", "imageMogr2=2", "--command", "imageView2=4")
	require.NoError(t, err)
	assert.Equal(t, "User bob (class paid): rps 5, burst 10, imageMogr2 2, imageView2 4\n", out)
	u, err = srv.Users.Get(t.Context(), "bob")
	require.NoError(t, err)
	assert.Equal(t, tenant.Limits{RPS: 5, Burst: 10, Commands: map[string]int{"imageMogr2": 2, "imageView2": 4}}, u.Limits)
	out, _, err = runCLI(t, "class", "limits", "free", "--rps", "1", "--burst", "2")
	require.NoError(t, err)
	assert.Equal(t, "Class free: rps 1, burst 2\n", out)
	l, err := srv.Users.ClassLimits(t.Context(), tenant.Free)
	require.NoError(t, err)
	assert.Equal(t, tenant.Limits{RPS: 1, Burst: 2}, l)

	out, _, err = runCLI(t, "user", "list")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	assert.Regexp(t, `^NAME\s+CLASS\s+ACCESS KEY\s+LIMITS\s+CREATED$`, lines[0])
	assert.Regexp(t, `^bob\s+paid\s+`+bob.AccessKey+`\s+rps 5, burst 10, imageMogr2 2, imageView2 4\s+\d{4}-`, lines[1])
	assert.Regexp(t, `^carol\s+free\s+\S+\s+the class's\s+\d{4}-`, lines[2])

	// Errors: one line, and the server's message.
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"user", "limits", "bob"}, "give --rps R --burst B and/or --command NAME=N (or --clear)"},
		{[]string{"user", "limits", "bob", "--clear", "--rps", "1"}, "--clear removes every limit: give it alone"},
		{[]string{"user", "limits", "bob", "--command", "imageMogr2"}, `bad --command "imageMogr2": want NAME=N, such as imageMogr2=2`},
		{[]string{"user", "limits", "bob", "--command", "=2"}, `bad --command "=2": want NAME=N, such as imageMogr2=2`},
		{[]string{"user", "limits", "bob", "--command", "imageMogr2=0"}, `bad --command "imageMogr2=0": want NAME=N with N at least 1`},
		{[]string{"user", "limits", "bob", "--rps", "3"}, "bad burst 0: a rate of 3/s needs a burst of at least 1"},
		{[]string{"user", "limits", "nobody", "--clear"}, `no such user "nobody"`},
		{[]string{"class", "limits", "gold", "--clear"}, `no such class "gold": want free or paid`},
		{[]string{"user", "add", "bob"}, `user "bob" already exists`},
		{[]string{"user", "add", "dan", "--class", "gold"}, `unknown class "gold": want free or paid`},
		{[]string{"user", "keys", "bob"}, "qufop user keys bob: say --rotate (a secret key is shown only when it is made; qufop user list shows the access keys)"},
		{[]string{"user", "rm", "admin"}, `the admin user "admin" cannot be deleted`},
	} {
		_, _, err := runCLI(t, tc.args...)
		require.Error(t, err, tc.args)
		assert.Equal(t, tc.err, err.Error(), tc.args)
		assert.NotContains(t, err.Error(), "\n")
	}

	// bob logs in with the printed keys and registers a UFOP it owns.
	t.Setenv(envAccessKey, "")
	t.Setenv(envSecretKey, "")
	out, _, err = runCLI(t, "login", "-u", bob.AccessKey, "-p", bob.SecretKey, "--addr", srv.URL)
	require.NoError(t, err)
	assert.Contains(t, out, " as bob;")
	_, _, err = runCLI(t, "reg", "bob-thumb")
	require.NoError(t, err)
	rec, err := srv.Keeper.Get(t.Context(), "bob-thumb")
	require.NoError(t, err)
	assert.Equal(t, "bob", rec.Owner)
	// ... and is not the admin.
	_, _, err = runCLI(t, "user", "list")
	assert.EqualError(t, err, "only the admin manages users and classes")

	as(t, srv.URL, srv.AdminCreds)
	_, _, err = runCLI(t, "user", "rm", "bob")
	assert.EqualError(t, err, `user "bob" owns ufops bob-thumb: unreg them first`)
	out, _, err = runCLI(t, "user", "keys", "bob", "--rotate", "--json")
	require.NoError(t, err)
	var nk map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &nk))
	assert.Len(t, nk, 3)
	assert.NotEqual(t, bob.AccessKey, nk["access_key"])
	u, err = srv.Users.Get(t.Context(), "bob")
	require.NoError(t, err)
	assert.Equal(t, auth.Credentials{AccessKey: nk["access_key"], SecretKey: nk["secret_key"]}, u.Keys[0])

	// A user who owns a bucket is kept until the bucket goes.
	_, _, err = runCLI(t, "bucket", "add", "carol-photos", "--dir", t.TempDir(), "--owner", "carol", "--private")
	require.NoError(t, err)
	_, _, err = runCLI(t, "user", "rm", "carol")
	assert.EqualError(t, err, `user "carol" owns buckets carol-photos: remove them first (qufop bucket rm NAME)`)
	_, err = srv.Users.Get(t.Context(), "carol")
	require.NoError(t, err, "carol is still there")
	_, _, err = runCLI(t, "bucket", "rm", "carol-photos")
	require.NoError(t, err)
	out, _, err = runCLI(t, "user", "rm", "carol")
	require.NoError(t, err)
	assert.Equal(t, "User carol removed.\n", out)
	_, err = srv.Users.Get(t.Context(), "carol")
	assert.Error(t, err)
}
