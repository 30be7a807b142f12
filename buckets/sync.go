package buckets

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/qufop/qufop/storage"
)

// Served keeps a storage.Set in step with the records of a Keeper, so a
// gateway serves a bucket added with `qufop bucket add` without a restart
// and stops serving it once its record is removed. The buckets already in
// the set when it starts (the --bucket flags) are left alone: a record of
// the same name is not served.
//
// It also answers who owns a served bucket and whether it is private,
// from the records of its last refresh.
type Served struct {
	keeper *Keeper
	set    *storage.Set
	open   func(Record) (storage.Bucket, error)
	log    *slog.Logger

	mu    sync.RWMutex
	fixed map[string]bool   // in the set before: not ours
	recs  map[string]Record // served from a record
}

// NewServed serves the records of k in set, opening each with open.
func NewServed(k *Keeper, set *storage.Set, open func(Record) (storage.Bucket, error), log *slog.Logger) *Served {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fixed := map[string]bool{}
	for _, n := range set.Names() {
		fixed[n] = true
	}
	return &Served{keeper: k, set: set, open: open, log: log, fixed: fixed, recs: map[string]Record{}}
}

// Keeper is the keeper of the records served.
func (s *Served) Keeper() *Keeper { return s.keeper }

// Fixed reports whether name is one of the buckets served without a record
// (in the set before NewServed): a record may not take its name.
func (s *Served) Fixed(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.fixed[name]
}

// Record returns the record bucket is served from (false: none, e.g. a
// --bucket flag's).
func (s *Served) Record(bucket string) (Record, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.recs[bucket]
	return r, ok
}

// Refresh reads the records once and adds, replaces (when the directory
// changed) and removes buckets to match. A record whose directory cannot
// be opened is skipped (and logged) until it can.
func (s *Served) Refresh(ctx context.Context) error {
	list, err := s.keeper.List(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, r := range list {
		if s.fixed[r.Name] {
			continue
		}
		seen[r.Name] = true
		old, served := s.recs[r.Name]
		if served && old.Dir == r.Dir {
			s.recs[r.Name] = r // owner or mode may have changed
			continue
		}
		b, err := s.open(r)
		if err != nil {
			if !served {
				s.log.Warn("bucket record not served: its directory cannot be opened", "bucket", r.Name, "dir", r.Dir, "err", err)
			}
			continue
		}
		if served {
			s.drop(r.Name)
		}
		if err := s.set.Add(b); err != nil {
			closeBucket(b)
			s.log.Warn("bucket record not served", "bucket", r.Name, "err", err)
			continue
		}
		s.recs[r.Name] = r
		s.log.Info("serving bucket", "bucket", r.Name, "dir", r.Dir, "owner", r.Owner, "private", r.Private)
	}
	for name := range s.recs {
		if !seen[name] {
			s.drop(name)
			s.log.Info("bucket removed", "bucket", name)
		}
	}
	return nil
}

// drop stops serving a bucket of ours.
func (s *Served) drop(name string) {
	delete(s.recs, name)
	if b := s.set.Remove(name); b != nil {
		closeBucket(b)
	}
}

func closeBucket(b storage.Bucket) {
	if c, ok := b.(io.Closer); ok {
		c.Close()
	}
}

// Run refreshes every interval until ctx ends (a failed read keeps the
// buckets served as they were: a KV that does not answer stops no
// download).
func (s *Served) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.Refresh(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("reading the bucket records failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
