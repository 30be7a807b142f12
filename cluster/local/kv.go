package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/qufop/qufop/cluster"
)

// KV is a file-backed cluster.KV for one process (the embedded default of
// the Keeper): an in-memory map with a monotonically increasing modify
// index, written atomically to one JSON file on every change (temp file,
// fsync, rename). Two processes must not share the file.
type KV struct {
	path string

	mu   sync.RWMutex
	last uint64 // highest modify index handed out
	data map[string]kvEntry
}

type kvEntry struct {
	Value []byte `json:"value"`
	Index uint64 `json:"index"`
}

type kvFile struct {
	Index uint64             `json:"index"`
	Data  map[string]kvEntry `json:"data"`
}

var _ cluster.KV = (*KV)(nil)

// NewKV opens (or creates on first write) the store at path. An unreadable
// or corrupt file is an error naming the file: it is never silently dropped.
func NewKV(path string) (*KV, error) {
	if path == "" {
		return nil, errors.New("local kv: empty path")
	}
	kv := &KV{path: path, data: map[string]kvEntry{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("local kv %s: %w", path, err)
		}
		return kv, nil
	case err != nil:
		return nil, fmt.Errorf("local kv %s: %w", path, err)
	}
	var f kvFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("local kv %s: corrupt file: %w", path, err)
	}
	for k, e := range f.Data {
		if e.Index == 0 || e.Index > f.Index {
			return nil, fmt.Errorf("local kv %s: corrupt file: key %q has index %d (store index %d)", path, k, e.Index, f.Index)
		}
		kv.data[k] = e
	}
	kv.last = f.Index
	return kv, nil
}

// Path returns the file the store is kept in.
func (kv *KV) Path() string { return kv.path }

// Get returns the value at key and its modify index, or an error wrapping
// cluster.ErrNotFound.
func (kv *KV) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	e, ok := kv.data[key]
	if !ok {
		return nil, 0, fmt.Errorf("key %q: %w", key, cluster.ErrNotFound)
	}
	return clone(e.Value), e.Index, nil
}

// CAS writes val at key if the key's modify index is still index (0: the
// key must not exist). The write is on disk when CAS returns ok.
func (kv *KV) CAS(ctx context.Context, key string, val []byte, index uint64) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if key == "" {
		return false, errors.New("local kv: empty key")
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	cur, exists := kv.data[key]
	if index == 0 && exists || index != 0 && (!exists || cur.Index != index) {
		return false, nil
	}
	next := kv.last + 1
	kv.data[key] = kvEntry{Value: clone(val), Index: next}
	if err := kv.persist(next); err != nil {
		// Roll back: memory never holds what the file does not.
		if exists {
			kv.data[key] = cur
		} else {
			delete(kv.data, key)
		}
		return false, err
	}
	kv.last = next
	return true, nil
}

// List returns the pairs whose keys start with prefix, sorted by key.
func (kv *KV) List(ctx context.Context, prefix string) ([]cluster.Pair, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	var out []cluster.Pair
	for k, e := range kv.data {
		if strings.HasPrefix(k, prefix) {
			out = append(out, cluster.Pair{Key: k, Value: clone(e.Value), Index: e.Index})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Keys returns the keys that start with prefix, sorted.
func (kv *KV) Keys(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	var out []string
	for k := range kv.data {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Delete removes key; a missing key is not an error.
func (kv *KV) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	cur, exists := kv.data[key]
	if !exists {
		return nil
	}
	delete(kv.data, key)
	next := kv.last + 1
	if err := kv.persist(next); err != nil {
		kv.data[key] = cur
		return err
	}
	kv.last = next
	return nil
}

// persist writes the map with store index idx: temp file in the same
// directory, fsync, rename, fsync of the directory. kv.mu is held.
func (kv *KV) persist(idx uint64) error {
	b, err := json.Marshal(kvFile{Index: idx, Data: kv.data})
	if err != nil {
		return fmt.Errorf("local kv %s: %w", kv.path, err)
	}
	dir := filepath.Dir(kv.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(kv.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("local kv %s: %w", kv.path, err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("local kv %s: %w", kv.path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("local kv %s: %w", kv.path, err)
	}
	if err := os.Rename(tmp.Name(), kv.path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("local kv %s: %w", kv.path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return append([]byte(nil), b...)
}
