package local

import (
	"bytes"
	"container/list"
	"io"
	"io/fs"
	"sync"
	"syscall"
	"time"

	"github.com/qufop/qufop/storage"
)

// Cache keeps small objects in memory for the gateway's hot path, where one
// object is read again and again: a hit costs nothing instead of open, fstat,
// read and close. An entry is validated against the file as it is now (size,
// modification time, inode) when it was last checked longer ago than the
// cache's validity (nginx's open_file_cache_valid, with the content kept
// too): a file changed behind the bucket's back is served stale for at most
// that long, while writes and deletes through the bucket drop the entry at
// once. A validity of 0 stats on every read.
// One Cache may serve several buckets; it is safe for concurrent use.
type Cache struct {
	maxObject int64
	maxTotal  int64
	valid     time.Duration

	mu    sync.Mutex
	total int64
	lru   *list.List // of *cacheEntry, most recent first
	m     map[cacheKey]*list.Element
}

type cacheKey struct{ root, rel string }

type cacheEntry struct {
	key     cacheKey
	id      fileID
	data    []byte
	obj     storage.Object
	checked time.Time // when id was last compared with the file; under Cache.mu
}

// fileID identifies a version of a file.
type fileID struct {
	size int64
	mod  time.Time
	ino  uint64
	dev  uint64
}

func idOf(fi fs.FileInfo) fileID {
	id := fileID{size: fi.Size(), mod: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino, id.dev = st.Ino, uint64(st.Dev)
	}
	return id
}

// DefaultValid is how long a cached object is served without a stat.
const DefaultValid = time.Second

// NewCache returns a cache of objects up to maxObject bytes each and
// maxTotal bytes in all, checked against their files at most every valid.
func NewCache(maxObject, maxTotal int64, valid time.Duration) *Cache {
	if valid < 0 {
		valid = 0
	}
	return &Cache{maxObject: maxObject, maxTotal: maxTotal, valid: valid, lru: list.New(), m: map[cacheKey]*list.Element{}}
}

// Len is the number of objects held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// get returns the entry of k: with id nil, if it was checked within the
// validity; otherwise if the file still is what the entry holds (*id),
// which counts as a check.
func (c *Cache) get(k cacheKey, id *fileID, now time.Time) (*cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	switch {
	case id == nil:
		if now.Sub(e.checked) >= c.valid {
			return nil, false
		}
	case e.id != *id:
		c.removeLocked(el)
		return nil, false
	default:
		e.checked = now
	}
	c.lru.MoveToFront(el)
	return e, true
}

// drop forgets k: the bucket wrote or deleted it.
func (c *Cache) drop(k cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		c.removeLocked(el)
	}
}

func (c *Cache) put(e *cacheEntry) {
	size := int64(len(e.data))
	if size > c.maxObject || size > c.maxTotal {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[e.key]; ok {
		c.removeLocked(el)
	}
	for c.total+size > c.maxTotal && c.lru.Len() > 0 {
		c.removeLocked(c.lru.Back())
	}
	c.m[e.key] = c.lru.PushFront(e)
	c.total += size
}

func (c *Cache) removeLocked(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.lru.Remove(el)
	delete(c.m, e.key)
	c.total -= int64(len(e.data))
}

// cachedReader serves an object from memory; it can seek (ranges and
// conditional requests work as with a file).
type cachedReader struct {
	*bytes.Reader
	data []byte
}

func (cachedReader) Close() error { return nil }

// Bytes returns the whole object without a copy (storage.Byteser). The
// slice is shared by every reader of the object: read-only.
func (r cachedReader) Bytes() []byte { return r.data }

func newCachedReader(data []byte) cachedReader {
	return cachedReader{Reader: bytes.NewReader(data), data: data}
}

// openCached is Open through the cache: a hit checked within the cache's
// validity costs nothing, an older one a stat; a miss reads the small file
// whole and keeps it if the file did not change meanwhile.
func (b *Bucket) openCached(key, rel string) (io.ReadCloser, storage.Object, bool, error) {
	k := cacheKey{root: b.dir, rel: rel}
	now := time.Now()
	if e, ok := b.cache.get(k, nil, now); ok {
		return newCachedReader(e.data), e.obj, true, nil
	}
	fi, err := b.root.Stat(rel)
	if err != nil {
		return nil, storage.Object{}, false, fsErr(key, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, storage.Object{}, false, notFound(key, nil)
	}
	if fi.Size() > b.cache.maxObject {
		return nil, storage.Object{}, false, nil // not for the cache
	}
	id := idOf(fi)
	if e, ok := b.cache.get(k, &id, now); ok {
		return newCachedReader(e.data), e.obj, true, nil
	}
	f, err := b.root.Open(rel)
	if err != nil {
		return nil, storage.Object{}, false, fsErr(key, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, b.cache.maxObject+1))
	if err != nil {
		return nil, storage.Object{}, false, fsErr(key, err)
	}
	after, err := f.Stat()
	if err != nil {
		return nil, storage.Object{}, false, fsErr(key, err)
	}
	typ := byExt(key)
	if typ == "" {
		typ = sniffBytes(data)
	}
	obj := object(key, after, typ)
	if idOf(after) == id && int64(len(data)) == after.Size() && after.Mode().IsRegular() {
		b.cache.put(&cacheEntry{key: k, id: id, data: data, obj: obj, checked: now})
	}
	return newCachedReader(data), obj, true, nil
}
