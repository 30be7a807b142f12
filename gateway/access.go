package gateway

// Who a request works for, and whether it may read its bucket at all: the
// bucket's owner is the request's tenant (tenant.With on its context, read
// by admission and the UFOP queues), and a private bucket serves only URLs
// that carry a download token of its owner or of the admin (dltoken).
// Both fronts call authorize once the bucket is known.

import (
	"context"
	"net/http"
	"time"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/dltoken"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/tenant"
)

// BucketInfo is what the gateway knows of a bucket beyond its objects.
type BucketInfo struct {
	Owner   string
	Private bool
	// Separator and Styles are the bucket's styles (see styles.go): any
	// one character of Separator joins a key to the name of a style.
	Separator string
	Styles    map[string]string
}

// BucketAccess tells the owner and access mode of a bucket; ok is false
// for a bucket it has no record of (a --bucket flag's), which is public
// and owned by whoever WithUFOPs's owner function names.
type BucketAccess interface {
	Access(bucket string) (info BucketInfo, ok bool)
}

// Classes tells a user's class of service (users.Cache implements it).
type Classes interface {
	Class(user string) tenant.Class
}

// tenancy is the gateway's view of buckets and users.
type tenancy struct {
	buckets BucketAccess
	keys    auth.Lookup // download tokens' access keys
	admin   string      // whose tokens open every private bucket
	classes Classes     // nil: everybody is free
	now     func() time.Time
}

// WithAccess makes the gateway check private buckets' download tokens,
// with keys finding an access key's secret and user; tokens of admin open
// every bucket.
func WithAccess(buckets BucketAccess, keys auth.Lookup, admin string) Option {
	return func(s *Server) {
		t := s.tenancyOf()
		t.buckets, t.keys, t.admin = buckets, keys, admin
	}
}

// WithClasses tells the gateway the class of each user (default: free).
func WithClasses(c Classes) Option {
	return func(s *Server) { s.tenancyOf().classes = c }
}

func (s *Server) tenancyOf() *tenancy {
	if s.tenants == nil {
		s.tenants = &tenancy{now: time.Now}
	}
	return s.tenants
}

// authorize checks that the request with target (as sent) and host may read
// bucket, and returns ctx carrying its tenant: the bucket's owner.
func (s *Server) authorize(ctx context.Context, bucket, target, host string) (context.Context, error) {
	info := s.bucketInfo(bucket)
	t := s.tenants
	if info.Private {
		if err := t.check(bucket, info.Owner, target, host); err != nil {
			return ctx, err
		}
	}
	class := tenant.Free
	if t != nil && t.classes != nil && info.Owner != "" {
		class = t.classes.Class(info.Owner)
	}
	return tenant.With(ctx, tenant.Tenant{User: info.Owner, Class: class}), nil
}

// bucketInfo is the owner and mode of bucket: its record's, else a public
// bucket of the owner WithUFOPs names.
func (s *Server) bucketInfo(bucket string) BucketInfo {
	if t := s.tenants; t != nil && t.buckets != nil {
		if info, ok := t.buckets.Access(bucket); ok {
			return info
		}
	}
	if s.owner != nil {
		return BucketInfo{Owner: s.owner(bucket)}
	}
	return BucketInfo{}
}

// check verifies the download token for a private bucket of owner. A valid
// token of another user is a 403: it proves who asks, and that user may
// not read the bucket.
func (t *tenancy) check(bucket, owner, target, host string) error {
	keys := t.keys
	if keys == nil {
		keys = func(string) (string, string, bool) { return "", "", false }
	}
	tok, err := dltoken.Check(bucket, target, host, keys, t.now())
	if err != nil {
		return err
	}
	if tok.User != owner && tok.User != t.admin {
		return errs.New(http.StatusForbidden, "bucket %q is private: the download token of user %q does not open it (sign with its owner's keys)", bucket, tok.User)
	}
	return nil
}
