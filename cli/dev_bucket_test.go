package cli

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	qauth "github.com/qiniu/go-sdk/v7/auth"
	qstorage "github.com/qiniu/go-sdk/v7/storage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/internal/platformtest"
)

// A bucket added with qufop bucket is served by a running qufop dev within
// a second, private ones only with a download token of the owner, and no
// longer once removed.
func TestDevServesBucketRecords(t *testing.T) {
	data, _ := platformtest.Data(t)
	base, stop := startDev(t, "--data", data, "--no-docker")
	defer func() { require.NoError(t, first(stop())) }()
	b, err := os.ReadFile(filepath.Join(data, "admin.json"))
	require.NoError(t, err)
	var admin auth.Credentials
	require.NoError(t, json.Unmarshal(b, &admin))
	cliEnv(t)
	t.Setenv(envAddr, base)
	t.Setenv(envAccessKey, admin.AccessKey)
	t.Setenv(envSecretKey, admin.SecretKey)

	out, _, err := runCLI(t, "user", "add", "alice", "--json")
	require.NoError(t, err)
	var keys auth.Credentials // access_key, secret_key
	require.NoError(t, json.Unmarshal([]byte(out), &keys))
	alice := qauth.New(keys.AccessKey, keys.SecretKey)

	dir := t.TempDir()
	jpg, err := os.ReadFile(filepath.Join(data, "buckets", "demo", "sample.jpg"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cat.jpg"), jpg, 0o644))
	_, _, err = runCLI(t, "bucket", "add", "photos", "--dir", dir, "--owner", "alice", "--private")
	require.NoError(t, err)
	_, _, err = runCLI(t, "bucket", "add", "demo", "--dir", dir)
	require.EqualError(t, err, `bucket "demo" already exists (served from a --bucket flag)`, "the data folder's buckets are taken")

	status := func(u string) (int, string) {
		r, body := get(t, u)
		return r.StatusCode, string(body)
	}
	// Served within a second: wait for it, not for a second.
	require.Eventually(t, func() bool { st, _ := status(base + "/photos/cat.jpg"); return st != 631 }, 30*time.Second, 20*time.Millisecond)
	st, body := status(base + "/photos/cat.jpg?imageView2/2/w/200")
	assert.Equal(t, http.StatusUnauthorized, st, body)
	assert.Contains(t, body, `bucket \"photos\" is private: a download token is required`)

	e := time.Now().Add(time.Hour).Unix()
	st, body = status(qstorage.MakePrivateURL(alice, base, "photos/cat.jpg?imageView2/2/w/200", e))
	assert.Equal(t, http.StatusOK, st, body)
	st, body = status(qstorage.MakePrivateURL(alice, base, "photos/cat.jpg", e))
	assert.Equal(t, http.StatusOK, st)
	assert.Equal(t, string(jpg), body)
	st, body = status(qstorage.MakePrivateURL(alice, base, "photos/cat.jpg", time.Now().Add(-time.Minute).Unix()))
	assert.Equal(t, http.StatusUnauthorized, st)
	assert.Contains(t, body, "download token expired at")

	_, _, err = runCLI(t, "bucket", "rm", "photos")
	require.NoError(t, err)
	require.Eventually(t, func() bool { st, _ := status(base + "/photos/cat.jpg"); return st == 631 }, 30*time.Second, 20*time.Millisecond)
	assert.FileExists(t, filepath.Join(dir, "cat.jpg"))
}
