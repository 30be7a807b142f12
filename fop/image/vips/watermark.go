package vips

// Bindings for the watermark command: Text renders a string, Overlay and
// TextOverlay make an image ready to be drawn (sRGB, 8 bits, alpha scaled by
// an opacity) and Composite draws it onto a base.
//
// An overlay is rendered into memory and holds no encoded input: the result
// of Composite keeps only the base's input alive (see derive), so the
// overlay must not read one lazily.

/*
#cgo pkg-config: vips
#include <stdlib.h>
#include "watermark.h"
*/
import "C"

import (
	"errors"
	"runtime"
	"unsafe"
)

// Text renders text (plain text, not markup) with the Pango font
// description font ("WenQuanYi Micro Hei, 12") at dpi, as a one-band mask:
// 0 where there is no ink, 255 where it is full. Missing glyphs fall back
// to other fonts as fontconfig finds them.
func Text(text, font string, dpi int) (*Image, error) {
	ct := C.CString(text)
	defer C.free(unsafe.Pointer(ct))
	cf := C.CString(font)
	defer C.free(unsafe.Pointer(cf))
	var out *C.VipsImage
	if C.qf_wm_text(ct, cf, C.int(dpi), &out) != 0 {
		return nil, lastError("text")
	}
	// vips_text renders in memory while it is built: nothing to keep alive.
	return wrap(out, nil, false, 1), nil
}

// TextOverlay turns a mask from Text into an overlay of the colour r, g, b
// whose alpha is the mask times opacity (0..1).
func (im *Image) TextOverlay(r, g, b uint8, opacity float64) (*Image, error) {
	defer runtime.KeepAlive(im)
	var out *C.VipsImage
	if C.qf_wm_mask_overlay(im.im, C.int(r), C.int(g), C.int(b), C.double(opacity), &out) != 0 {
		return nil, lastError("text overlay")
	}
	return wrap(out, nil, false, 1), nil
}

// Overlay turns im into an overlay: sRGB, 8 bits per band, with an alpha
// band (opaque when im had none) times opacity (0..1), rendered into
// memory.
func (im *Image) Overlay(opacity float64) (*Image, error) {
	defer runtime.KeepAlive(im)
	var out *C.VipsImage
	if C.qf_wm_image_overlay(im.im, C.double(opacity), &out) != 0 {
		return nil, lastError("overlay")
	}
	// A memory image: vips_image_write unrefs its input once written, so
	// the encoded input is no longer read.
	return wrap(out, nil, false, 1), nil
}

// Composite draws over (from Overlay or TextOverlay) onto im with its
// top-left corner at x, y; parts outside im are dropped. The result has
// im's size and an alpha band.
func (im *Image) Composite(over *Image, x, y int) (*Image, error) {
	defer runtime.KeepAlive(im)
	defer runtime.KeepAlive(over)
	if over.src != nil {
		return nil, errors.New("vips composite: the overlay reads an encoded input (make it with Overlay)")
	}
	var out *C.VipsImage
	r, err := im.result("composite", C.qf_wm_composite(im.im, over.im, C.int(x), C.int(y), &out), out)
	if r != nil {
		r.Pages = 1
	}
	return r, err
}
