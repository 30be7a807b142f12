package ufop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
)

// Keeper stores UFOP records in a cluster.KV, one key per UFOP under
// "qufop/ufops/". Every change is a read-modify-write with check-and-set, so
// two control-plane processes (or two requests) never lose each other's
// updates.
type Keeper struct {
	kv cluster.KV
}

// KeyPrefix is where records live in the KV.
const KeyPrefix = "qufop/ufops/"

// StatusExists is Qiniu's "target already exists".
const StatusExists = 614

// maxCASRetries bounds the retry loop of Update under contention.
const maxCASRetries = 64

// NewKeeper returns a Keeper over kv.
func NewKeeper(kv cluster.KV) *Keeper { return &Keeper{kv: kv} }

func key(name string) string { return KeyPrefix + name }

// ErrNoSuchUFOP is the cause of the 404 for an unknown name.
var ErrNoSuchUFOP = errors.New("no such ufop")

func noSuch(name string) error {
	return errs.Wrap(http.StatusNotFound, ErrNoSuchUFOP, "no such ufop %q", name)
}

// Create stores a new record; a taken name is a 614.
func (k *Keeper) Create(ctx context.Context, rec Record) error {
	if err := CheckName(rec.Name); err != nil {
		return errs.BadRequest("%v", err)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ok, err := k.kv.CAS(ctx, key(rec.Name), b, 0)
	if err != nil {
		return errs.Failed(err, "storing ufop %q failed", rec.Name)
	}
	if !ok {
		return errs.New(StatusExists, "ufop %q already exists", rec.Name)
	}
	return nil
}

// Get returns the record of name.
func (k *Keeper) Get(ctx context.Context, name string) (*Record, error) {
	rec, _, err := k.get(ctx, name)
	return rec, err
}

func (k *Keeper) get(ctx context.Context, name string) (*Record, uint64, error) {
	b, idx, err := k.kv.Get(ctx, key(name))
	if errors.Is(err, cluster.ErrNotFound) {
		return nil, 0, noSuch(name)
	}
	if err != nil {
		return nil, 0, errs.Failed(err, "reading ufop %q failed", name)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, 0, errs.Failed(err, "ufop %q: corrupt record", name)
	}
	return &rec, idx, nil
}

// List returns every record, sorted by name.
func (k *Keeper) List(ctx context.Context) ([]Record, error) {
	pairs, err := k.kv.List(ctx, KeyPrefix)
	if err != nil {
		return nil, errs.Failed(err, "listing ufops failed")
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

// Names returns the names of every UFOP, sorted: from the KV's keys alone
// when it can list them (cluster.KeyLister), so that the gateway can tell a
// name without a UFOP from one with it in one cheap read for all names.
func (k *Keeper) Names(ctx context.Context) ([]string, error) {
	var keys []string
	if kl, ok := k.kv.(cluster.KeyLister); ok {
		var err error
		if keys, err = kl.Keys(ctx, KeyPrefix); err != nil {
			return nil, errs.Failed(err, "listing ufops failed")
		}
	} else {
		pairs, err := k.kv.List(ctx, KeyPrefix)
		if err != nil {
			return nil, errs.Failed(err, "listing ufops failed")
		}
		for _, p := range pairs {
			keys = append(keys, p.Key)
		}
	}
	out := make([]string, 0, len(keys))
	for _, key := range keys {
		name := strings.TrimPrefix(key, KeyPrefix)
		if name == "" || strings.Contains(name, "/") {
			continue // not a record (room for sub-keys later)
		}
		out = append(out, name)
	}
	return out, nil
}

// Update applies fn to the record of name and stores the result with
// check-and-set, re-reading and re-applying fn when another writer got there
// first. An error from fn aborts without writing.
func (k *Keeper) Update(ctx context.Context, name string, fn func(*Record) error) (*Record, error) {
	for range maxCASRetries {
		rec, idx, err := k.get(ctx, name)
		if err != nil {
			return nil, err
		}
		if err := fn(rec); err != nil {
			return nil, err
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return nil, err
		}
		ok, err := k.kv.CAS(ctx, key(name), b, idx)
		if err != nil {
			return nil, errs.Failed(err, "storing ufop %q failed", name)
		}
		if ok {
			return rec, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return nil, errs.New(http.StatusConflict, "ufop %q: too many concurrent updates, retry", name)
}

// Delete removes the record of name.
func (k *Keeper) Delete(ctx context.Context, name string) error {
	if _, _, err := k.get(ctx, name); err != nil {
		return err
	}
	if err := k.kv.Delete(ctx, key(name)); err != nil {
		return errs.Failed(err, "deleting ufop %q failed", name)
	}
	return nil
}

// String is for logs.
func (r *Record) String() string { return fmt.Sprintf("ufop %s (owner %s)", r.Name, r.Owner) }
