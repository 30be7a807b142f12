package platform

import (
	"context"
	"log/slog"
	"time"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/buckets"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/gateway"
	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/storage/local"
)

// recordsEvery is how often a gateway re-reads the bucket records: a
// bucket added or removed with qufop bucket is served (or not) within it,
// as the dispatcher's cache of UFOP records.
const recordsEvery = time.Second

// serveRecords serves the bucket records of kv beside the buckets already
// in the set (the flags' and the data folder's), re-read every
// recordsEvery until the closers run. A first read that fails is logged:
// the records come when the KV answers.
func (dp *dataPlane) serveRecords(kv cluster.KV, log *slog.Logger, cl *closers) *buckets.Served {
	s := buckets.NewServed(buckets.NewKeeper(kv), dp.set, func(r buckets.Record) (storage.Bucket, error) {
		return local.New(r.Name, r.Dir, dp.cache...)
	}, log)
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Refresh(ctx); err != nil {
		log.Warn("reading the bucket records failed", "err", err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx, recordsEvery) }()
	cl.add(func() { cancel(); <-done })
	return s
}

// recordAccess tells the gateway the owner, mode and styles of the buckets
// served from a record.
type recordAccess struct{ s *buckets.Served }

func (a recordAccess) Access(name string) (gateway.BucketInfo, bool) {
	r, ok := a.s.Record(name)
	return gateway.BucketInfo{Owner: r.Owner, Private: r.Private, Separator: r.Separators(), Styles: r.Styles}, ok
}

// tenancy is the gateway option of the bucket records (owners, private
// buckets whose download tokens keys checks; admin's open them all) and of
// the users' classes.
func tenancy(s *buckets.Served, keys auth.Lookup, admin string, classes gateway.Classes) gateway.Option {
	access := gateway.WithAccess(recordAccess{s}, keys, admin)
	with := gateway.WithClasses(classes)
	return func(srv *gateway.Server) {
		access(srv)
		with(srv)
	}
}
