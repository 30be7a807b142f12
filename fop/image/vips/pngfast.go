package vips

// #cgo pkg-config: vips libdeflate
// #include "pngfast.h"
import "C"

import "unsafe"

// LoadPNGWhole decodes a PNG whole with libdeflate (pngfast.c), without
// libpng, if its pixels take at most max bytes and it is of a kind that
// path handles (8-bit grey, grey+alpha, RGB or RGBA, not interlaced; no
// palette, tRNS, iCCP or eXIf chunk; checksums right). ok is false, and
// the image nil, for every other input: the caller then loads it with
// Load, which decodes, warns or refuses as libvips does. Scale uses the
// same path for PNGs; this entry is for tests and benchmarks that compare
// the two.
func LoadPNGWhole(data []byte, max int) (im *Image, ok bool) {
	if len(data) == 0 || max <= 0 {
		return nil, false
	}
	var out *C.VipsImage
	r := C.qf_png_fast(unsafe.Pointer(&data[0]), C.size_t(len(data)), C.size_t(max), 0, 0, &out)
	if r != C.QF_PNG_OK {
		return nil, false
	}
	// The pixels are in memory of the image's own: data is not read again.
	return wrap(out, nil, false, 1), true
}
