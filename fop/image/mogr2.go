package image

import (
	"context"
	"math"
	"strconv"
	"strings"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image/vips"
)

// ImageMogr2 is imageMogr2: auto-orient, thumbnail, gravity, crop, rotate,
// blur, extent, border, sharpen (operations, run in the order written) and
// format, quality, interlace, strip, size-limit, colors, background,
// bordercolor, ignore-error (settings; the last one given wins).
type ImageMogr2 struct{ x *Image }

var mogr2Spec = fop.Spec{
	Named: map[string]fop.Kind{
		"auto-orient": fop.Flag, "strip": fop.Flag,
		"thumbnail": fop.Value, "gravity": fop.Value, "crop": fop.Value,
		"rotate": fop.Value, "blur": fop.Value, "format": fop.Value,
		"quality": fop.Value, "interlace": fop.Value, "ignore-error": fop.Value,
		"extent": fop.Value, "border": fop.Value, "sharpen": fop.Value,
		"size-limit": fop.Value, "colors": fop.Value, "background": fop.Value,
		"bordercolor": fop.Value,
	},
	Repeat: true,
}

type mogrKind int

const (
	opAutoOrient mogrKind = iota
	opThumbnail
	opGravity
	opCrop
	opRotate
	opBlur
	opExtent
	opBorder
	opSharpen
)

type mogrOp struct {
	kind    mogrKind
	thumb   thumbGeom
	crop    cropGeom
	gravity gravity
	degrees int
	sigma   float64
	// w, h: the canvas of extent, the border's sides; amount: sharpen's m2.
	w, h   int
	amount float64
}

type mogr2Params struct {
	ops       []mogrOp
	format    string
	q         int
	qForced   bool
	interlace bool
	strip     bool
	ignore    bool
	limit     sizeLimit
	colors    int     // 0: no palette reduction
	bg        *Colour // nil: white, or transparent where the image has alpha
	border    Colour
}

func (c *ImageMogr2) parse(cmd fop.Cmd) (mogr2Params, error) {
	p := mogr2Params{q: c.x.cfg.DefaultQuality, border: borderGrey}
	ps, err := cmd.Params(mogr2Spec)
	if err != nil {
		return p, err
	}
	for _, pr := range ps {
		switch pr.Name {
		case "auto-orient":
			p.ops = append(p.ops, mogrOp{kind: opAutoOrient})
		case "strip":
			p.strip = true
		case "thumbnail":
			g, err := parseThumbGeometry(pr.Value)
			if err != nil {
				return p, cmd.Errorf("thumbnail %q: %v", pr.Value, err)
			}
			p.ops = append(p.ops, mogrOp{kind: opThumbnail, thumb: g})
		case "gravity":
			g, ok := parseGravity(pr.Value)
			if !ok {
				return p, cmd.Errorf("unknown gravity %q", pr.Value)
			}
			p.ops = append(p.ops, mogrOp{kind: opGravity, gravity: g})
		case "crop":
			g, err := parseCropGeometry(pr.Value)
			if err != nil {
				return p, cmd.Errorf("crop %q: %v", pr.Value, err)
			}
			p.ops = append(p.ops, mogrOp{kind: opCrop, crop: g})
		case "rotate":
			d, err := cmd.Int("rotate", pr.Value, 1, 360)
			if err != nil {
				return p, err
			}
			p.ops = append(p.ops, mogrOp{kind: opRotate, degrees: d})
		case "blur":
			sigma, err := parseBlur(cmd, pr.Value)
			if err != nil {
				return p, err
			}
			p.ops = append(p.ops, mogrOp{kind: opBlur, sigma: sigma})
		case "format":
			if p.format, err = parseFormat(cmd, pr.Value); err != nil {
				return p, err
			}
		case "quality":
			if p.q, p.qForced, err = parseQuality(cmd, "quality", pr.Value); err != nil {
				return p, err
			}
		case "interlace":
			if p.interlace, err = parseBool(cmd, "interlace", pr.Value); err != nil {
				return p, err
			}
		case "ignore-error":
			if p.ignore, err = parseBool(cmd, "ignore-error", pr.Value); err != nil {
				return p, err
			}
		case "extent":
			w, h, err := parseSides(cmd, "extent", pr.Value, 1, c.x.cfg.MaxOutSide, false)
			if err != nil {
				return p, err
			}
			p.ops = append(p.ops, mogrOp{kind: opExtent, w: w, h: h})
		case "border":
			w, h, err := parseSides(cmd, "border", pr.Value, 0, c.x.cfg.MaxOutSide, true)
			if err != nil {
				return p, err
			}
			p.ops = append(p.ops, mogrOp{kind: opBorder, w: w, h: h})
		case "sharpen":
			n, err := cmd.Int("sharpen", pr.Value, 1, 300)
			if err != nil {
				return p, err
			}
			p.ops = append(p.ops, mogrOp{kind: opSharpen, amount: sharpenAmount(n)})
		case "size-limit":
			if p.limit, err = parseSizeLimit(cmd, pr.Value); err != nil {
				return p, err
			}
		case "colors":
			if p.colors, err = cmd.Int("colors", pr.Value, 2, 256); err != nil {
				return p, err
			}
		case "background", "bordercolor":
			col, err := ParseColour(pr.Value)
			if err != nil {
				return p, cmd.Errorf("%s: %v", pr.Name, err)
			}
			if pr.Name == "background" {
				p.bg = &col
			} else {
				p.border = col
			}
		}
	}
	return p, nil
}

// parseBlur parses "<radius>x<sigma>" (radius 1..50, sigma > 0) and returns
// the sigma used: min(sigma, radius), since ImageMagick truncates the kernel
// at the radius while libvips sizes it from sigma.
func parseBlur(cmd fop.Cmd, v string) (float64, error) {
	rs, ss, ok := strings.Cut(v, "x")
	if !ok {
		return 0, cmd.Errorf("blur must be <radius>x<sigma>, got %q", v)
	}
	r, err := cmd.Int("blur radius", rs, 1, 50)
	if err != nil {
		return 0, err
	}
	s, err := strconv.ParseFloat(ss, 64)
	if err != nil || !(s > 0) || math.IsInf(s, 0) {
		return 0, cmd.Errorf("blur sigma must be a number > 0, got %q", ss)
	}
	return math.Min(s, float64(r)), nil
}

// Validate checks the parameters.
func (c *ImageMogr2) Validate(cmd fop.Cmd) error {
	_, err := c.parse(cmd)
	return err
}

// Process runs imageMogr2.
func (c *ImageMogr2) Process(ctx context.Context, cmd fop.Cmd, in fop.Blob) (fop.Blob, error) {
	p, err := c.parse(cmd)
	if err != nil {
		return fop.Blob{}, err
	}
	out, err := run(ctx, in.Data, func() (fop.Blob, error) { return c.x.mogr2(ctx, p, in) })
	if err == nil && p.limit.orig && p.limit.keepOriginal(len(out.Data), len(in.Data)) {
		return in, nil
	}
	return ignoreOr(in, p.ignore, out, err)
}

func (x *Image) mogr2(ctx context.Context, p mogr2Params, in fop.Blob) (fop.Blob, error) {
	src, err := x.open(in, true)
	if err != nil {
		return fop.Blob{}, err
	}
	need, err := x.mogr2Plan(src, p.ops)
	if err != nil {
		return fop.Blob{}, err
	}
	release, err := x.budget.take(ctx, need, "imageMogr2")
	if err != nil {
		return fop.Blob{}, err
	}
	defer release()
	im, ops, err := x.mogr2Load(src, p.ops)
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
		return x.checkWork(im.Width(), im.Height())
	}
	grav := northWest
	for _, op := range ops {
		switch op.kind {
		case opAutoOrient:
			err = step(im.AutoRotate())
		case opThumbnail:
			w, h := im.Width(), im.Height()
			tw, th := op.thumb.target(w, h)
			if err = x.checkWork(tw, th); err == nil && (tw != w || th != h) {
				err = step(im.Resize(float64(tw)/float64(w), float64(th)/float64(h)))
			}
		case opGravity:
			grav = op.gravity
		case opCrop:
			l, t, cw, ch, ok := op.crop.rect(im.Width(), im.Height(), grav)
			if !ok {
				return fop.Blob{}, errs.BadRequest("crop area is outside the image (%dx%d)", im.Width(), im.Height())
			}
			if l != 0 || t != 0 || cw != im.Width() || ch != im.Height() {
				err = step(im.ExtractArea(l, t, cw, ch))
			}
		case opRotate:
			err = step(rotate(im, op.degrees, p.bg))
		case opBlur:
			err = step(im.GaussBlur(op.sigma))
		case opExtent:
			l, t := extentOffset(im.Width(), im.Height(), op.w, op.h, grav)
			err = step(embed(im, l, t, op.w, op.h, p.bgOr(white)))
		case opBorder:
			if op.w > 0 || op.h > 0 {
				err = step(embed(im, op.w, op.h, im.Width()+2*op.w, im.Height()+2*op.h, p.border))
			}
		case opSharpen:
			err = step(im.Sharpen(sharpenSigma, 0, op.amount))
		}
		if err != nil {
			return fop.Blob{}, err
		}
	}
	w, h := im.Width(), im.Height()
	if err := x.checkOut(w, h); err != nil {
		return fop.Blob{}, err
	}
	o := output{format: p.format, interlace: p.interlace, strip: p.strip, quality: p.q}
	if o.format == "" {
		o.format = defaultFormat(src.hdr.Format)
	}
	if src.hdr.Format == "jpeg" {
		o.quality = EffectiveQuality(p.q, p.qForced, EstimateJPEGQuality(in.Data), src.hdr.Width, src.hdr.Height, w, h)
	}
	if o.format == "jpeg" && im.HasAlpha() && p.bg != nil {
		// JPEG has no alpha: flatten onto the background asked for (encode
		// would use white).
		if err := step(im.Flatten(p.bg.flattenBands(im))); err != nil {
			return fop.Blob{}, err
		}
	}
	var b []byte
	switch {
	case p.limit.bytes > 0 && o.format == "jpeg":
		b, _, err = fitJPEG(im, o, p.limit.cap(len(in.Data)))
	default:
		b, err = encodeColors(im, o, p.colors)
	}
	if err != nil {
		return fop.Blob{}, failed(err)
	}
	return fop.Blob{Data: b, MIME: mimes[o.format], Derived: true}, nil
}

// sharpenSigma is the gaussian of sharpen: ImageMagick's usual 0x1 rather
// than libvips' 0.5, which is meant for screen-size images and hardly shows
// on a photograph.
const sharpenSigma = 1.0

// sharpenAmount maps sharpen/<n> to libvips' m2 (the slope of the
// sharpening on edges; flat areas are left alone, m1 0): 1 is the
// documented "sharpening on" of older Qiniu docs and means the recommended
// 70, which gives libvips' default 3; other values scale linearly, so 10 is
// 0.43 and 300 is 12.9.
func sharpenAmount(n int) float64 {
	if n == 1 {
		n = 70
	}
	return 3 * float64(n) / 70
}

// bgOr is the background colour asked for, or def.
func (p mogr2Params) bgOr(def Colour) Colour {
	if p.bg != nil {
		return *p.bg
	}
	return def
}

// mogr2Plan follows the sizes of the operations from the header and
// refuses an intermediate or output image over the limits before anything
// is decoded: a rotate/90 of a 12000x12000 PNG, refused after the decode
// for its 12000 px output, had first taken 150 MB for a 17 KB file. The
// run checks again on the real sizes; for an arbitrary angle the plan
// takes a size no larger than libvips' (the bounding box, rounded down
// less a pixel), so that it never refuses what the run would accept. A
// crop outside the image ends the plan: the run names that error.
//
// It returns the memory the whole-image operations need (the largest image
// one of them holds whole), for the budget.
func (x *Image) mogr2Plan(src *source, ops []mogrOp) (int64, error) {
	w, h := src.hdr.Width, src.hdr.Height
	oriented := false
	var need int64
	bpp := bytesPerPixel(src.hdr.Bands, src.hdr.BandFormat)
	whole := func() { need = max(need, wholeImageCopies*int64(w)*int64(h)*bpp) }
	grav := northWest
	for _, op := range ops {
		switch op.kind {
		case opAutoOrient:
			if !oriented {
				if src.hdr.Orientation > 1 {
					whole()
				}
				w, h, oriented = src.w, src.h, true
			}
		case opThumbnail:
			w, h = op.thumb.target(w, h)
		case opGravity:
			grav = op.gravity
		case opCrop:
			_, _, cw, ch, ok := op.crop.rect(w, h, grav)
			if !ok {
				return need, nil
			}
			w, h = cw, ch
		case opExtent:
			w, h = op.w, op.h
		case opBorder:
			w, h = w+2*op.w, h+2*op.h
		case opRotate:
			if op.degrees%360 != 0 {
				whole()
			}
			switch op.degrees % 360 {
			case 90, 270:
				w, h = h, w
			case 0, 180:
			default:
				a := float64(op.degrees) * math.Pi / 180
				c, s := math.Abs(math.Cos(a)), math.Abs(math.Sin(a))
				fw, fh := float64(w), float64(h)
				in := int64(w) * int64(h)
				w, h = max(1, int(fw*c+fh*s)-1), max(1, int(fw*s+fh*c)-1)
				// An arbitrary angle also renders its bounding box
				// (bench/memory.sh: 707 MB for two at once on 20 MP,
				// against 458 MB for rotate/90).
				need = max(need, (wholeImageCopies*in+int64(w)*int64(h))*bpp)
			}
		}
		if err := x.checkWork(w, h); err != nil {
			return 0, err
		}
	}
	return need, x.checkOut(w, h)
}

// mogr2Load decodes the input for imageMogr2. When the operations start
// with a shrinking thumbnail (after an optional auto-orient), that step is
// done by vips_thumbnail_buffer with shrink-on-load, and the operations left
// are returned; otherwise the first frame is loaded with sequential access.
func (x *Image) mogr2Load(src *source, ops []mogrOp) (*vips.Image, []mogrOp, error) {
	i, orient := 0, false
	if len(ops) > 0 && ops[0].kind == opAutoOrient {
		i, orient = 1, true
	}
	if i < len(ops) && ops[i].kind == opThumbnail {
		w, h := src.hdr.Width, src.hdr.Height
		if orient {
			w, h = src.w, src.h
		}
		if tw, th := ops[i].thumb.target(w, h); tw <= w && th <= h {
			im, err := thumbnailImage(src.data, vips.ThumbnailOptions{
				Width: tw, Height: th, Size: vips.SizeForce, NoRotate: !orient, FailOnTruncated: true,
			})
			return im, ops[i+1:], err
		}
	}
	im, err := loadImage(src.data, vips.LoadOptions{Sequential: true, FailOnTruncated: true})
	return im, ops, err
}

// The decoders of imageMogr2; variables so that tests can tell whether an
// input got that far.
var (
	loadImage      = vips.Load
	thumbnailImage = vips.Thumbnail
)

// rotate turns im clockwise; the corners of a non-right angle are bg, or
// without one white, or transparent when the image has alpha.
func rotate(im *vips.Image, degrees int, bg *Colour) (*vips.Image, error) {
	switch degrees % 360 {
	case 0:
		return im.ExtractArea(0, 0, im.Width(), im.Height())
	case 90:
		return im.Rot(vips.D90)
	case 180:
		return im.Rot(vips.D180)
	case 270:
		return im.Rot(vips.D270)
	}
	if bg != nil {
		c, err := bg.canvas(im)
		if err != nil {
			return nil, err
		}
		if c != im {
			defer c.Close()
		}
		return c.Rotate(float64(degrees), bg.bands(c))
	}
	bands := im.Bands()
	fill := make([]float64, bands)
	if !im.HasAlpha() && im.Interpretation() != "cmyk" {
		full := 255.0
		if f := im.Header().BandFormat; f == "ushort" {
			full = 65535
		}
		for i := range fill {
			fill[i] = full
		}
	}
	return im.Rotate(float64(degrees), fill)
}
