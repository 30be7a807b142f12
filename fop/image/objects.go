package image

import "context"

// Objects reads stored objects for the commands that take another object
// as a parameter (watermark/1's image). The gateway implements it over the
// buckets it serves, so that a command never fetches anything from the
// network.
type Objects interface {
	// ReadObject returns the bytes of key in bucket, for a chain on the
	// object in.Bucket (whose tenant ctx carries), reading at most max
	// bytes. Errors carry a status from package errs: 631 for an unknown
	// bucket, 404 for a missing key, 403 when the chain may not read the
	// object, 400 when it is over max.
	ReadObject(ctx context.Context, from, bucket, key string, max int64) ([]byte, error)
}
