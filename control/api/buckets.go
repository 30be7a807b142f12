package api

import "time"

// NewBucketRequest is the body of POST /v1/buckets.
type NewBucketRequest struct {
	Name    string `json:"name"`
	Dir     string `json:"dir"`             // absolute; must be a directory on the node
	Owner   string `json:"owner,omitempty"` // default: the admin
	Private bool   `json:"private"`
}

// Bucket is a bucket record (POST and GET /v1/buckets).
type Bucket struct {
	Name      string    `json:"name"`
	Dir       string    `json:"dir"`
	Owner     string    `json:"owner"`
	Private   bool      `json:"private"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// BucketDeleted is the answer of DELETE /v1/buckets/NAME.
type BucketDeleted struct {
	Name string `json:"name"`
}
