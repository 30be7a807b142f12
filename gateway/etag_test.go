package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/storage/local"
)

// versioned is a fake processor whose output version can change (a UFOP
// upgraded, a built-in released) and whose step may report that another
// version served it (a canary).
type versioned struct {
	mu      sync.Mutex
	version string // what Version says before the step runs
	served  string // what the step says it ran ("" for nothing)
	suffix  string // appended to the output: the output of this version
	calls   int
}

func (v *versioned) set(version, served, suffix string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.version, v.served, v.suffix = version, served, suffix
}

func (v *versioned) Version() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.version
}

func (v *versioned) Process(_ context.Context, _ fop.Cmd, in fop.Blob) (fop.Blob, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls++
	return fop.Blob{Data: append(bytes.ToUpper(in.Data), v.suffix...), MIME: "text/plain", Version: v.served}, nil
}

// ufopsOf resolves one name to p, as the dispatcher resolves a UFOP.
type ufopsOf struct {
	name string
	p    fop.Processor
}

func (u ufopsOf) Resolve(_ context.Context, cmd fop.Cmd, _ string) (fop.Processor, error) {
	if cmd.Name == u.name {
		return u.p, nil
	}
	return nil, nil
}

func etagFixture(t *testing.T, builtin, ufop *versioned) *fixture {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello"), 0o644))
	b, err := local.New("files", dir)
	require.NoError(t, err)
	set, err := storage.NewSet(b)
	require.NoError(t, err)
	cfg := NewDefaultConfig()
	cfg.FastFront = false
	srv, err := New(cfg, set, fop.Registry{"img": builtin, "upper": upper()}, slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)),
		WithUFOPs(ufopsOf{name: "ufop-x", p: ufop}, nil))
	require.NoError(t, err)
	return &fixture{srv: srv, dir: dir}
}

// A result's ETag changes with the version of any step's processor, so an
// upgrade is not hidden behind 304s; it stays put while nothing changes.
func TestETagFollowsVersions(t *testing.T) {
	builtin := &versioned{version: "img/1"}
	uf := &versioned{version: "ufop-x@1", suffix: "-v1"}
	f := etagFixture(t, builtin, uf)
	const target = "/files/hello.txt?img|ufop-x|upper"

	w := f.get(t, target)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Equal(t, "HELLO-V1", w.Body.String())
	etag := w.Header().Get("ETag")
	require.NotEmpty(t, etag)

	// Nothing changed: 304.
	w = f.get(t, target, "If-None-Match", etag)
	assert.Equal(t, http.StatusNotModified, w.Code)

	// The UFOP is upgraded: the old ETag no longer matches, the new
	// output is served with another ETag, which then matches.
	uf.set("ufop-x@2", "", "-v2")
	w = f.get(t, target, "If-None-Match", etag)
	require.Equal(t, http.StatusOK, w.Code, "a result of the old version must not be revalidated")
	assert.Equal(t, "HELLO-V2", w.Body.String())
	etag2 := w.Header().Get("ETag")
	assert.NotEqual(t, etag, etag2)
	assert.Equal(t, http.StatusNotModified, f.get(t, target, "If-None-Match", etag2).Code)

	// A new release of a built-in command does the same.
	builtin.set("img/2", "", "")
	w = f.get(t, target, "If-None-Match", etag2)
	require.Equal(t, http.StatusOK, w.Code)
	etag3 := w.Header().Get("ETag")
	assert.NotEqual(t, etag2, etag3)
	assert.NotEqual(t, etag, etag3)
}

// A step served by another version than the one resolved (a canary during
// a gray upgrade) gets the ETag of the version that made it, and a client
// holding it is not told that the current version's result is the same.
func TestETagOfACanary(t *testing.T) {
	uf := &versioned{version: "ufop-x@1", suffix: "-v1"}
	f := etagFixture(t, &versioned{version: "img/1"}, uf)
	const target = "/files/hello.txt?ufop-x"
	stable := f.get(t, target).Header().Get("ETag")

	uf.set("ufop-x@1", "ufop-x@2", "-v2") // a canary of version 2 answers
	w := f.get(t, target)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "HELLO-v2", w.Body.String())
	canary := w.Header().Get("ETag")
	assert.NotEqual(t, stable, canary)

	uf.set("ufop-x@1", "ufop-x@1", "-v1") // and next, a version-1 instance
	calls := uf.calls
	w = f.get(t, target, "If-None-Match", canary)
	require.Equal(t, http.StatusOK, w.Code, "the canary's ETag must not revalidate version 1's result")
	assert.Equal(t, "HELLO-v1", w.Body.String())
	assert.Equal(t, stable, w.Header().Get("ETag"))
	assert.Equal(t, calls+1, uf.calls)

	// A built-in that hands back a UFOP's output does not carry the UFOP's
	// version as its own.
	w = f.get(t, "/files/hello.txt?ufop-x|upper")
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, http.StatusNotModified, f.get(t, "/files/hello.txt?ufop-x|upper", "If-None-Match", w.Header().Get("ETag")).Code)
}
