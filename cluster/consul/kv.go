// Package consul implements the cluster roles on Consul: cluster.KV on the
// Consul KV store and cluster.Catalog on the health endpoint with blocking
// queries and a local cache.
package consul

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/qufop/qufop/cluster"
)

// DefaultPrefix is the part of the Consul KV tree the platform owns.
const DefaultPrefix = "qufop/"

// KV is a cluster.KV on Consul KV.
//
// Keys are the platform's own keys, stored verbatim: "qufop/ufops/demo" is
// the Consul key "qufop/ufops/demo". The prefix is required, not prepended:
// a key outside it is refused with an error, so the platform never writes
// into the rest of a shared Consul. Every write is a check-and-set
// (`?cas=`), values are stored as given, and the index handed out is the
// key's ModifyIndex.
type KV struct {
	c      *api.Client
	prefix string
}

var _ cluster.KV = (*KV)(nil)

// NewKV returns a KV on client limited to keys under prefix ("" means
// DefaultPrefix; a missing trailing "/" is added).
func NewKV(client *api.Client, prefix string) *KV {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &KV{c: client, prefix: prefix}
}

// Prefix is the key prefix every key must start with.
func (kv *KV) Prefix() string { return kv.prefix }

func (kv *KV) check(key string) error {
	if !strings.HasPrefix(key, kv.prefix) || len(key) == len(kv.prefix) {
		return fmt.Errorf("consul kv: key %q is outside %q", key, kv.prefix)
	}
	return nil
}

// Get returns the value at key and its ModifyIndex, or an error wrapping
// cluster.ErrNotFound.
func (kv *KV) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if err := kv.check(key); err != nil {
		return nil, 0, err
	}
	p, _, err := kv.c.KV().Get(key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("consul kv get %q: %w", key, err)
	}
	if p == nil {
		return nil, 0, fmt.Errorf("key %q: %w", key, cluster.ErrNotFound)
	}
	return value(p.Value), p.ModifyIndex, nil
}

// CAS writes val at key if its ModifyIndex is still index (0: the key must
// not exist yet). A lost race is ok == false with a nil error.
func (kv *KV) CAS(ctx context.Context, key string, val []byte, index uint64) (bool, error) {
	if err := kv.check(key); err != nil {
		return false, err
	}
	ok, _, err := kv.c.KV().CAS(&api.KVPair{Key: key, Value: val, ModifyIndex: index},
		(&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("consul kv cas %q: %w", key, err)
	}
	return ok, nil
}

// List returns the pairs whose keys start with prefix, sorted by key. A
// prefix shorter than the KV's own (e.g. "") lists the KV's whole prefix; a
// prefix outside it is an error.
func (kv *KV) List(ctx context.Context, prefix string) ([]cluster.Pair, error) {
	q := prefix
	switch {
	case strings.HasPrefix(prefix, kv.prefix):
	case strings.HasPrefix(kv.prefix, prefix):
		q = kv.prefix
	default:
		return nil, fmt.Errorf("consul kv: prefix %q is outside %q", prefix, kv.prefix)
	}
	pairs, _, err := kv.c.KV().List(q, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul kv list %q: %w", prefix, err)
	}
	out := make([]cluster.Pair, 0, len(pairs))
	for _, p := range pairs {
		out = append(out, cluster.Pair{Key: p.Key, Value: value(p.Value), Index: p.ModifyIndex})
	}
	// Consul answers sorted by key already; keep the promise regardless.
	slices.SortFunc(out, func(a, b cluster.Pair) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Keys returns the keys that start with prefix, sorted, without their
// values (GET /v1/kv/<prefix>?keys). Prefixes as for List.
func (kv *KV) Keys(ctx context.Context, prefix string) ([]string, error) {
	q := prefix
	switch {
	case strings.HasPrefix(prefix, kv.prefix):
	case strings.HasPrefix(kv.prefix, prefix):
		q = kv.prefix
	default:
		return nil, fmt.Errorf("consul kv: prefix %q is outside %q", prefix, kv.prefix)
	}
	keys, _, err := kv.c.KV().Keys(q, "", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul kv keys %q: %w", prefix, err)
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete removes key; a missing key is not an error.
func (kv *KV) Delete(ctx context.Context, key string) error {
	if err := kv.check(key); err != nil {
		return err
	}
	if _, err := kv.c.KV().Delete(key, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul kv delete %q: %w", key, err)
	}
	return nil
}

func value(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
