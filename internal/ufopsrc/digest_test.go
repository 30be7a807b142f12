package ufopsrc

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func tree(t *testing.T) string {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ufop.yaml"), []byte("image: x\nrun: ./app\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "app"), []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "conf"), 0o755))
	require.NoError(t, os.Symlink("../app", filepath.Join(dir, "conf", "link")))
	return dir
}

func digest(t *testing.T, src string) string {
	t.Helper()
	d, err := Digest(src)
	require.NoError(t, err)
	return d
}

// A folder's digest follows its names, modes, contents and links, not
// its modification times.
func TestDigestFolder(t *testing.T) {
	dir := tree(t)
	d0 := digest(t, dir)
	assert.Len(t, d0, 64)
	old := time.Now().Add(-48 * time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(dir, "app"), old, old))
	assert.Equal(t, d0, digest(t, dir), "a touched file is the same source")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "app"), []byte("#!/bin/sh\necho 2\n"), 0o755))
	d1 := digest(t, dir)
	assert.NotEqual(t, d0, d1, "content")
	require.NoError(t, os.Chmod(filepath.Join(dir, "app"), 0o644))
	d2 := digest(t, dir)
	assert.NotEqual(t, d1, d2, "mode")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "conf", "new"), nil, 0o644))
	d3 := digest(t, dir)
	assert.NotEqual(t, d2, d3, "a new file")
	require.NoError(t, os.Remove(filepath.Join(dir, "conf", "link")))
	require.NoError(t, os.Symlink("../ufop.yaml", filepath.Join(dir, "conf", "link")))
	assert.NotEqual(t, d3, digest(t, dir), "a link's target")
}

func TestDigestTarball(t *testing.T) {
	p := filepath.Join(t.TempDir(), "src.tar.gz")
	require.NoError(t, os.WriteFile(p, []byte("not really gzip"), 0o644))
	sum := sha256.Sum256([]byte("not really gzip"))
	assert.Equal(t, hex.EncodeToString(sum[:]), digest(t, p), "a tarball's digest is its bytes' SHA-256")
}

func TestDigestRefuses(t *testing.T) {
	dir := t.TempDir()
	_, err := Digest(dir)
	assert.ErrorContains(t, err, "has no ufop.yaml at its root")
	_, err = Digest(filepath.Join(dir, "missing.tar"))
	assert.ErrorContains(t, err, "no such file")
	zip := filepath.Join(dir, "src.zip")
	require.NoError(t, os.WriteFile(zip, nil, 0o644))
	_, err = Digest(zip)
	assert.ErrorContains(t, err, "want a folder with ufop.yaml at its root, or a .tar, .tar.gz or .tgz file")
	src := tree(t)
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(src, "out")))
	_, err = Digest(src)
	assert.ErrorContains(t, err, "symlink out points outside it")
}

// Tarball packs a folder as Pack does, into a file done removes; a
// tarball is used as it is.
func TestTarball(t *testing.T) {
	src := tree(t)
	p, done, err := Tarball(src)
	require.NoError(t, err)
	f, err := os.Open(p)
	require.NoError(t, err)
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		names[h.Name] = true
	}
	f.Close()
	assert.Equal(t, map[string]bool{"ufop.yaml": true, "app": true, "conf/": true, "conf/link": true}, names)
	done()
	_, err = os.Stat(p)
	assert.True(t, os.IsNotExist(err), "done removes the tar")

	tb := filepath.Join(t.TempDir(), "x.tgz")
	require.NoError(t, os.WriteFile(tb, nil, 0o644))
	p, done, err = Tarball(tb)
	require.NoError(t, err)
	assert.Equal(t, tb, p)
	done()
	_, err = os.Stat(tb)
	assert.NoError(t, err, "a given tarball is kept")
}
