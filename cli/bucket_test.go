package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/client/clienttest"
	"github.com/qufop/qufop/control/api"
)

func TestBucketVerbs(t *testing.T) {
	srv := clienttest.Start(t)
	cliEnv(t)
	t.Setenv(envAddr, srv.URL)
	t.Setenv(envAccessKey, srv.AdminCreds.AccessKey)
	t.Setenv(envSecretKey, srv.AdminCreds.SecretKey)
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "photos"), 0o755))
	t.Chdir(dir)

	out, _, err := runCLI(t, "bucket", "list")
	require.NoError(t, err)
	assert.Equal(t, "No buckets: add one with qufop bucket add NAME --dir DIR.\n", out)

	// A relative --dir is the caller's directory's.
	out, _, err = runCLI(t, "bucket", "add", "photos", "--dir", "photos", "--owner", "alice", "--private")
	require.NoError(t, err)
	abs := filepath.Join(dir, "photos")
	assert.Equal(t, "Bucket photos added: "+abs+", private, owner alice.\n", out)
	out, _, err = runCLI(t, "bucket", "add", "pub", "--dir", dir)
	require.NoError(t, err)
	assert.Equal(t, "Bucket pub added: "+dir+", public, owner admin.\n", out)

	out, _, err = runCLI(t, "bucket", "list", "--json")
	require.NoError(t, err)
	var list []api.Bucket
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	require.Len(t, list, 2)
	assert.Equal(t, api.Bucket{Name: "photos", Dir: abs, Owner: "alice", Private: true, CreatedAt: list[0].CreatedAt}, list[0])
	assert.Equal(t, api.Bucket{Name: "pub", Dir: dir, Owner: "admin", CreatedAt: list[1].CreatedAt}, list[1])
	out, _, err = runCLI(t, "bucket", "list")
	require.NoError(t, err)
	assert.Regexp(t, `^NAME +MODE +OWNER +DIR +CREATED\nphotos +private +alice +`+abs+` +\d{4}-.*\npub +public +admin +`+dir+` +\d{4}-.*\n$`, out)

	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"no dir", []string{"bucket", "add", "x"}, "qufop bucket add x: say --dir DIR (the directory to serve)"},
		{"taken", []string{"bucket", "add", "pub", "--dir", dir}, `bucket "pub" already exists`},
		{"missing dir", []string{"bucket", "add", "y", "--dir", "nope"}, `bucket "y": dir "` + filepath.Join(dir, "nope") + `" does not exist on this node`},
		{"rm unknown", []string{"bucket", "rm", "nope"}, "bucket does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, tc.args...)
			require.Error(t, err)
			assert.Equal(t, tc.msg, err.Error())
		})
	}

	out, _, err = runCLI(t, "bucket", "rm", "photos")
	require.NoError(t, err)
	assert.Equal(t, "Bucket photos removed (its files stay).\n", out)
	assert.DirExists(t, abs)
	out, _, err = runCLI(t, "bucket", "list", "--json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	assert.Len(t, list, 1)

	// Only the admin manages buckets.
	t.Setenv(envAccessKey, srv.Creds.AccessKey)
	t.Setenv(envSecretKey, srv.Creds.SecretKey)
	_, _, err = runCLI(t, "bucket", "list")
	require.Error(t, err)
	assert.Equal(t, "only the admin manages buckets", err.Error())
}
