// Package vips is qufop's own thin cgo binding over libvips.
//
// Why our own binding rather than govips or bimg: we need control of
// shrink-on-load (vips_thumbnail_buffer decodes a JPEG at 1/2, 1/4 or 1/8
// scale), sequential access, and of process-wide state (no global logging
// handlers, no operation cache, bounded malloc arenas, untrusted loaders
// blocked). The surface is small — the dozen operations imageView2,
// imageMogr2 and the info commands use — and we test it ourselves. This is
// imgproxy's approach (its vips/ package), see peers.md §1.4 and §5.2.
//
// cgo cannot call variadic C functions, so vips.c wraps each
// vips_xxx(..., NULL) call we need in a fixed-argument C function.
//
// # Memory ownership
//
// vips_image_new_from_buffer and vips_thumbnail_buffer do not copy their
// input: the loader reads it lazily, for as long as any image derived from it
// is alive. Load and Thumbnail therefore copy the input once into C memory
// (malloc) and attach that copy to a reference-counted owner shared by every
// *Image derived from it; the copy is freed when the last of those images is
// closed. No Go pointer is retained by C beyond a call. Probe, which opens
// only the header and releases the image before returning, reads the Go
// slice in place.
//
// Every *Image must be closed (Close is idempotent); a finalizer is set only
// as a safety net. Operations return new images and leave the receiver open.
//
// # Threads
//
// libvips keeps per-thread buffers. Callers doing a unit of work should lock
// the OS thread and call ThreadShutdown at its end (as imgproxy does), or
// accept that each OS thread keeps a few buffers alive.
package vips

/*
#cgo pkg-config: vips
#include "vips.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

var (
	startOnce sync.Once
	startErr  error
)

// Startup initialises libvips once per process (later calls return the first
// result): one libvips worker thread per operation (our own worker pool gives
// parallelism), no operation cache (bounded memory), no leak checking,
// untrusted loaders blocked, and glibc malloc limited to 2 arenas.
func Startup() error {
	startOnce.Do(func() {
		if C.qf_startup() != 0 {
			startErr = lastError("vips startup")
		}
	})
	return startErr
}

// ThreadShutdown frees libvips' per-thread buffers of the calling OS thread.
func ThreadShutdown() { C.qf_thread_shutdown() }

// Version is the version of the libvips linked, "8.14.1": its encoders and
// resamplers decide the bytes of a result.
func Version() string { return C.GoString(C.vips_version_string()) }

// TrackedMemory returns the bytes libvips has allocated for pixel buffers now
// and at most since start.
func TrackedMemory() (now, highwater uint64) {
	return uint64(C.qf_tracked_mem()), uint64(C.qf_tracked_mem_highwater())
}

// Error is a libvips failure; Msg is vips' error buffer.
type Error struct {
	Op  string
	Msg string
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return "vips " + e.Op + " failed"
	}
	return "vips " + e.Op + ": " + e.Msg
}

// lastError reads and clears vips' error buffer.
func lastError(op string) error {
	var msg *C.char
	C.qf_error(&msg)
	s := strings.TrimSpace(C.GoString(msg))
	C.g_free(C.gpointer(msg))
	return &Error{Op: op, Msg: s}
}

// ErrUnsupported is returned when no allowed loader recognises the input.
var ErrUnsupported = errors.New("unsupported image format")

// Format is a short image format name derived from the loader.
func formatOf(loader string) string {
	name, _, _ := strings.Cut(loader, "load")
	switch name {
	case "jpeg", "png", "gif", "webp", "tiff", "heif", "jp2k", "jxl":
		return name
	case "":
		return ""
	}
	return name
}

// Header is what Probe learns without decoding pixels.
type Header struct {
	Format         string // "jpeg", "png", "gif", "webp", "tiff", "heif", ...
	Loader         string // libvips loader, "jpegload_buffer"
	Width          int    // stored width (before EXIF orientation)
	Height         int    // height of one page (Pages > 1) or of the image
	Bands          int
	Pages          int // n-pages: frames of a GIF/WebP, 1 otherwise
	PageHeight     int
	Orientation    int // EXIF orientation 1..8, 0 when absent
	HasAlpha       bool
	Palette        bool   // palette (indexed) PNG or GIF
	Interpretation string // vips nick: "srgb", "b-w", "cmyk", "rgb16", ...
	BandFormat     string // vips nick: "uchar", "ushort", ...
}

// Swapped reports whether EXIF orientation swaps width and height (5..8).
func (h Header) Swapped() bool { return h.Orientation >= 5 && h.Orientation <= 8 }

func headerFrom(c *C.qf_header) Header {
	h := Header{
		Width:          int(c.width),
		Height:         int(c.height),
		Bands:          int(c.bands),
		Pages:          int(c.pages),
		PageHeight:     int(c.page_height),
		Orientation:    int(c.orientation),
		HasAlpha:       c.has_alpha != 0,
		Palette:        c.palette != 0,
		Interpretation: C.GoString(C.vips_enum_nick(C.vips_interpretation_get_type(), c.interpretation)),
		BandFormat:     C.GoString(C.vips_enum_nick(C.vips_band_format_get_type(), c.band_format)),
	}
	if c.loader != nil {
		h.Loader = C.GoString(c.loader)
		h.Format = formatOf(h.Loader)
	}
	if h.Pages < 1 {
		h.Pages = 1
	}
	return h
}

// FindLoader returns the libvips loader that recognises data ("" if none).
func FindLoader(data []byte) string {
	if len(data) == 0 {
		return ""
	}
	l := C.qf_find_loader(unsafe.Pointer(&data[0]), C.size_t(len(data)))
	if l == nil {
		return ""
	}
	return C.GoString(l)
}

// Probe reads the header of an encoded image without decoding pixels.
func Probe(data []byte) (Header, error) {
	if len(data) == 0 {
		return Header{}, ErrUnsupported
	}
	if FindLoader(data) == "" {
		return Header{}, ErrUnsupported
	}
	var h C.qf_header
	if C.qf_probe(unsafe.Pointer(&data[0]), C.size_t(len(data)), &h) != 0 {
		return Header{}, lastError("header")
	}
	return headerFrom(&h), nil
}

// owner keeps an encoded input where libvips reads it, for as long as any
// image reads it: libvips decodes lazily, after the call that opened the
// input has returned. The Go bytes are pinned (runtime.Pinner), which lets
// C keep their address, instead of copied to C memory: a copy was a second
// 4 MB per request for a 20 MP JPEG, and 1 % of imageView2's CPU. The
// caller must not change data while images read it.
type owner struct {
	p    unsafe.Pointer
	pin  runtime.Pinner
	c    bool // p is a C copy (an empty input cannot be pinned)
	refs atomic.Int32
}

func newOwner(data []byte) *owner {
	o := &owner{}
	if len(data) == 0 {
		o.p, o.c = C.CBytes(data), true
	} else {
		o.pin.Pin(&data[0])
		o.p = unsafe.Pointer(&data[0])
	}
	o.refs.Store(1)
	return o
}

func (o *owner) ref() *owner {
	if o != nil {
		o.refs.Add(1)
	}
	return o
}

func (o *owner) unref() {
	if o != nil && o.refs.Add(-1) == 0 {
		if o.c {
			C.free(o.p)
		} else {
			o.pin.Unpin()
		}
		o.p = nil
	}
}

// Image is a libvips image (usually a lazy pipeline not yet computed).
type Image struct {
	im    *C.VipsImage
	src   *owner
	mu    sync.Mutex
	Seq   bool // decoded with sequential access: random-access ops need CopyMemory
	Pages int  // frames held (page-height = Height()/Pages)
}

func wrap(im *C.VipsImage, src *owner, seq bool, pages int) *Image {
	if pages < 1 {
		pages = 1
	}
	i := &Image{im: im, src: src, Seq: seq, Pages: pages}
	runtime.SetFinalizer(i, (*Image).Close)
	return i
}

// derive wraps the result of an operation on im.
func (im *Image) derive(out *C.VipsImage) *Image {
	return wrap(out, im.src.ref(), im.Seq, im.Pages)
}

// Close releases the image and, with the last image derived from an input,
// the C copy of that input. It is safe to call twice.
func (im *Image) Close() {
	if im == nil {
		return
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.im != nil {
		C.g_object_unref(C.gpointer(im.im))
		im.im = nil
		im.src.unref()
		im.src = nil
		runtime.SetFinalizer(im, nil)
	}
}

// LoadOptions control Load.
type LoadOptions struct {
	// Sequential decodes top to bottom in one pass, without holding the
	// whole image; random-access operations then need CopyMemory.
	Sequential bool
	// AllPages loads every frame of a GIF/WebP (n=-1) as one tall image.
	AllPages bool
	// FailOnTruncated makes truncated or corrupt data an error instead of
	// a warning with grey fill.
	FailOnTruncated bool
	// JPEGShrink decodes a JPEG at 1/2, 1/4 or 1/8 of its size (DCT
	// scaling); other values and formats decode at full size.
	JPEGShrink int
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// Load opens an encoded image (lazily: pixels are decoded when needed).
func Load(data []byte, o LoadOptions) (*Image, error) {
	if FindLoader(data) == "" {
		return nil, ErrUnsupported
	}
	src := newOwner(data)
	var out *C.VipsImage
	if C.qf_load(src.p, C.size_t(len(data)), cbool(o.Sequential), cbool(o.AllPages), cbool(o.FailOnTruncated), C.int(o.JPEGShrink), &out) != 0 {
		src.unref()
		return nil, lastError("load")
	}
	im := wrap(out, src, o.Sequential, 1)
	im.Pages = im.pagesHeld()
	return im, nil
}

func (im *Image) pagesHeld() int {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	ph := int(C.vips_image_get_page_height(im.im))
	h := im.Height()
	if ph > 0 && ph < h && h%ph == 0 {
		return h / ph
	}
	return 1
}

// Size says how Thumbnail may scale.
type Size int

// Thumbnail sizing modes (VipsSize).
const (
	SizeBoth  Size = C.VIPS_SIZE_BOTH
	SizeUp    Size = C.VIPS_SIZE_UP
	SizeDown  Size = C.VIPS_SIZE_DOWN
	SizeForce Size = C.VIPS_SIZE_FORCE
)

// ThumbnailOptions control Thumbnail.
type ThumbnailOptions struct {
	Width, Height int  // target box (of one frame, after auto-rotation)
	Size          Size // SizeDown never enlarges; SizeForce gives exactly Width×Height
	Crop          bool // fill the box and crop the centre
	NoRotate      bool // do not auto-rotate by EXIF orientation
	AllPages      bool // every frame of a GIF/WebP
	// FailOnTruncated: see LoadOptions.
	FailOnTruncated bool
}

// Thumbnail decodes and resizes in one step with vips_thumbnail_buffer, which
// uses shrink-on-load (JPEG DCT scaling, WebP scaling, ...) so that a large
// source is never decoded at full size when a small output is wanted.
func Thumbnail(data []byte, o ThumbnailOptions) (*Image, error) {
	if FindLoader(data) == "" {
		return nil, ErrUnsupported
	}
	if o.Width < 1 {
		return nil, fmt.Errorf("vips thumbnail: width %d", o.Width)
	}
	h := o.Height
	if h < 1 {
		h = C.VIPS_MAX_COORD
	}
	src := newOwner(data)
	var out *C.VipsImage
	if C.qf_thumbnail(src.p, C.size_t(len(data)), C.int(o.Width), C.int(h), C.int(o.Size),
		cbool(o.Crop), cbool(o.NoRotate), cbool(o.AllPages), cbool(o.FailOnTruncated), &out) != 0 {
		src.unref()
		return nil, lastError("thumbnail")
	}
	// thumbnail reads its input sequentially: random-access operations on
	// the result need CopyMemory.
	im := wrap(out, src, true, 1)
	im.Pages = im.pagesHeld()
	return im, nil
}

// Width of the image.
func (im *Image) Width() int {
	defer runtime.KeepAlive(im)
	return int(C.vips_image_get_width(im.im))
}

// Height of the image (all pages).
func (im *Image) Height() int {
	defer runtime.KeepAlive(im)
	return int(C.vips_image_get_height(im.im))
}

// PageHeight is the height of one frame.
func (im *Image) PageHeight() int { return im.Height() / im.Pages }

// Bands is the number of bands.
func (im *Image) Bands() int {
	defer runtime.KeepAlive(im)
	return int(C.vips_image_get_bands(im.im))
}

// HasAlpha reports whether the last band is alpha.
func (im *Image) HasAlpha() bool {
	defer runtime.KeepAlive(im)
	return C.vips_image_hasalpha(im.im) != 0
}

// Header describes the image as it stands (Format and Loader empty).
func (im *Image) Header() Header {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var h C.qf_header
	C.qf_image_header(im.im, &h)
	return headerFrom(&h)
}

// Interpretation is the vips nick of the colour interpretation ("srgb").
func (im *Image) Interpretation() string {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	return C.GoString(C.vips_enum_nick(C.vips_interpretation_get_type(), C.int(C.vips_image_get_interpretation(im.im))))
}

// Orientation is the EXIF orientation (1..8), 0 when absent.
func (im *Image) Orientation() int {
	v, _ := im.Int("orientation")
	return v
}

// Int returns an integer metadata field.
func (im *Image) Int(name string) (int, bool) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	var v C.int
	if C.qf_get_int(im.im, cs, &v) != 0 {
		return 0, false
	}
	return int(v), true
}

// String returns any metadata field as a string (vips_image_get_as_string).
func (im *Image) String(name string) (string, bool) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	s := C.qf_get_as_string(im.im, cs)
	if s == nil {
		return "", false
	}
	defer C.g_free(C.gpointer(s))
	return C.GoString(s), true
}

// Blob returns a copy of a blob metadata field.
func (im *Image) Blob(name string) ([]byte, bool) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	var p unsafe.Pointer
	var n C.size_t
	if C.qf_get_blob(im.im, cs, &p, &n) != 0 {
		return nil, false
	}
	return C.GoBytes(p, C.int(n)), true
}

// Exif returns the raw EXIF block ("Exif\0\0" + TIFF), if any.
func (im *Image) Exif() ([]byte, bool) { return im.Blob("exif-data") }

func (im *Image) result(op string, rc C.int, out *C.VipsImage) (*Image, error) {
	runtime.KeepAlive(im)
	if rc != 0 {
		return nil, lastError(op)
	}
	return im.derive(out), nil
}

// CopyMemory renders the image into memory, giving random access.
func (im *Image) CopyMemory() (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var out *C.VipsImage
	r, err := im.result("copy_memory", C.qf_copy_memory(im.im, &out), out)
	if r != nil {
		r.Seq = false
	}
	return r, err
}

func (im *Image) withRandom(op string, f func(in *C.VipsImage, out **C.VipsImage) C.int) (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	in := im
	if im.Seq {
		m, err := im.CopyMemory()
		if err != nil {
			return nil, err
		}
		defer m.Close()
		in = m
	}
	var out *C.VipsImage
	if f(in.im, &out) != 0 {
		return nil, lastError(op)
	}
	r := in.derive(out)
	return r, nil
}

// AutoRotate applies the EXIF orientation and removes the tag.
func (im *Image) AutoRotate() (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	if o := im.Orientation(); o <= 1 || o > 8 {
		return im.derive(im.ref()), nil
	}
	return im.withRandom("autorot", func(in *C.VipsImage, out **C.VipsImage) C.int {
		return C.qf_autorot(in, out)
	})
}

// ref adds a reference to the underlying VipsImage.
func (im *Image) ref() *C.VipsImage {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	C.g_object_ref(C.gpointer(im.im))
	return im.im
}

// Angle is a multiple of 90 degrees, clockwise.
type Angle int

// Right angles.
const (
	D90  Angle = C.VIPS_ANGLE_D90
	D180 Angle = C.VIPS_ANGLE_D180
	D270 Angle = C.VIPS_ANGLE_D270
)

// Rot rotates by a right angle, clockwise.
func (im *Image) Rot(a Angle) (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	return im.withRandom("rot", func(in *C.VipsImage, out **C.VipsImage) C.int {
		return C.qf_rot(in, out, C.int(a))
	})
}

// Rotate rotates clockwise by any angle; the new corners are filled with bg
// (one value per band). The output is the bounding box of the result.
func (im *Image) Rotate(degrees float64, bg []float64) (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	if len(bg) == 0 {
		bg = []float64{0}
	}
	cbg := (*C.double)(C.malloc(C.size_t(len(bg)) * C.size_t(unsafe.Sizeof(C.double(0)))))
	defer C.free(unsafe.Pointer(cbg))
	s := unsafe.Slice(cbg, len(bg))
	for i, v := range bg {
		s[i] = C.double(v)
	}
	return im.withRandom("rotate", func(in *C.VipsImage, out **C.VipsImage) C.int {
		return C.qf_rotate(in, out, C.double(degrees), cbg, C.int(len(bg)))
	})
}

// ExtractArea crops a rectangle.
func (im *Image) ExtractArea(left, top, width, height int) (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var out *C.VipsImage
	r, err := im.result("extract_area", C.qf_extract_area(im.im, &out, C.int(left), C.int(top), C.int(width), C.int(height)), out)
	if r != nil {
		r.Pages = 1
	}
	return r, err
}

// ExtractBands keeps n bands starting at band.
func (im *Image) ExtractBands(band, n int) (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var out *C.VipsImage
	return im.result("extract_band", C.qf_extract_band(im.im, &out, C.int(band), C.int(n)), out)
}

// Resize scales by hscale horizontally and vscale vertically (lanczos3).
func (im *Image) Resize(hscale, vscale float64) (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var out *C.VipsImage
	return im.result("resize", C.qf_resize(im.im, &out, C.double(hscale), C.double(vscale)), out)
}

// GaussBlur blurs with a gaussian of the given sigma.
func (im *Image) GaussBlur(sigma float64) (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var out *C.VipsImage
	return im.result("gaussblur", C.qf_gaussblur(im.im, &out, C.double(sigma)), out)
}

// FlattenWhite composes the alpha band onto white and drops it.
func (im *Image) FlattenWhite() (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	if !im.HasAlpha() {
		return im.derive(im.ref()), nil
	}
	var out *C.VipsImage
	return im.result("flatten", C.qf_flatten_white(im.im, &out), out)
}

// SRGB converts to the sRGB colour space (8 bits per band).
func (im *Image) SRGB() (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var out *C.VipsImage
	r, err := im.result("colourspace", C.qf_colourspace_srgb(im.im, &out), out)
	if err != nil || r.Header().BandFormat == "uchar" {
		return r, err
	}
	defer r.Close()
	return r.result("cast", C.qf_cast_uchar(r.im, &out), out)
}

// RemoveField returns a copy of the image without one metadata field.
func (im *Image) RemoveField(name string) (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	var out *C.VipsImage
	return im.result("copy", C.qf_copy_remove(im.im, &out, cs), out)
}

// SetPages returns a copy whose page-height splits it into n frames.
func (im *Image) SetPages(n int) (*Image, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	if n < 1 || im.Height()%n != 0 {
		return nil, fmt.Errorf("vips: height %d is not %d frames", im.Height(), n)
	}
	var out *C.VipsImage
	r, err := im.result("copy", C.qf_copy_set_page_height(im.im, &out, C.int(im.Height()/n)), out)
	if r != nil {
		r.Pages = n
	}
	return r, err
}

// JoinFrames stacks images of equal size vertically into one multi-page
// image (page-height = their height).
func JoinFrames(frames []*Image) (*Image, error) {
	if len(frames) == 0 {
		return nil, errors.New("vips: no frames")
	}
	// The result keeps the first frame's input alive, so all frames must
	// come from that input.
	for _, f := range frames[1:] {
		if f.src != frames[0].src {
			return nil, errors.New("vips: frames from different sources")
		}
	}
	arr := (**C.VipsImage)(C.malloc(C.size_t(len(frames)) * C.size_t(unsafe.Sizeof(uintptr(0)))))
	defer C.free(unsafe.Pointer(arr))
	s := unsafe.Slice(arr, len(frames))
	for i, f := range frames {
		s[i] = f.im
	}
	var out *C.VipsImage
	if C.qf_arrayjoin_vertical(arr, C.int(len(frames)), &out) != 0 {
		return nil, lastError("arrayjoin")
	}
	j := frames[0].derive(out)
	defer j.Close()
	j.Pages = 1
	return j.SetPages(len(frames))
}

// Average returns the mean of each band.
func (im *Image) Average() ([]float64, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	n := im.Bands()
	out := make([]C.double, n)
	if C.qf_band_means(im.im, &out[0], C.int(n)) != 0 {
		return nil, lastError("stats")
	}
	r := make([]float64, n)
	for i, v := range out {
		r[i] = float64(v)
	}
	return r, nil
}

// JPEGOptions control SaveJPEG.
type JPEGOptions struct {
	Quality        int // 1..100
	Interlace      bool
	Strip          bool
	OptimizeCoding bool
}

// PNGOptions control SavePNG.
type PNGOptions struct {
	Interlace   bool
	Strip       bool
	Compression int // 0..9; 0 means the default 6
}

// WebPOptions control SaveWebP.
type WebPOptions struct {
	Quality  int
	Lossless bool
	Strip    bool
}

func (im *Image) saved(op string, rc C.int, buf unsafe.Pointer, n C.size_t) ([]byte, error) {
	runtime.KeepAlive(im)
	if rc != 0 {
		return nil, lastError(op)
	}
	defer C.g_free(C.gpointer(buf))
	return C.GoBytes(buf, C.int(n)), nil
}

// SaveJPEG encodes as JPEG.
func (im *Image) SaveJPEG(o JPEGOptions) ([]byte, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var buf unsafe.Pointer
	var n C.size_t
	rc := C.qf_jpegsave(im.im, &buf, &n, C.int(o.Quality), cbool(o.Interlace), cbool(o.Strip), cbool(o.OptimizeCoding))
	return im.saved("jpegsave", rc, buf, n)
}

// SavePNG encodes as PNG.
func (im *Image) SavePNG(o PNGOptions) ([]byte, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	c := o.Compression
	if c <= 0 || c > 9 {
		c = 6
	}
	var buf unsafe.Pointer
	var n C.size_t
	rc := C.qf_pngsave(im.im, &buf, &n, cbool(o.Interlace), cbool(o.Strip), C.int(c))
	return im.saved("pngsave", rc, buf, n)
}

// SaveWebP encodes as WebP (animated when the image has several pages).
func (im *Image) SaveWebP(o WebPOptions) ([]byte, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var buf unsafe.Pointer
	var n C.size_t
	rc := C.qf_webpsave(im.im, &buf, &n, C.int(o.Quality), cbool(o.Lossless), cbool(o.Strip))
	return im.saved("webpsave", rc, buf, n)
}

// SaveGIF encodes as GIF with cgif (animated when the image has pages).
func (im *Image) SaveGIF(strip bool) ([]byte, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var buf unsafe.Pointer
	var n C.size_t
	rc := C.qf_gifsave(im.im, &buf, &n, cbool(strip))
	return im.saved("gifsave", rc, buf, n)
}

// SaveTIFF encodes as TIFF.
func (im *Image) SaveTIFF(strip bool) ([]byte, error) {
	defer runtime.KeepAlive(im) // C may still read im.im: no finalizer before return
	var buf unsafe.Pointer
	var n C.size_t
	rc := C.qf_tiffsave(im.im, &buf, &n, cbool(strip))
	return im.saved("tiffsave", rc, buf, n)
}
