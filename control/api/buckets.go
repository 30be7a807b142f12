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

// BucketStyles are a bucket's styles (GET /v1/buckets/NAME/styles, and the
// answer of every change of them): a URL /NAME/<key><c><style>, with <c>
// any character of Separator, answers /NAME/<key>?<Styles[style]>.
type BucketStyles struct {
	Bucket    string            `json:"bucket"`
	Separator string            `json:"separator"` // as in effect: "-" unless set
	Styles    map[string]string `json:"styles"`    // name → chain; never null
}

// StyleRequest is the body of PUT /v1/buckets/NAME/styles/STYLE.
type StyleRequest struct {
	Chain string `json:"chain"` // e.g. "imageView2/2/w/200"
}

// SeparatorRequest is the body of PUT /v1/buckets/NAME/separator.
type SeparatorRequest struct {
	Separator string `json:"separator"` // one or more of ~@$^&*()-_/!+={}[]|:;"'<>,
}
