package image

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image/vips"
)

// Whole-image operations take their image's bytes from the budget (none
// for streaming ones), wait while it is held, and are refused before any
// decoding when they alone exceed it.
func TestWholeImageBudget(t *testing.T) {
	cfg := NewDefaultConfig()
	// storm is 1920x1080x3 = 6,220,800 bytes decoded; kleiber 6028x3391x3.
	// A step takes wholeImageCopies of its decoded input.
	cfg.WholeImageBudget = 16 << 20
	r := newReg(t, cfg)
	kleiber := mustRead(testdata + "kleiber-6028x3391.jpg")
	x := r["imageMogr2"].(*ImageMogr2).x

	for _, tc := range []struct {
		q    string
		src  []byte
		need int64
	}{
		{"imageMogr2/rotate/90", storm, 2 * 1920 * 1080 * 3},
		{"imageMogr2/rotate/45", storm, (2*1920*1080 + 2120*2120) * 3},    // and the bounding box
		{"imageMogr2/thumbnail/400x/rotate/90", storm, 2 * 400 * 225 * 3}, // rotated after the shrink
		{"imageMogr2/auto-orient/thumbnail/400x", blinds, 2 * 1920 * 1200 * 3},
		{"imageMogr2/auto-orient/thumbnail/400x", storm, 0}, // orientation 1: nothing to turn
		{"imageMogr2/thumbnail/400x/blur/3x2/crop/100x100", kleiber, 0},
		{"imageMogr2/rotate/360", storm, 0},
	} {
		src, err := x.open(fop.Blob{Data: tc.src}, true)
		if err != nil {
			t.Fatal(err)
		}
		p, err := r["imageMogr2"].(*ImageMogr2).parse(parseCmd(t, tc.q))
		if err != nil {
			t.Fatal(err)
		}
		need, err := x.mogr2Plan(src, p.ops)
		if err != nil || need != tc.need {
			t.Errorf("%s: need %d, %v; want %d", tc.q, need, err, tc.need)
		}
	}

	// Alone over the budget: a 400 naming it, before any decoding.
	decodes := 0
	origLoad, origThumb := loadImage, thumbnailImage
	loadImage = func(b []byte, o vips.LoadOptions) (*vips.Image, error) { decodes++; return origLoad(b, o) }
	thumbnailImage = func(b []byte, o vips.ThumbnailOptions) (*vips.Image, error) { decodes++; return origThumb(b, o) }
	t.Cleanup(func() { loadImage, thumbnailImage = origLoad, origThumb })
	_, err := do(t, r, "imageMogr2/rotate/90", kleiber)
	if errs.Status(err) != 400 || !strings.Contains(errs.Public(err), "needs 116 MB of memory for the whole image, over the 16 MB budget") {
		t.Fatalf("kleiber rotate: %v", err)
	}
	if decodes != 0 {
		t.Errorf("%d decodes for a refused step", decodes)
	}

	// The budget held by others: the step waits, and its deadline applies.
	release, err := x.budget.take(context.Background(), 8<<20, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = r["imageMogr2"].Process(ctx, parseCmd(t, "imageMogr2/rotate/90"), fop.Blob{Data: storm})
	if errs.Status(err) != http.StatusGatewayTimeout || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("rotate while the budget is held: %v", err)
	}
	// Streaming operations do not wait for it.
	if _, err := do(t, r, "imageMogr2/thumbnail/200x", storm); err != nil {
		t.Fatal(err)
	}
	release()
	// Once it is given back, the step runs, and gives back its share.
	if _, err := do(t, r, "imageMogr2/rotate/90", storm); err != nil {
		t.Fatal(err)
	}
	if !x.budget.sem.TryAcquire(16 << 20) {
		t.Error("the budget was not given back in full")
	}
}
