// Package storage names the roles the gateway needs from object storage: a
// Bucket of objects addressed by key, and Buckets to find one by name.
// Implementations live in sub-packages (storage/local, ...).
//
// Every error returned by an implementation carries a status from package
// errs: 400 for a bad key, 404 for a missing object, 631 for an unknown
// bucket and 599 for I/O failures.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/qufop/qufop/errs"
)

// StatusNoSuchBucket is Qiniu's status for "bucket does not exist".
const StatusNoSuchBucket = 631

// MaxKeyLen is the longest key accepted, in bytes.
const MaxKeyLen = 1024

// ErrNoSuchBucket is the cause wrapped by the error Buckets.Bucket returns
// for an unknown name; test with errors.Is.
var ErrNoSuchBucket = errors.New("no such bucket")

// Object describes a stored object.
type Object struct {
	Key     string
	Size    int64
	MIME    string // content type, e.g. "image/jpeg"
	ModTime time.Time
	// ETag is an opaque, unquoted validator that changes whenever the
	// object's content may have changed. How it is derived is up to the
	// implementation (see storage/local).
	ETag string
}

// Bucket is a flat namespace of objects. Keys are '/'-separated; see
// CheckKey for which keys are valid.
type Bucket interface {
	Name() string
	// Stat describes the object at key.
	Stat(ctx context.Context, key string) (Object, error)
	// Open returns a reader of the whole object; the caller closes it.
	Open(ctx context.Context, key string) (io.ReadCloser, Object, error)
	// Put stores all of r under key, atomically: readers see the old
	// object or the new one, never a partial one, and a failing r leaves
	// the old object (or none) in place.
	Put(ctx context.Context, key string, r io.Reader) (Object, error)
	// Delete removes the object at key.
	Delete(ctx context.Context, key string) error
}

// Byteser is implemented by readers Open returns for objects held in
// memory: Bytes is the whole object without a copy. The slice is shared
// with other readers, so it must not be modified.
type Byteser interface {
	Bytes() []byte
}

// Buckets finds a bucket by name.
type Buckets interface {
	// Bucket returns the bucket called name, or an error with status
	// StatusNoSuchBucket wrapping ErrNoSuchBucket.
	Bucket(name string) (Bucket, error)
}

// NoSuchBucket returns the error for an unknown bucket (status 631).
func NoSuchBucket(name string) error {
	return errs.Wrap(StatusNoSuchBucket, fmt.Errorf("%w: %q", ErrNoSuchBucket, name), "bucket does not exist")
}

// ValidBucketName reports whether name matches [a-z0-9][a-z0-9-]{0,62}.
func ValidBucketName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0:
		default:
			return false
		}
	}
	return true
}

// CheckBucketName returns a 400 error unless ValidBucketName(name).
func CheckBucketName(name string) error {
	if !ValidBucketName(name) {
		return errs.BadRequest("bad bucket name %q: want [a-z0-9][a-z0-9-]{0,62}", name)
	}
	return nil
}

// CheckKey returns a 400 error unless key is a canonical relative
// '/'-separated path: not empty, at most MaxKeyLen bytes, no NUL byte, no
// backslash, not absolute, and no empty, "." or ".." segment (so "a//b",
// "a/./b" and a trailing '/' are refused too: every object has one key).
//
// These checks are lexical only; implementations backed by a file system
// must still make sure symbolic links do not lead out of the bucket.
func CheckKey(key string) error {
	switch {
	case key == "":
		return errs.BadRequest("empty key")
	case len(key) > MaxKeyLen:
		return errs.BadRequest("key longer than %d bytes", MaxKeyLen)
	case strings.IndexByte(key, 0) >= 0:
		return errs.BadRequest("key holds a NUL byte")
	case strings.IndexByte(key, '\\') >= 0:
		return errs.BadRequest("key holds a backslash")
	case key[0] == '/':
		return errs.BadRequest("key is an absolute path")
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return errs.BadRequest("key has an empty segment")
		case ".", "..":
			return errs.BadRequest("key has a %q segment", seg)
		}
	}
	return nil
}

// Set is an in-memory Buckets: a map from name to Bucket, safe for
// concurrent use. The zero value is an empty set.
type Set struct {
	mu sync.RWMutex
	m  map[string]Bucket
}

var _ Buckets = (*Set)(nil)

// NewSet returns a Set holding bs.
func NewSet(bs ...Bucket) (*Set, error) {
	s := &Set{}
	for _, b := range bs {
		if err := s.Add(b); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Add registers b under b.Name(). It fails on an invalid name or one
// already registered.
func (s *Set) Add(b Bucket) error {
	name := b.Name()
	if err := CheckBucketName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.m[name]; dup {
		return errs.BadRequest("bucket %q registered twice", name)
	}
	if s.m == nil {
		s.m = map[string]Bucket{}
	}
	s.m[name] = b
	return nil
}

// Remove unregisters the bucket called name and returns it (nil if there
// was none), for the caller to close once no request needs it.
func (s *Set) Remove(name string) Bucket {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.m[name]
	delete(s.m, name)
	return b
}

// Bucket returns the bucket called name (status 631 if there is none).
func (s *Set) Bucket(name string) (Bucket, error) {
	s.mu.RLock()
	b, ok := s.m[name]
	s.mu.RUnlock()
	if !ok {
		return nil, NoSuchBucket(name)
	}
	return b, nil
}

// Names returns the registered names, sorted.
func (s *Set) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.m))
	for n := range s.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
