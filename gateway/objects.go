package gateway

import (
	"context"
	"net/http"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/storage"
)

// ReadObject reads key in bucket for a step of a chain on an object of
// from (a watermark image: it implements image.Objects), at most max
// bytes. It reads only the buckets this gateway serves: a command never
// fetches from the network.
//
// A private bucket's object is read only for a chain on a private bucket
// of the same owner. Same owner, because a private object is its owner's
// alone; a private chain bucket, because only then did the request carry
// a download token of that owner (or of the admin): a chain on the owner's
// public bucket would otherwise show the private object to anyone.
func (s *Server) ReadObject(ctx context.Context, from, bucket, key string, max int64) ([]byte, error) {
	b, err := s.buckets.Bucket(bucket)
	if err != nil {
		return nil, err
	}
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	if info := s.bucketInfo(bucket); info.Private {
		chain := s.bucketInfo(from)
		if from == "" || !chain.Private || chain.Owner != info.Owner {
			return nil, errs.New(http.StatusForbidden, "bucket %q is private: its objects serve only chains on private buckets of its owner", bucket)
		}
	}
	rc, obj, err := b.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if obj.Size > max {
		return nil, errs.BadRequest("object is %d bytes, over the %d bytes left of the source limit", obj.Size, max)
	}
	return readAll(rc, obj.Size, max)
}
