// Package image implements Qiniu's built-in image commands on libvips:
// imageView2, imageMogr2, imageInfo, exif and imageAve (qiniu-compat.md §5).
//
// Every command is a fop.Processor and a fop.Validator: Validate checks all
// parameters without input, Process checks them again, then checks the
// limits of Config from the image header (bytes, sides, pixels, frames)
// before any pixel is decoded, and the computed output size before anything
// is rendered. Parameter errors are fop ParseErrors (400); undecodable input
// and exceeded limits are 400; a libvips failure while processing is 599.
// With ignore-error/1, any failure after the parameters were accepted
// (limits, bad input, processing) returns the input unchanged with 200.
//
// imageView2 decodes and resizes in one step with vips_thumbnail_buffer
// (shrink-on-load): a JPEG is decoded at 1/2, 1/4 or 1/8 scale when the
// output is small enough. It auto-orients by EXIF first, so w and h refer to
// the displayed image. It never enlarges; for the crop modes (1 and 5) a
// source smaller than the crop box keeps its size and the centre crop takes
// the largest region with the box's aspect ratio (a 100×100 source and
// imageView2/1/w/200/h/100 give 100×50). Animated GIF/WebP keep all their
// frames when the output format is gif or webp (each frame is resized and
// cropped); for other output formats the first frame is used.
//
// imageMogr2 applies its operations in the order written and does not
// auto-orient unless asked. It works on the first frame of an animated
// GIF/WebP only: the result is a still image (in the requested format, gif by
// default for a GIF); the frame limit is still enforced. blur ignores the
// radius except as an upper bound of sigma (libvips sizes the kernel from
// sigma alone).
//
// Output sizes are computed by the package, not by libvips: a side scaled by
// s becomes floor(side*s+0.5), at least 1 (so 1920×1080 to width 200 gives
// 200×113).
package image

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image/vips"
)

// Image holds the configuration shared by the image commands.
type Image struct {
	cfg    Config
	budget *budget // of the whole-image operations
}

// New validates cfg and starts libvips.
func New(cfg Config) (*Image, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := vips.Startup(); err != nil {
		return nil, err
	}
	return &Image{cfg: cfg, budget: newBudget(cfg.WholeImageBudget)}, nil
}

// Config returns the configuration in use.
func (x *Image) Config() Config { return x.cfg }

// Register adds the image commands to r: imageView2, imageMogr2,
// imageInfo, exif, imageAve and those other files of the package add to
// commands.
func (x *Image) Register(r fop.Registry) {
	r["imageView2"] = &ImageView2{x}
	r["imageMogr2"] = &ImageMogr2{x}
	r["imageInfo"] = &ImageInfo{x}
	r["exif"] = &Exif{x}
	r["imageAve"] = &ImageAve{x}
	for name, mk := range commands {
		r[name] = mk(x)
	}
}

// commands are the commands a file of the package adds in its init, by
// name: each command lives in a file of its own, with its registration.
var commands = map[string]func(*Image) fop.Processor{}

// supported input formats (others are refused before decoding).
var inputFormats = map[string]bool{
	"jpeg": true, "png": true, "gif": true, "webp": true, "tiff": true, "heif": true,
}

// source is an input whose header was read and checked.
type source struct {
	data []byte
	hdr  vips.Header
	// w, h are the displayed size of one frame (EXIF orientation applied).
	w, h int
}

// probe reads a header with libvips; a variable so that tests can tell
// whether an input got that far.
var probe = vips.Probe

// open reads the header and checks the byte limit and, with pixels, the side,
// area and frame limits: those a JPEG, PNG or GIF container states are
// checked before libvips reads the input at all (see container), and a PNG
// cut before its IEND chunk is refused there too.
func (x *Image) open(in fop.Blob, pixels bool) (*source, error) {
	if int64(len(in.Data)) > x.cfg.MaxSrcBytes {
		return nil, errs.BadRequest("source image too large: %d bytes (limit %d)", len(in.Data), x.cfg.MaxSrcBytes)
	}
	c, cok := readContainer(in.Data)
	if cok && pixels {
		if err := x.checkSource(c.w, c.h, c.frames); err != nil {
			return nil, err
		}
		if c.truncated {
			return nil, errs.BadRequest("invalid or truncated image data: the PNG ends before its IEND chunk")
		}
	}
	hdr, err := vips.Header{}, error(nil)
	if h, ok := c.jpegHeader(); cok && ok {
		hdr = h
	} else {
		hdr, err = probe(in.Data)
	}
	if err != nil {
		if errors.Is(err, vips.ErrUnsupported) {
			return nil, errs.BadRequest("unsupported image format")
		}
		return nil, errs.Wrap(400, err, "invalid image data")
	}
	if !inputFormats[hdr.Format] {
		return nil, errs.BadRequest("unsupported image format %q", hdr.Format)
	}
	s := &source{data: in.Data, hdr: hdr, w: hdr.Width, h: hdr.Height}
	if hdr.Swapped() {
		s.w, s.h = s.h, s.w
	}
	if !pixels {
		return s, nil
	}
	if err := x.checkSource(hdr.Width, hdr.Height, hdr.Pages); err != nil {
		return nil, err
	}
	return s, nil
}

// jpegHeader is the header of a plain JPEG (grey or YCbCr, its EXIF
// orientation read) from its container, which open has already read:
// libvips' header read, which sets up a decompressor and parses the whole
// EXIF block into fields, was 4 % of imageView2's CPU on a camera JPEG,
// and the decode that follows reads the same header again anyway. Anything else (CMYK, an EXIF block
// this cannot read) goes through probe.
func (c container) jpegHeader() (vips.Header, bool) {
	if c.format != "jpeg" || !c.orientOK || (c.components != 1 && c.components != 3) || c.w < 1 || c.h < 1 {
		return vips.Header{}, false
	}
	interp := "srgb"
	if c.components == 1 {
		interp = "b-w"
	}
	return vips.Header{
		Format: "jpeg", Loader: "jpegload_buffer", Width: c.w, Height: c.h, Bands: c.components,
		Pages: 1, PageHeight: c.h, Orientation: c.orientation, Interpretation: interp, BandFormat: "uchar",
	}, true
}

// checkSource refuses a source over the side, area or frame limits.
func (x *Image) checkSource(w, h, frames int) error {
	if w > x.cfg.MaxSrcSide || h > x.cfg.MaxSrcSide {
		return errs.BadRequest("source image too large: %dx%d (limit %d px per side)", w, h, x.cfg.MaxSrcSide)
	}
	if w*h > x.cfg.MaxSrcPixels {
		return errs.BadRequest("source image too large: %dx%d (limit %d pixels)", w, h, x.cfg.MaxSrcPixels)
	}
	if frames > x.cfg.MaxGIFFrames {
		return errs.BadRequest("too many frames: %d (limit %d)", frames, x.cfg.MaxGIFFrames)
	}
	return nil
}

// checkOut refuses an output larger than the limits.
func (x *Image) checkOut(w, h int) error {
	if w > x.cfg.MaxOutSide || h > x.cfg.MaxOutSide {
		return errs.BadRequest("output image too large: %dx%d (limit %d px per side)", w, h, x.cfg.MaxOutSide)
	}
	if w*h > x.cfg.MaxOutPixels {
		return errs.BadRequest("output image too large: %dx%d (limit %d pixels)", w, h, x.cfg.MaxOutPixels)
	}
	return nil
}

// checkWork refuses an intermediate image beyond the source limits (an
// enlarging step followed by a crop).
func (x *Image) checkWork(w, h int) error {
	if w > x.cfg.MaxSrcSide || h > x.cfg.MaxSrcSide || w*h > x.cfg.MaxSrcPixels {
		return errs.BadRequest("intermediate image too large: %dx%d", w, h)
	}
	return nil
}

// inputErrorHints are fragments of libvips/loader messages that mean the
// input itself is bad (truncated, corrupt), not that processing failed.
var inputErrorHints = []string{
	"load", "premature end", "truncated", "corrupt", "invalid", "not a known", "read error",
	"bad huffman", "unexpected end", "out of order read", "damaged",
}

// failed classifies a libvips error: bad input is 400, the rest 599.
func failed(err error) error {
	var e *errs.Error
	if errors.As(err, &e) {
		return err
	}
	var pe *fop.ParseError
	if errors.As(err, &pe) {
		return err
	}
	var ve *vips.Error
	if errors.As(err, &ve) {
		msg := strings.ToLower(ve.Msg)
		for _, h := range inputErrorHints {
			if strings.Contains(msg, h) {
				return errs.Wrap(400, err, "invalid or truncated image data")
			}
		}
	}
	return errs.Failed(err, "image processing failed")
}

// run executes f on a locked OS thread and frees libvips' per-thread
// buffers afterwards, so a worker goroutine does not spread them over every
// thread of the runtime.
//
// A processing failure (599) of a JPEG with no EOI marker after its last
// scan is a 400: the input was cut. failed cannot always tell, as libvips
// keeps one error buffer for all threads: with calls failing at once, one
// reads the others' messages and another finds the buffer cleared (a third
// of truncated JPEGs came back 599 from 8 goroutines).
func run[T any](ctx context.Context, data []byte, f func() (T, error)) (T, error) {
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, errs.Wrap(errs.StatusProcessingFailed, err, "processing cancelled")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer vips.ThreadShutdown()
	v, err := f()
	if err != nil && errs.Status(err) == errs.StatusProcessingFailed && cutJPEG(data) {
		return v, errs.Wrap(400, err, "invalid or truncated image data")
	}
	return v, err
}

// formats: output format names accepted by format/<fmt>.
var formats = map[string]string{
	"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "webp": "webp", "gif": "gif",
	"tif": "tiff", "tiff": "tiff",
}

var mimes = map[string]string{
	"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif", "tiff": "image/tiff",
}

func parseFormat(cmd fop.Cmd, v string) (string, error) {
	f, ok := formats[strings.ToLower(v)]
	if !ok {
		return "", cmd.Errorf("unsupported format %q (jpg, png, webp, gif, tiff)", v)
	}
	return f, nil
}

// defaultFormat is the output format when none is asked: the source's, or
// jpeg for sources we read but do not write.
func defaultFormat(src string) string {
	if _, ok := mimes[src]; ok {
		return src
	}
	return "jpeg"
}

// animatedFormat reports whether the output format keeps frames.
func animatedFormat(f string) bool { return f == "gif" || f == "webp" }

// parseQuality parses "<1-100>[!]".
func parseQuality(cmd fop.Cmd, name, v string) (int, bool, error) {
	forced := strings.HasSuffix(v, "!")
	q, err := cmd.Int(name, strings.TrimSuffix(v, "!"), 1, 100)
	return q, forced, err
}

func parseBool(cmd fop.Cmd, name, v string) (bool, error) {
	switch v {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, cmd.Errorf("%s must be 0 or 1, got %q", name, v)
}

// EffectiveQuality applies Qiniu's quality rule: q when forced ('!') or when
// the source quality is unknown or above 90; otherwise
// min(q, min(90, srcQ*sqrt(srcPixels/dstPixels))).
func EffectiveQuality(q int, forced bool, srcQ, srcW, srcH, dstW, dstH int) int {
	if forced || srcQ <= 0 || srcQ > 90 || dstW <= 0 || dstH <= 0 {
		return q
	}
	corr := math.Min(90, float64(srcQ)*math.Sqrt(float64(srcW)*float64(srcH)/float64(dstW)/float64(dstH)))
	return max(1, min(q, int(math.Round(corr))))
}

// output says how a result is encoded.
type output struct {
	format    string
	quality   int
	interlace bool
	strip     bool
}

// encode saves im; formats that cannot hold frames get the first frame, jpeg
// gets transparency flattened onto white.
func encode(im *vips.Image, o output) ([]byte, error) {
	cur := im
	step := func(next *vips.Image, err error) error {
		if err != nil {
			return err
		}
		if cur != im {
			cur.Close()
		}
		cur = next
		return nil
	}
	defer func() {
		if cur != im {
			cur.Close()
		}
	}()
	if cur.Pages > 1 && !animatedFormat(o.format) {
		if err := step(cur.ExtractArea(0, 0, cur.Width(), cur.PageHeight())); err != nil {
			return nil, err
		}
	}
	// What is kept of the source's metadata never includes its EXIF
	// thumbnail (a preview of what a crop may have cut away) or its GPS
	// position (docs/processing-urls.md, "Metadata").
	if !o.strip {
		if _, ok := cur.Exif(); ok {
			if err := step(cur.DropPrivateExif()); err != nil {
				return nil, err
			}
		}
	}
	switch o.format {
	case "jpeg":
		if err := step(cur.FlattenWhite()); err != nil {
			return nil, err
		}
		return cur.SaveJPEG(vips.JPEGOptions{Quality: o.quality, Interlace: o.interlace, Strip: o.strip, OptimizeCoding: true})
	case "png":
		return cur.SavePNG(vips.PNGOptions{Interlace: o.interlace, Strip: o.strip})
	case "webp":
		return cur.SaveWebP(vips.WebPOptions{Quality: o.quality, Strip: o.strip})
	case "gif":
		return cur.SaveGIF(o.strip)
	case "tiff":
		return cur.SaveTIFF(o.strip)
	}
	return nil, fmt.Errorf("no encoder for %q", o.format)
}

// cropFrames crops every frame of im to the same rectangle.
func cropFrames(im *vips.Image, left, top, w, h int) (*vips.Image, error) {
	if im.Pages <= 1 {
		return im.ExtractArea(left, top, w, h)
	}
	ph := im.PageHeight()
	frames := make([]*vips.Image, 0, im.Pages)
	defer func() {
		for _, f := range frames {
			f.Close()
		}
	}()
	for i := 0; i < im.Pages; i++ {
		f, err := im.ExtractArea(left, i*ph+top, w, h)
		if err != nil {
			return nil, err
		}
		frames = append(frames, f)
	}
	return vips.JoinFrames(frames)
}

// ignoreOr returns the input unchanged when ignore-error/1 was given and the
// failure is not a parameter error.
func ignoreOr(in fop.Blob, ignore bool, out fop.Blob, err error) (fop.Blob, error) {
	if err == nil {
		return out, nil
	}
	var pe *fop.ParseError
	if ignore && !errors.As(err, &pe) {
		return in, nil
	}
	return fop.Blob{}, err
}
