package platform

import (
	"context"
	"errors"

	"github.com/qufop/qufop/gateway"
)

// serverObjects gives the image commands (watermark images) read access to
// the buckets through the gateway, which knows their owners and modes. The
// commands are built before the gateway, so srv is set once it exists,
// before anything is served.
type serverObjects struct{ srv *gateway.Server }

func (o *serverObjects) ReadObject(ctx context.Context, from, bucket, key string, max int64) ([]byte, error) {
	if o.srv == nil {
		return nil, errors.New("platform: storage read before the gateway was built")
	}
	return o.srv.ReadObject(ctx, from, bucket, key, max)
}
