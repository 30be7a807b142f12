// Package buckets keeps the records of the buckets the management API adds
// (qufop bucket add): which directory a bucket serves, who owns it and
// whether it is private. Records live in a cluster.KV, one key per bucket
// under "qufop/buckets/", so every gateway reading that KV serves the same
// buckets; every change is a check-and-set, as ufop.Keeper's.
package buckets

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/storage"
)

// Record is one bucket.
type Record struct {
	Name string `json:"name"`
	// Dir is the directory served, on every gateway node (an absolute
	// path: a shared mount on Nomad).
	Dir   string `json:"dir"`
	Owner string `json:"owner"`
	// Private buckets serve only URLs with a download token of the owner
	// (or of the admin).
	Private   bool      `json:"private"`
	CreatedAt time.Time `json:"created_at"`
	// Separator is the set of characters any one of which joins a key to
	// a style name in a URL ("" is DefaultSeparator; see styles.go).
	Separator string `json:"separator,omitempty"`
	// Styles are the bucket's named processing chains, by name.
	Styles map[string]string `json:"styles,omitempty"`
}

// KeyPrefix is where records live in the KV.
const KeyPrefix = "qufop/buckets/"

// StatusExists is Qiniu's "bucket already exists" (614, as for UFOPs).
const StatusExists = 614

// Keeper stores bucket records in a KV.
type Keeper struct{ kv cluster.KV }

// NewKeeper returns a Keeper over kv.
func NewKeeper(kv cluster.KV) *Keeper { return &Keeper{kv: kv} }

func key(name string) string { return KeyPrefix + name }

// Create stores a new record; a taken name is a 614. The caller checks
// the directory (it is the node's, not the KV's, business).
func (k *Keeper) Create(ctx context.Context, rec Record) error {
	if err := storage.CheckBucketName(rec.Name); err != nil {
		return err
	}
	if rec.Dir == "" {
		return errs.BadRequest("bucket %q: no directory", rec.Name)
	}
	if rec.Owner == "" {
		return errs.BadRequest("bucket %q: no owner", rec.Name)
	}
	if err := checkStyles(rec); err != nil {
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ok, err := k.kv.CAS(ctx, key(rec.Name), b, 0)
	if err != nil {
		return errs.Failed(err, "storing bucket %q failed", rec.Name)
	}
	if !ok {
		return errs.New(StatusExists, "bucket %q already exists", rec.Name)
	}
	return nil
}

// Get returns the record of name (631 if there is none).
func (k *Keeper) Get(ctx context.Context, name string) (*Record, error) {
	b, _, err := k.kv.Get(ctx, key(name))
	if errors.Is(err, cluster.ErrNotFound) {
		return nil, storage.NoSuchBucket(name)
	}
	if err != nil {
		return nil, errs.Failed(err, "reading bucket %q failed", name)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, errs.Failed(err, "bucket %q: corrupt record", name)
	}
	return &rec, nil
}

// List returns every record, sorted by name.
func (k *Keeper) List(ctx context.Context) ([]Record, error) {
	pairs, err := k.kv.List(ctx, KeyPrefix)
	if err != nil {
		return nil, errs.Failed(err, "listing buckets failed")
	}
	out := make([]Record, 0, len(pairs))
	for _, p := range pairs {
		if strings.Contains(strings.TrimPrefix(p.Key, KeyPrefix), "/") {
			continue // not a record (room for sub-keys later)
		}
		var rec Record
		if err := json.Unmarshal(p.Value, &rec); err != nil {
			return nil, errs.Failed(err, "%s: corrupt record", p.Key)
		}
		out = append(out, rec)
	}
	return out, nil
}

// Delete removes the record of name (631 if there is none). The files of
// the bucket are never touched.
func (k *Keeper) Delete(ctx context.Context, name string) error {
	if _, err := k.Get(ctx, name); err != nil {
		return err
	}
	if err := k.kv.Delete(ctx, key(name)); err != nil {
		return errs.Failed(err, "deleting bucket %q failed", name)
	}
	return nil
}
