package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/qufop/qufop/control/api"
)

// AddBucket records a bucket on an existing directory of the node. Admin
// only.
func (c *Client) AddBucket(ctx context.Context, req api.NewBucketRequest) (*api.Bucket, error) {
	var out api.Bucket
	if err := c.call(ctx, http.MethodPost, "/v1/buckets", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Buckets lists the bucket records. Admin only.
func (c *Client) Buckets(ctx context.Context) ([]api.Bucket, error) {
	var out []api.Bucket
	err := c.call(ctx, http.MethodGet, "/v1/buckets", nil, nil, &out)
	return out, err
}

// DeleteBucket removes a bucket's record (never its files). Admin only.
func (c *Client) DeleteBucket(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, "/v1/buckets/"+url.PathEscape(name), nil, nil, &api.BucketDeleted{})
}
