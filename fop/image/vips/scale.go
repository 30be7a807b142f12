package vips

// #cgo pkg-config: libdeflate libjpeg
// #include "scale.h"
import "C"

import "fmt"

// ScaleOptions control Scale.
type ScaleOptions struct {
	// Width and Height are the exact size of the result as stored, before
	// Orientation is applied (so for orientations 5-8 they are the upright
	// result's height and width).
	Width, Height int
	// JPEGShrink is the DCT scale a JPEG is decoded at: 1, 2, 4 or 8, at
	// most what keeps the decoded image at least Width×Height (see
	// JPEGShrink). Ignored for other formats.
	JPEGShrink int
	// JPEG says the input is a JPEG (the caller has read its header).
	JPEG bool
	// Orientation is the EXIF orientation to apply after resizing (0 or 1:
	// none).
	Orientation int
	// FailOnTruncated: see LoadOptions.
	FailOnTruncated bool
	// WholeMax is the largest decoded size, in bytes, of an image that
	// is decoded whole into memory, a PNG with libdeflate (pngfast.c), a
	// JPEG with libjpeg at its DCT scale (jpegfast.c), rather than
	// streamed through libvips' loader: 0 means DefaultWholeMax, a
	// negative value never.
	WholeMax int
}

// DefaultWholeMax bounds the memory of an image decoded whole: 32 MiB
// is an 8 MP RGBA image, or a 20 MP JPEG at half size. Larger ones stream
// through libvips' loader, which holds a few rows at a time.
const DefaultWholeMax = 32 << 20

// Scale decodes one frame of data and resizes it to exactly
// Width×Height with lanczos3, upright and in sRGB: imageView2's pipeline
// in one call (scale.c), opening the input once.
func Scale(data []byte, o ScaleOptions) (*Image, error) {
	if o.Width < 1 || o.Height < 1 {
		return nil, fmt.Errorf("vips scale: size %dx%d", o.Width, o.Height)
	}
	shrink := 1
	if o.JPEG {
		switch o.JPEGShrink {
		case 2, 4, 8:
			shrink = o.JPEGShrink
		}
	}
	wholeMax := o.WholeMax
	switch {
	case wholeMax == 0:
		wholeMax = DefaultWholeMax
	case wholeMax < 0:
		wholeMax = 0
	}
	src := newOwner(data)
	var out *C.VipsImage
	if C.qf_scale(src.p, C.size_t(len(data)), cbool(o.JPEG), C.int(shrink), cbool(o.FailOnTruncated),
		C.int(o.Width), C.int(o.Height), C.int(o.Orientation), C.size_t(wholeMax), &out) != 0 {
		src.unref()
		return nil, lastError("scale")
	}
	im := wrap(out, src, true, 1)
	im.Pages = 1
	return im, nil
}

// JPEGShrink is the largest DCT scale (1, 2, 4 or 8) at which a w×h JPEG
// decodes to at least tw×th: libjpeg gives ceil(w/s)×ceil(h/s). imgproxy
// chooses the same (a power of two at or above the target), leaving the
// rest to the lanczos3 reduce, so that quality does not suffer from
// decoding too small.
func JPEGShrink(w, h, tw, th int) int {
	for _, s := range []int{8, 4, 2} {
		if (w+s-1)/s >= tw && (h+s-1)/s >= th {
			return s
		}
	}
	return 1
}
