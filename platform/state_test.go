package platform

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
)

func TestDataLock(t *testing.T) {
	dir := t.TempDir()
	first, err := lockData(dir, "qufop dev")
	require.NoError(t, err)
	require.NoError(t, first.note("http://127.0.0.1:8080"))

	// flock conflicts between open files, so a second lock in this process
	// is refused as one in another process would be.
	_, err = lockData(dir, "qufop dev")
	require.Error(t, err)
	assert.Equal(t, fmt.Sprintf("data folder %s is in use by qufop dev (PID %d, on http://127.0.0.1:8080): stop it, or give another --data", dir, os.Getpid()), err.Error())

	first.release()
	second, err := lockData(dir, "qufop builder")
	require.NoError(t, err, "released: the folder can be taken again")
	defer second.release()
	b, err := os.ReadFile(filepath.Join(dir, "lock"))
	require.NoError(t, err)
	var h lockHolder
	require.NoError(t, json.Unmarshal(b, &h))
	assert.Equal(t, os.Getpid(), h.PID)
	assert.Equal(t, "qufop builder", h.Command)
	assert.Empty(t, h.Addr, "the old holder's address is gone")
}

func TestLoadIdentity(t *testing.T) {
	dir := t.TempDir()
	id, err := loadIdentity(dir)
	require.NoError(t, err)
	assert.Regexp(t, `^dev-[0-9a-f]{8}$`, id)
	again, err := loadIdentity(dir)
	require.NoError(t, err)
	assert.Equal(t, id, again, "kept in <data>/platform.json")

	for _, tc := range []struct{ file, want string }{
		{`{"id":"Not Valid"}`, "platform.json: platform id"},
		{`{`, "platform.json is corrupt"},
	} {
		d := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(d, "platform.json"), []byte(tc.file), 0o644))
		_, err := loadIdentity(d)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestLoadAdmin(t *testing.T) {
	dir := t.TempDir()
	c, generated, err := loadAdmin(dir, auth.Credentials{})
	require.NoError(t, err)
	assert.True(t, generated)
	fi, err := os.Stat(filepath.Join(dir, "admin.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "secret keys are for the owner only")
	again, generated, err := loadAdmin(dir, auth.Credentials{})
	require.NoError(t, err)
	assert.False(t, generated)
	assert.Equal(t, c, again)

	given := auth.Credentials{AccessKey: "AK", SecretKey: "SK"}
	got, _, err := loadAdmin(dir, given)
	require.NoError(t, err)
	assert.Equal(t, given, got)
	_, _, err = loadAdmin(dir, auth.Credentials{AccessKey: "AK"})
	require.ErrorContains(t, err, "set both")

	// A key file others may read is made private.
	require.NoError(t, os.Chmod(filepath.Join(dir, "admin.json"), 0o644))
	_, _, err = loadAdmin(dir, auth.Credentials{})
	require.NoError(t, err)
	fi, err = os.Stat(filepath.Join(dir, "admin.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	require.NoError(t, os.WriteFile(filepath.Join(dir, "admin.json"), []byte("{}"), 0o600))
	_, _, err = loadAdmin(dir, auth.Credentials{})
	require.True(t, err != nil && strings.Contains(err.Error(), "is corrupt"), "%v", err)
}
