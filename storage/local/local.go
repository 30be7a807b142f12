// Package local is a storage.Bucket on a local directory. Keys map to paths
// below the directory, each '/' to a sub-folder.
//
// No key can reach outside the directory. Keys are first checked lexically
// (storage.CheckKey: no "..", no absolute path, no NUL, no backslash). Then
// the path is resolved with filepath.EvalSymlinks and refused (404) unless it
// stays inside the directory: a symlink inside the bucket that points inside
// is followed, one that points out (to a file or to a folder) is not.
//
// EvalSymlinks alone is not enough: between the check and the open, a link
// could be swapped for one pointing out (a TOCTOU race). So every file is
// also opened through an os.Root, which resolves each path component itself
// (openat with O_NOFOLLOW, component by component) and refuses at the
// syscall level any path that would leave the directory, whatever the links
// say at that moment. The lexical and EvalSymlinks checks stay because they
// give clear errors (400 for a bad key, 404 for an escape) and because they
// are the portable half of the guarantee on systems where os.Root is weaker.
package local

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/storage"
)

// tempPrefix starts the names of the files Put writes before renaming them
// into place. Keys whose last segment starts with it are refused, so a
// partial upload can never be read as an object.
const tempPrefix = ".qufop-tmp-"

// sniffLen is how many leading bytes http.DetectContentType looks at.
const sniffLen = 512

// errEscape is the cause of the 404 returned for a key whose resolved path
// leaves the bucket.
var errEscape = errors.New("path escapes the bucket")

// Bucket is a local-directory bucket. It is safe for concurrent use.
type Bucket struct {
	name  string
	dir   string // absolute, symlinks resolved
	root  *os.Root
	cache *Cache // nil: no cache
}

// Option configures a Bucket.
type Option func(*Bucket)

// WithCache serves small objects from c (see Cache).
func WithCache(c *Cache) Option { return func(b *Bucket) { b.cache = c } }

var _ storage.Bucket = (*Bucket)(nil)

// New opens the existing directory dir as the bucket called name. The name
// must match [a-z0-9][a-z0-9-]{0,62}. Close the bucket when done.
func New(name, dir string, opts ...Option) (*Bucket, error) {
	if err := storage.CheckBucketName(name); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, errs.Failed(err, "bucket %q: bad directory", name)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, errs.Failed(err, "bucket %q: bad directory", name)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, errs.Failed(err, "bucket %q: bad directory", name)
	}
	if !fi.IsDir() {
		return nil, errs.Failed(fmt.Errorf("%s is not a directory", real), "bucket %q: bad directory", name)
	}
	root, err := os.OpenRoot(real)
	if err != nil {
		return nil, errs.Failed(err, "bucket %q: bad directory", name)
	}
	b := &Bucket{name: name, dir: real, root: root}
	for _, o := range opts {
		o(b)
	}
	return b, nil
}

// Name returns the bucket's name.
func (b *Bucket) Name() string { return b.name }

// Dir returns the bucket's directory (absolute, symlinks resolved).
func (b *Bucket) Dir() string { return b.dir }

// Close releases the directory handle.
func (b *Bucket) Close() error { return b.root.Close() }

// Stat describes the object at key. Folders are not objects: 404.
func (b *Bucket) Stat(ctx context.Context, key string) (storage.Object, error) {
	if err := ctx.Err(); err != nil {
		return storage.Object{}, errs.Failed(err, "stat %q", key)
	}
	rel, err := b.resolve(key)
	if err != nil {
		return storage.Object{}, err
	}
	fi, err := b.root.Stat(rel)
	if err != nil {
		return storage.Object{}, fsErr(key, err)
	}
	if !fi.Mode().IsRegular() {
		return storage.Object{}, notFound(key, nil)
	}
	typ := byExt(key)
	if typ == "" {
		f, err := b.root.Open(rel)
		if err != nil {
			return storage.Object{}, fsErr(key, err)
		}
		defer f.Close()
		if typ, err = sniff(f); err != nil {
			return storage.Object{}, errs.Failed(err, "read %q", key)
		}
	}
	return object(key, fi, typ), nil
}

// Open returns a reader of the whole object at key (an *os.File).
func (b *Bucket) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if err := ctx.Err(); err != nil {
		return nil, storage.Object{}, errs.Failed(err, "open %q", key)
	}
	rel, err := b.resolve(key)
	if err != nil {
		return nil, storage.Object{}, err
	}
	if b.cache != nil {
		if rc, obj, ok, err := b.openCached(key, rel); ok || err != nil {
			return rc, obj, err
		}
	}
	f, err := b.root.Open(rel)
	if err != nil {
		return nil, storage.Object{}, fsErr(key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, storage.Object{}, errs.Failed(err, "stat %q", key)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, storage.Object{}, notFound(key, nil)
	}
	typ := byExt(key)
	if typ == "" {
		if typ, err = sniff(f); err != nil { // ReadAt: the offset stays 0
			f.Close()
			return nil, storage.Object{}, errs.Failed(err, "read %q", key)
		}
	}
	return f, object(key, fi, typ), nil
}

// Put writes all of r to a temporary file in the key's folder, syncs it and
// renames it over key, so readers see the old object or the new one, never a
// partial one. Missing folders are created. If r fails (or ctx ends) the
// temporary file is removed and any old object is left as it was; folders
// created on the way may remain, but folders are not objects.
//
// If key is itself a symlink, the link is replaced, not its target.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader) (storage.Object, error) {
	if err := b.checkKey(key); err != nil {
		return storage.Object{}, err
	}
	rel := filepath.FromSlash(key)
	dir := filepath.Dir(rel)
	if dir != "." {
		if err := b.root.MkdirAll(dir, 0o755); err != nil {
			if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
				return storage.Object{}, errs.BadRequest("a folder of key %q is an object", key)
			}
			return storage.Object{}, fsErr(key, err)
		}
		// MkdirAll through os.Root cannot leave the bucket; this check
		// only turns such an attempt into the same 404 as for reads.
		real, err := filepath.EvalSymlinks(filepath.Join(b.dir, dir))
		if err != nil {
			return storage.Object{}, fsErr(key, err)
		}
		if !within(b.dir, real) {
			return storage.Object{}, notFound(key, errEscape)
		}
	}
	if fi, err := b.root.Lstat(rel); err == nil && fi.IsDir() {
		return storage.Object{}, errs.BadRequest("key %q names a folder", key)
	}

	tmp, f, err := b.createTemp(dir)
	if err != nil {
		return storage.Object{}, errs.Failed(err, "put %q", key)
	}
	committed := false
	defer func() {
		if !committed {
			f.Close()
			b.root.Remove(tmp)
		}
	}()
	var head headBuf
	if _, err := io.Copy(io.MultiWriter(f, &head), ctxReader{ctx, r}); err != nil {
		return storage.Object{}, errs.Failed(err, "put %q: copy", key)
	}
	if err := f.Sync(); err != nil {
		return storage.Object{}, errs.Failed(err, "put %q: sync", key)
	}
	fi, err := f.Stat()
	if err != nil {
		return storage.Object{}, errs.Failed(err, "put %q: stat", key)
	}
	if err := f.Close(); err != nil {
		return storage.Object{}, errs.Failed(err, "put %q: close", key)
	}
	if err := ctx.Err(); err != nil {
		return storage.Object{}, errs.Failed(err, "put %q", key)
	}
	if err := b.root.Rename(tmp, rel); err != nil {
		return storage.Object{}, errs.Failed(err, "put %q: rename", key)
	}
	committed = true
	b.forget(rel)
	if d, err := b.root.Open(dir); err == nil { // make the rename durable
		d.Sync()
		d.Close()
	}
	typ := byExt(key)
	if typ == "" {
		typ = http.DetectContentType(head.b)
	}
	return object(key, fi, typ), nil
}

// Delete removes the object at key (if key is a symlink inside the bucket,
// the link). Folders are not objects: 404.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return errs.Failed(err, "delete %q", key)
	}
	rel, err := b.resolveStrict(key)
	if err != nil {
		return err
	}
	fi, err := b.root.Stat(rel)
	if err != nil {
		return fsErr(key, err)
	}
	if !fi.Mode().IsRegular() {
		return notFound(key, nil)
	}
	if err := b.root.Remove(rel); err != nil {
		return fsErr(key, err)
	}
	b.forget(rel)
	return nil
}

// forget drops rel from the cache after the bucket changed it.
func (b *Bucket) forget(rel string) {
	if b.cache != nil {
		b.cache.drop(cacheKey{root: b.dir, rel: rel})
	}
}

// checkKey applies storage.CheckKey plus the local rules: the key must be
// a local path on this OS (filepath.IsLocal also refuses Windows device
// names) and must not name a temporary file.
func (b *Bucket) checkKey(key string) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	if !filepath.IsLocal(filepath.FromSlash(key)) {
		return errs.BadRequest("key %q is not a local path", key)
	}
	if strings.HasPrefix(path.Base(key), tempPrefix) {
		return errs.BadRequest("key %q uses the reserved prefix %q", key, tempPrefix)
	}
	return nil
}

// resolve checks key and returns its path relative to the root. Reads need
// nothing more: they go through b.root, whose openat-based walk refuses any
// path that symlinks lead out of the bucket (reported as a 404 by fsErr).
// That keeps the hot path of the gateway at one open and one fstat.
func (b *Bucket) resolve(key string) (string, error) {
	if err := b.checkKey(key); err != nil {
		return "", err
	}
	return filepath.FromSlash(key), nil
}

// resolveStrict is resolve plus a check, symlinks followed, that the path
// exists and stays in the bucket: writes use it to fail early and clearly
// before creating folders.
func (b *Bucket) resolveStrict(key string) (string, error) {
	rel, err := b.resolve(key)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(filepath.Join(b.dir, rel))
	if err != nil {
		return "", fsErr(key, err)
	}
	if !within(b.dir, real) {
		return "", notFound(key, errEscape)
	}
	return rel, nil
}

func (b *Bucket) createTemp(dir string) (string, *os.File, error) {
	for range 10 {
		var rnd [8]byte
		rand.Read(rnd[:])
		name := filepath.Join(dir, tempPrefix+hex.EncodeToString(rnd[:]))
		f, err := b.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return name, f, err
	}
	return "", nil, errors.New("cannot create a temporary file")
}

// within reports whether p (absolute, clean) is root or below it.
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && (rel == "." || filepath.IsLocal(rel))
}

// fsErr maps a file-system error to a client-facing one.
func fsErr(key string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist),
		errors.Is(err, syscall.ENOTDIR), // "a.txt/b" where a.txt is a file
		errors.Is(err, syscall.ELOOP):
		return notFound(key, err)
	case isRootEscape(err):
		return notFound(key, errEscape)
	case strings.Contains(err.Error(), "too many links"):
		// filepath.EvalSymlinks's own loop error, not ELOOP.
		return notFound(key, err)
	case errors.Is(err, syscall.ENAMETOOLONG):
		return errs.BadRequest("key %q is too long", key)
	}
	return errs.Failed(err, "storage failure on %q", key)
}

// isRootEscape recognises os.Root's refusal of a path leaving the root. The
// os package does not export that error, so its text is matched.
func isRootEscape(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

func notFound(key string, cause error) error {
	e := errs.NotFound("no such object %q", key)
	e.Err = cause
	return e
}

func byExt(key string) string { return mime.TypeByExtension(path.Ext(key)) }

// sniff detects the content type of f's first bytes without moving its offset.
// sniffBytes detects the content type of data.
func sniffBytes(data []byte) string {
	return http.DetectContentType(data[:min(len(data), sniffLen)])
}

func sniff(f *os.File) (string, error) {
	buf := make([]byte, sniffLen)
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return "", err
	}
	return http.DetectContentType(buf[:n]), nil
}

// object builds the description of a regular file. The ETag is the FNV-1a
// 64-bit hash of the size and the modification time in nanoseconds, in hex:
// free to compute (no read of the content), and it changes on every Put
// (a new file, a new mtime) and on any edit that changes size or mtime. Two
// different contents share an ETag only if written with the same size within
// the file system's timestamp resolution, which Put cannot do to one key in
// practice; it is not a content hash.
func object(key string, fi fs.FileInfo, typ string) storage.Object {
	h := fnv.New64a()
	var buf [16]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(fi.Size()))
	binary.BigEndian.PutUint64(buf[8:], uint64(fi.ModTime().UnixNano()))
	h.Write(buf[:])
	return storage.Object{
		Key:     key,
		Size:    fi.Size(),
		MIME:    typ,
		ModTime: fi.ModTime(),
		ETag:    hex.EncodeToString(h.Sum(nil)),
	}
}

// headBuf keeps the first sniffLen bytes written to it.
type headBuf struct{ b []byte }

func (h *headBuf) Write(p []byte) (int, error) {
	if n := sniffLen - len(h.b); n > 0 {
		h.b = append(h.b, p[:min(n, len(p))]...)
	}
	return len(p), nil
}

// ctxReader fails reads once ctx is done, so a Put can be cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
