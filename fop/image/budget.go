package image

import (
	"context"
	"errors"
	"net/http"

	"golang.org/x/sync/semaphore"

	"github.com/qufop/qufop/errs"
)

// Whole-image operations (rotate, auto-orient of a turned image) cannot
// stream: libvips needs the whole decoded image in memory, so a 20 MP
// photograph takes 60 MB for each one running, and a 150 MP one 450 MB,
// whatever the worker count. They share a budget of bytes of their own
// (Config.WholeImageBudget): a step that would exceed it waits for the
// others to finish (its request's deadline still applies), and one that
// could never fit is refused before anything is decoded.

// wholeImageCopies is what a whole-image step costs, in copies of its
// decoded input: the copy libvips turns, plus its buffers, the encoder's
// and the Go side's, measured as the rise of the gateway's VmHWM for one
// step alone (a 20 MP rotate/90: 127 MB over idle for a 61 MB image,
// 2026-12-02). An arbitrary angle adds its bounding box once. With this
// the budget is close to the memory the steps really take, rather than a
// quarter of it.
const wholeImageCopies = 2

// budget is the memory of the whole-image operations running now.
type budget struct {
	sem  *semaphore.Weighted
	size int64
}

func newBudget(size int64) *budget {
	return &budget{sem: semaphore.NewWeighted(size), size: size}
}

// take reserves n bytes, waiting while the others hold too much; release
// gives them back. n is 0 for a chain that needs none.
func (b *budget) take(ctx context.Context, n int64, op string) (release func(), err error) {
	if n <= 0 || b == nil {
		return func() {}, nil
	}
	if n > b.size {
		return nil, errs.BadRequest("%s needs %d MB of memory for the whole image, over the %d MB budget of whole-image operations (--whole-image-budget)", op, n>>20, b.size>>20)
	}
	if err := b.sem.Acquire(ctx, n); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, errs.Wrap(http.StatusGatewayTimeout, err, "processing timed out waiting for memory for a whole-image operation")
		}
		return nil, errs.Wrap(errs.StatusProcessingFailed, err, "processing cancelled")
	}
	return func() { b.sem.Release(n) }, nil
}

// bytesPerPixel of a decoded image with the header's bands and format.
func bytesPerPixel(bands int, format string) int64 {
	bpb := int64(1)
	switch format {
	case "ushort", "short":
		bpb = 2
	case "uint", "int", "float":
		bpb = 4
	case "double", "complex":
		bpb = 8
	}
	return int64(max(bands, 1)) * bpb
}
