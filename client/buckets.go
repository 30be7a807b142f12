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

// BucketStyles returns a bucket's style separator and styles. Admin only.
func (c *Client) BucketStyles(ctx context.Context, bucket string) (*api.BucketStyles, error) {
	var out api.BucketStyles
	if err := c.call(ctx, http.MethodGet, "/v1/buckets/"+bucket+"/styles", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetBucketStyle adds or replaces the style name of bucket: chain is a
// processing chain as a URL's query carries it. Admin only.
func (c *Client) SetBucketStyle(ctx context.Context, bucket, name, chain string) (*api.BucketStyles, error) {
	var out api.BucketStyles
	if err := c.call(ctx, http.MethodPut, stylePath(bucket, name), nil, api.StyleRequest{Chain: chain}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveBucketStyle removes the style name of bucket. Admin only.
func (c *Client) RemoveBucketStyle(ctx context.Context, bucket, name string) (*api.BucketStyles, error) {
	var out api.BucketStyles
	if err := c.call(ctx, http.MethodDelete, stylePath(bucket, name), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetBucketSeparator sets the characters joining a key to a style name in
// bucket's URLs. Admin only.
func (c *Client) SetBucketSeparator(ctx context.Context, bucket, sep string) (*api.BucketStyles, error) {
	var out api.BucketStyles
	if err := c.call(ctx, http.MethodPut, "/v1/buckets/"+bucket+"/separator", nil, api.SeparatorRequest{Separator: sep}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// stylePath is the path of a style; newRequest escapes it (names are
// letters, digits and "-_.", and bucket names fewer still).
func stylePath(bucket, name string) string {
	return "/v1/buckets/" + bucket + "/styles/" + name
}
