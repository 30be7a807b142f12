package image

// watermark draws images and text onto an image (qiniu-compat.md §5.4):
//
//	watermark/1/image/<b64 URL>/dissolve/<1-100>/gravity/<G>/dx/<px>/dy/<px>/ws/<0-1>
//	watermark/2/text/<b64>/font/<b64>/fontsize/<twips>/fill/<b64 colour>/dissolve/.../gravity/.../dx/.../dy/...
//	watermark/3/image/<b64 URL>/.../text/<b64>/...   several, drawn in the order given
//
// The watermarks are placed on the image as displayed (EXIF orientation
// applied first), the ImageMagick way Qiniu follows: gravity picks the
// corner, edge or centre, dx/dy move the mark inward from the edges it
// touches (and right/down from a centre). An animated input gives a still
// image of its first frame, as imageMogr2 does. The output has the input's
// format and, for a JPEG, its estimated quality.
//
// A watermark image is an object of the platform's own storage, read
// through Config.Objects: the gateway never fetches a URL from the
// network. Its bytes count with the input's against MaxSrcBytes, and it
// passes the same source limits.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image/vips"
	"github.com/qufop/qufop/storage"
)

func init() { commands["watermark"] = func(x *Image) fop.Processor { return &Watermark{x} } }

// Watermark is the watermark command.
type Watermark struct{ x *Image }

// Version reports the image commands' version (fop.Versioner).
func (c *Watermark) Version() string { return c.x.Version() }

const (
	// DefaultFont is the family of text watermarks without font/: a 黑体
	// (sans serif) with CJK glyphs, as Qiniu's default 黑体 is. It comes
	// from Debian's fonts-wqy-microhei.
	DefaultFont = "WenQuanYi Micro Hei"
	// defaultTwips is Qiniu's default fontsize: 240 twips, 12 pt, which is
	// 12 px at the 72 dpi Qiniu's documentation takes as reference.
	defaultTwips = 240
	maxTwips     = 20000 // 1000 px
	textDPI      = 72
	maxMarks     = 20
	maxTextBytes = 1024
	maxFontBytes = 128
)

type markKind int

const (
	markImage markKind = iota
	markText
)

func (k markKind) String() string {
	if k == markText {
		return "text"
	}
	return "image"
}

// mark is one watermark.
type mark struct {
	kind markKind
	// image: where it is stored, and its scale against the base's short
	// edge (0: as it is).
	url         string
	bucket, key string
	ws          float64
	// text
	text  string
	font  string
	twips int
	fill  Colour
	// both
	dissolve int
	grav     gravity
	dx, dy   int
}

func newMark(k markKind) mark {
	return mark{kind: k, font: DefaultFont, twips: defaultTwips, fill: Colour{0, 0, 0, 255}, dissolve: 100, grav: southEast, dx: 10, dy: 10}
}

// markParams are the parameters of each kind of watermark, besides the
// image or text parameter that starts it.
var markParams = map[markKind]map[string]bool{
	markImage: {"dissolve": true, "gravity": true, "dx": true, "dy": true, "ws": true},
	markText:  {"font": true, "fontsize": true, "fill": true, "dissolve": true, "gravity": true, "dx": true, "dy": true},
}

// parse reads the mode and the watermarks. In modes 1 and 2 the parameters
// may come in any order; in mode 3 each image/ or text/ starts a watermark
// and the parameters after it, up to the next one, are its own.
func (c *Watermark) parse(cmd fop.Cmd) ([]mark, error) {
	args := cmd.Args
	if len(args) == 0 {
		return nil, cmd.Errorf("watermark needs a mode: 1 (image), 2 (text) or 3 (several)")
	}
	mode := args[0]
	if mode != "1" && mode != "2" && mode != "3" {
		return nil, cmd.Errorf("unknown watermark mode %q: want 1 (image), 2 (text) or 3 (several)", mode)
	}
	args = args[1:]
	var marks []mark
	var seen map[string]bool
	for i := 0; i < len(args); i += 2 {
		name := args[i]
		if i+1 >= len(args) {
			return nil, cmd.Errorf("parameter %q needs a value", name)
		}
		v := args[i+1]
		switch {
		case mode == "3" && (name == "image" || name == "text"):
			if len(marks) == maxMarks {
				return nil, cmd.Errorf("watermark/3 takes at most %d watermarks", maxMarks)
			}
			k := markImage
			if name == "text" {
				k = markText
			}
			marks, seen = append(marks, newMark(k)), map[string]bool{}
		case mode == "3" && len(marks) == 0:
			return nil, cmd.Errorf("watermark/3: parameter %q comes before the first image or text", name)
		case mode != "3" && len(marks) == 0:
			k := markImage
			if mode == "2" {
				k = markText
			}
			marks, seen = append(marks, newMark(k)), map[string]bool{}
		}
		m := &marks[len(marks)-1]
		if seen[name] {
			return nil, cmd.Errorf("parameter %q given twice for one watermark", name)
		}
		seen[name] = true
		if err := c.set(cmd, m, name, v); err != nil {
			return nil, err
		}
	}
	switch {
	case mode == "1" && (len(marks) == 0 || marks[0].url == ""):
		return nil, cmd.Errorf("watermark/1 needs image/<URL-safe base64 of the image's URL>")
	case mode == "2" && (len(marks) == 0 || marks[0].text == ""):
		return nil, cmd.Errorf("watermark/2 needs text/<URL-safe base64 of the text>")
	case mode == "3" && len(marks) == 0:
		return nil, cmd.Errorf("watermark/3 needs at least one image/<...> or text/<...>")
	}
	return marks, nil
}

// set applies one parameter to m.
func (c *Watermark) set(cmd fop.Cmd, m *mark, name, v string) error {
	starts := (name == "image" && m.kind == markImage) || (name == "text" && m.kind == markText)
	if !starts && !markParams[m.kind][name] {
		if markParams[markImage][name] || markParams[markText][name] || name == "image" || name == "text" {
			return cmd.Errorf("parameter %q does not apply to %s watermarks", name, m.kind)
		}
		return cmd.Errorf("unknown parameter %q", name)
	}
	var err error
	switch name {
	case "image":
		m.url, m.bucket, m.key, err = parseImageURL(v)
		if err != nil {
			return cmd.Errorf("image: %v", err)
		}
	case "ws":
		f, perr := strconv.ParseFloat(v, 64)
		if perr != nil || !(f >= 0 && f <= 1) {
			return cmd.Errorf("ws must be a number in 0..1 (0: no scaling), got %q", v)
		}
		m.ws = f
	case "text":
		b, derr := fop.DecodeBase64(v)
		switch {
		case derr != nil:
			return cmd.Errorf("text: %v", derr)
		case len(b) == 0:
			return cmd.Errorf("text is empty")
		case len(b) > maxTextBytes:
			return cmd.Errorf("text is %d bytes, over the %d-byte limit", len(b), maxTextBytes)
		case !utf8.Valid(b):
			return cmd.Errorf("text is not UTF-8")
		}
		m.text = string(b)
	case "font":
		b, derr := fop.DecodeBase64(v)
		switch {
		case derr != nil:
			return cmd.Errorf("font: %v", derr)
		case len(b) == 0 || len(b) > maxFontBytes || !utf8.Valid(b) || strings.IndexFunc(string(b), unicode.IsControl) >= 0:
			return cmd.Errorf("font must be a font family name of 1..%d UTF-8 bytes without control characters", maxFontBytes)
		}
		m.font = string(b)
	case "fontsize":
		if m.twips, err = cmd.Int("fontsize", v, 0, maxTwips); err != nil {
			return err
		}
		if m.twips == 0 {
			m.twips = defaultTwips
		}
	case "fill":
		if m.fill, err = ParseColour(v); err != nil {
			return cmd.Errorf("fill: %v", err)
		}
	case "dissolve":
		if m.dissolve, err = cmd.Int("dissolve", v, 1, 100); err != nil {
			return err
		}
	case "gravity":
		g, ok := parseGravity(v)
		if !ok {
			return cmd.Errorf("unknown gravity %q: want NorthWest, North, NorthEast, West, Center, East, SouthWest, South or SouthEast", v)
		}
		m.grav = g
	case "dx", "dy":
		n, ierr := cmd.Int(name, v, -c.x.cfg.MaxOutSide, c.x.cfg.MaxOutSide)
		if ierr != nil {
			return ierr
		}
		if name == "dx" {
			m.dx = n
		} else {
			m.dy = n
		}
	}
	if m.kind == markText && m.text != "" {
		// The text is rendered whole before it is clipped to the image:
		// bound its width (about one em a character) so that a long text
		// in a large size cannot take gigabytes.
		if n, px := utf8.RuneCountInString(m.text), m.twips/20; n*px > 2*c.x.cfg.MaxOutSide {
			return cmd.Errorf("text too wide: %d characters at fontsize %d (%d px) exceed %d px", n, m.twips, px, 2*c.x.cfg.MaxOutSide)
		}
	}
	return nil
}

// parseImageURL decodes image/'s value: the URL-safe base64 of
// http(s)://<host>/<bucket>/<key>, a URL of an object of a bucket the
// gateway serves. The host is not looked at: whatever the URL names, the
// object is read from storage.
func parseImageURL(v string) (raw, bucket, key string, err error) {
	b, err := fop.DecodeBase64(v)
	if err != nil {
		return "", "", "", err
	}
	raw = string(b)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", "", "", fmt.Errorf("%q is not an http(s)://<host>/<bucket>/<key> URL", raw)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", "", "", fmt.Errorf("%q: a query or fragment (processing the watermark image) is not supported", raw)
	}
	bucket, key, _ = strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if !storage.ValidBucketName(bucket) {
		return "", "", "", fmt.Errorf("%q does not name a bucket: want http(s)://<host>/<bucket>/<key>", raw)
	}
	if err := storage.CheckKey(key); err != nil {
		return "", "", "", fmt.Errorf("%q: bad key: %v", raw, errs.Public(err))
	}
	return raw, bucket, key, nil
}

// Validate checks the parameters.
func (c *Watermark) Validate(cmd fop.Cmd) error {
	_, err := c.parse(cmd)
	return err
}

// Process draws the watermarks. The watermark images are read before the
// worker's OS thread is locked for libvips (run): that is I/O.
func (c *Watermark) Process(ctx context.Context, cmd fop.Cmd, in fop.Blob) (fop.Blob, error) {
	marks, err := c.parse(cmd)
	if err != nil {
		return fop.Blob{}, err
	}
	imgs, err := c.x.readMarks(ctx, marks, in)
	if err != nil {
		return fop.Blob{}, err
	}
	return run(ctx, in.Data, func() (fop.Blob, error) { return c.x.watermark(marks, imgs, in) })
}

// readMarks reads each watermark image once, within what the input leaves
// of MaxSrcBytes.
func (x *Image) readMarks(ctx context.Context, marks []mark, in fop.Blob) (map[string][]byte, error) {
	imgs := map[string][]byte{}
	left := x.cfg.MaxSrcBytes - int64(len(in.Data))
	for _, m := range marks {
		id := m.bucket + "/" + m.key
		if m.kind != markImage || imgs[id] != nil {
			continue
		}
		if x.cfg.Objects == nil {
			return nil, errs.BadRequest("watermark image %q: this server reads no stored objects", m.url)
		}
		if left <= 0 {
			return nil, errs.BadRequest("watermark image %q: the input and watermark images are over the %d-byte source limit", m.url, x.cfg.MaxSrcBytes)
		}
		b, err := x.cfg.Objects.ReadObject(ctx, in.Bucket, m.bucket, m.key, left)
		switch errs.Status(err) {
		case 200:
		case storage.StatusNoSuchBucket:
			return nil, errs.Wrap(400, err, "watermark image %q: no bucket %q", m.url, m.bucket)
		case 404:
			return nil, errs.Wrap(400, err, "watermark image %q: no object %q in bucket %q", m.url, m.key, m.bucket)
		case 400:
			return nil, errs.Wrap(400, err, "watermark image %q: %s", m.url, errs.Public(err))
		default:
			return nil, err
		}
		if len(b) == 0 {
			return nil, errs.BadRequest("watermark image %q is empty", m.url)
		}
		imgs[id] = b
		left -= int64(len(b))
	}
	return imgs, nil
}

func (x *Image) watermark(marks []mark, imgs map[string][]byte, in fop.Blob) (fop.Blob, error) {
	src, err := x.open(in, true)
	if err != nil {
		return fop.Blob{}, err
	}
	if err := x.checkOut(src.w, src.h); err != nil {
		return fop.Blob{}, err
	}
	im, err := vips.Load(src.data, vips.LoadOptions{Sequential: true, FailOnTruncated: true})
	if err != nil {
		return fop.Blob{}, failed(err)
	}
	defer func() { im.Close() }()
	step := func(next *vips.Image, err error) error {
		if err != nil {
			return failed(err)
		}
		im.Close()
		im = next
		return nil
	}
	if err := step(im.AutoRotate()); err != nil {
		return fop.Blob{}, err
	}
	alpha := im.HasAlpha()
	if h := im.Header(); h.Interpretation != "srgb" || h.BandFormat != "uchar" {
		// Composite in 8-bit sRGB: a colour mark on a grey, CMYK or
		// 16-bit input gives an 8-bit sRGB result.
		if err := step(im.SRGB()); err != nil {
			return fop.Blob{}, err
		}
	}
	for _, m := range marks {
		var over *overlay
		if m.kind == markImage {
			over, err = x.imageMark(m, imgs[m.bucket+"/"+m.key], im.Width(), im.Height())
		} else {
			over, err = textMark(m, im.Width(), im.Height())
		}
		if err != nil {
			return fop.Blob{}, err
		}
		if over == nil {
			continue // entirely outside the image
		}
		l, t := over.offsetX, over.offsetY
		err = step(im.Composite(over.im, l, t))
		over.im.Close()
		if err != nil {
			return fop.Blob{}, err
		}
	}
	if !alpha && im.HasAlpha() {
		if err := step(im.ExtractBands(0, im.Bands()-1)); err != nil {
			return fop.Blob{}, err
		}
	}
	// The input's format and, for a JPEG, its quality (as ImageMagick,
	// which Qiniu's watermark follows, writes a JPEG it read): drawing a
	// logo should not cost a photograph its quality.
	o := output{format: defaultFormat(src.hdr.Format), quality: x.cfg.DefaultQuality}
	if q := EstimateJPEGQuality(in.Data); src.hdr.Format == "jpeg" && q >= 1 && q <= 100 {
		o.quality = q
	}
	b, err := encode(im, o)
	if err != nil {
		return fop.Blob{}, failed(err)
	}
	return fop.Blob{Data: b, MIME: mimes[o.format], Derived: true}, nil
}

// overlay is a watermark ready to draw at offsetX, offsetY.
type overlay struct {
	im               *vips.Image
	offsetX, offsetY int
}

// markOrigin is where the top-left corner of a w×h mark goes on a W×H
// image: as cropGeom.rect places a crop box, ImageMagick's -gravity with
// -geometry +dx+dy.
func markOrigin(W, H, w, h int, g gravity, dx, dy int) (x, y int) {
	switch g {
	case north, center, south:
		x = (W-w)/2 + dx
	case northEast, east, southEast:
		x = W - w - dx
	default:
		x = dx
	}
	switch g {
	case west, center, east:
		y = (H-h)/2 + dy
	case southWest, south, southEast:
		y = H - h - dy
	default:
		y = dy
	}
	return x, y
}

// visible places a w×h mark on a W×H image and returns the part of it that
// falls on the image (in the mark's coordinates) and where that part goes;
// ok is false when none does. Only that part is rendered into memory.
func visible(W, H, w, h int, m mark) (l, t, vw, vh, x, y int, ok bool) {
	ox, oy := markOrigin(W, H, w, h, m.grav, m.dx, m.dy)
	x0, y0 := max(ox, 0), max(oy, 0)
	x1, y1 := min(ox+w, W), min(oy+h, H)
	if x1 <= x0 || y1 <= y0 {
		return 0, 0, 0, 0, 0, 0, false
	}
	return x0 - ox, y0 - oy, x1 - x0, y1 - y0, x0, y0, true
}

// imageMark loads a watermark image (first frame, displayed orientation),
// scales it by ws and cuts it to what falls on the W×H image.
func (x *Image) imageMark(m mark, data []byte, W, H int) (*overlay, error) {
	src, err := x.open(fop.Blob{Data: data}, true)
	if err != nil {
		return nil, errs.Wrap(400, err, "watermark image %q: %s", m.url, errs.Public(err))
	}
	im, err := vips.Load(src.data, vips.LoadOptions{Sequential: true, FailOnTruncated: true})
	if err != nil {
		return nil, markFailed(m, err)
	}
	defer func() { im.Close() }()
	step := func(next *vips.Image, err error) error {
		if err != nil {
			return markFailed(m, err)
		}
		im.Close()
		im = next
		return nil
	}
	if err := step(im.AutoRotate()); err != nil {
		return nil, err
	}
	if m.ws > 0 {
		w, h := im.Width(), im.Height()
		nw, nh := scaleShortEdge(w, h, max(1, int(math.Floor(m.ws*float64(min(W, H))+0.5))))
		if err := x.checkWork(nw, nh); err != nil {
			return nil, err
		}
		if nw != w || nh != h {
			if err := step(im.Resize(float64(nw)/float64(w), float64(nh)/float64(h))); err != nil {
				return nil, err
			}
		}
	}
	l, t, vw, vh, ox, oy, ok := visible(W, H, im.Width(), im.Height(), m)
	if !ok {
		return nil, nil
	}
	if l != 0 || t != 0 || vw != im.Width() || vh != im.Height() {
		if err := step(im.ExtractArea(l, t, vw, vh)); err != nil {
			return nil, err
		}
	}
	over, err := im.Overlay(float64(m.dissolve) / 100)
	if err != nil {
		return nil, markFailed(m, err)
	}
	return &overlay{im: over, offsetX: ox, offsetY: oy}, nil
}

// scaleShortEdge is the size of a w×h mark whose short edge becomes
// target px (Qiniu's ws: "the watermark keeps its aspect ratio and its
// short edge is scaled to the image's short edge × ws", that product
// rounded), the long edge rounded, at least 1.
func scaleShortEdge(w, h, target int) (int, int) {
	s := float64(target) / float64(min(w, h))
	return max(1, int(math.Floor(float64(w)*s+0.5))), max(1, int(math.Floor(float64(h)*s+0.5)))
}

// textMark renders a text watermark and cuts it to what falls on the W×H
// image.
func textMark(m mark, W, H int) (*overlay, error) {
	size := strconv.FormatFloat(float64(m.twips)/20, 'f', -1, 64)
	// "family, size": the comma ends the family list, so that words of a
	// family name ("Bold") are not read as a style. An unknown family
	// falls back as fontconfig matches it, and glyphs the font lacks come
	// from another font (Pango's fallback).
	mask, err := vips.Text(m.text, m.font+", "+size, textDPI)
	var ve *vips.Error
	if errors.As(err, &ve) && strings.Contains(ve.Msg, "no text to render") {
		return nil, nil // blanks only: no ink to draw
	}
	if err != nil {
		return nil, failed(err)
	}
	defer func() { mask.Close() }()
	l, t, vw, vh, ox, oy, ok := visible(W, H, mask.Width(), mask.Height(), m)
	if !ok {
		return nil, nil
	}
	if l != 0 || t != 0 || vw != mask.Width() || vh != mask.Height() {
		cut, err := mask.ExtractArea(l, t, vw, vh)
		if err != nil {
			return nil, failed(err)
		}
		mask.Close()
		mask = cut
	}
	// A fill with alpha (#RRGGBBAA) is as transparent as a dissolve.
	opacity := float64(m.dissolve) / 100 * float64(m.fill.A) / 255
	over, err := mask.TextOverlay(m.fill.R, m.fill.G, m.fill.B, opacity)
	if err != nil {
		return nil, failed(err)
	}
	return &overlay{im: over, offsetX: ox, offsetY: oy}, nil
}

// markFailed names the watermark image in a libvips failure.
func markFailed(m mark, err error) error {
	err = failed(err)
	if errs.Status(err) == 400 {
		return errs.Wrap(400, err, "watermark image %q: invalid or truncated image data", m.url)
	}
	return err
}
