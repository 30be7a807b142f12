package vips

/*
#cgo pkg-config: vips imagequant
#include "ops2.h"
*/
import "C"

import (
	"errors"
	"image"
	"image/color"
	"runtime"
	"unsafe"
)

// cdoubles copies v into C memory; the caller frees it.
func cdoubles(v []float64) (*C.double, C.int) {
	if len(v) == 0 {
		v = []float64{0}
	}
	p := (*C.double)(C.malloc(C.size_t(len(v)) * C.size_t(unsafe.Sizeof(C.double(0)))))
	s := unsafe.Slice(p, len(v))
	for i, x := range v {
		s[i] = C.double(x)
	}
	return p, C.int(len(v))
}

// Embed places the image at (x, y) of a new width×height canvas filled with
// bg (one value per band); x or y may be negative, and what falls outside
// the canvas is cut (ImageMagick -extent).
func (im *Image) Embed(x, y, width, height int, bg []float64) (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	cbg, n := cdoubles(bg)
	defer C.free(unsafe.Pointer(cbg))
	var out *C.VipsImage
	r, err := im.result("embed", C.qf_embed_bg(im.im, &out, C.int(x), C.int(y), C.int(width), C.int(height), cbg, n), out)
	if r != nil {
		r.Pages = 1
	}
	return r, err
}

// Flatten composes the alpha band onto bg (one value per colour band) and
// drops it; an image without alpha is returned as it is.
func (im *Image) Flatten(bg []float64) (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	if !im.HasAlpha() {
		return im.derive(im.ref()), nil
	}
	cbg, n := cdoubles(bg)
	defer C.free(unsafe.Pointer(cbg))
	var out *C.VipsImage
	return im.result("flatten", C.qf_flatten_bg(im.im, &out, cbg, n), out)
}

// AddAlpha appends an opaque alpha band.
func (im *Image) AddAlpha() (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var out *C.VipsImage
	return im.result("addalpha", C.qf_addalpha(im.im, &out), out)
}

// Sharpen is libvips' unsharp mask on the L channel: sigma is the gaussian's,
// m1 the slope for flat areas, m2 for jaggy areas (edges).
func (im *Image) Sharpen(sigma, m1, m2 float64) (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var out *C.VipsImage
	return im.result("sharpen", C.qf_sharpen(im.im, &out, C.double(sigma), C.double(m1), C.double(m2)), out)
}

// DropMetadata returns a copy without EXIF (block and fields), XMP, IPTC,
// Photoshop data and PNG comments, keeping the orientation, the ICC profile
// and the resolution: what is needed to show the pixels as they were.
func (im *Image) DropMetadata() (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var out *C.VipsImage
	return im.result("copy", C.qf_drop_metadata(im.im, &out), out)
}

// PNG row filters (VipsForeignPngFilter).
const (
	PNGFilterNone = C.VIPS_FOREIGN_PNG_FILTER_NONE
	PNGFilterAll  = C.VIPS_FOREIGN_PNG_FILTER_ALL
)

// SavePNGFilter encodes as PNG with the zlib level (0..9) and row filters
// given.
func (im *Image) SavePNGFilter(compression, filter int, strip bool) ([]byte, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var buf unsafe.Pointer
	var n C.size_t
	rc := C.qf_pngsave_filter(im.im, &buf, &n, C.int(compression), C.int(filter), cbool(strip))
	return im.saved("pngsave", rc, buf, n)
}

// Quantise maps an 8-bit RGBA image (4 bands, uchar) to a palette of at most
// colours (2..256) colours with libimagequant, dithered (0..1).
func (im *Image) Quantise(colours int, dither float64) (*image.Paletted, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	if colours < 2 || colours > 256 {
		return nil, errors.New("vips quantise: colours must be 2..256")
	}
	w, h := im.Width(), im.Height()
	idx := C.malloc(C.size_t(w) * C.size_t(h))
	defer C.free(idx)
	var pal [256 * 4]C.uchar
	var n C.int
	if C.qf_quantise(im.im, C.int(colours), C.double(dither), (*C.uchar)(idx), &pal[0], &n) != 0 {
		return nil, lastError("quantise")
	}
	p := image.NewPaletted(image.Rect(0, 0, w, h), make(color.Palette, int(n)))
	for i := range p.Palette {
		p.Palette[i] = color.NRGBA{uint8(pal[4*i]), uint8(pal[4*i+1]), uint8(pal[4*i+2]), uint8(pal[4*i+3])}
	}
	copy(p.Pix, unsafe.Slice((*byte)(idx), w*h))
	return p, nil
}

// ExactPalette returns an 8-bit RGBA image (4 bands, uchar) indexed by its
// own colours when it has at most 256 of them (lossless), nil when it has
// more.
func (im *Image) ExactPalette() (*image.Paletted, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	w, h := im.Width(), im.Height()
	idx := C.malloc(C.size_t(w) * C.size_t(h))
	defer C.free(idx)
	var pal [256 * 4]C.uchar
	var n C.int
	if C.qf_exact_palette(im.im, (*C.uchar)(idx), &pal[0], &n) != 0 {
		return nil, lastError("palette")
	}
	if n == 0 {
		return nil, nil
	}
	p := image.NewPaletted(image.Rect(0, 0, w, h), make(color.Palette, int(n)))
	for i := range p.Palette {
		p.Palette[i] = color.NRGBA{uint8(pal[4*i]), uint8(pal[4*i+1]), uint8(pal[4*i+2]), uint8(pal[4*i+3])}
	}
	copy(p.Pix, unsafe.Slice((*byte)(idx), w*h))
	return p, nil
}
