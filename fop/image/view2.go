package image

import (
	"context"
	"math"

	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image/vips"
)

// ImageView2 is imageView2/<mode>/w/<W>/h/<H>/format/<fmt>/interlace/<0|1>/q/<q>[!]/ignore-error/1.
type ImageView2 struct{ x *Image }

var view2Spec = fop.Spec{
	Positional: 1,
	Named: map[string]fop.Kind{
		"w": fop.Value, "h": fop.Value, "format": fop.Value, "interlace": fop.Value,
		"q": fop.Value, "ignore-error": fop.Value, "colors": fop.Value,
	},
}

type view2Params struct {
	mode, w, h int
	format     string // "" = the source format
	interlace  bool
	q          int
	qForced    bool
	ignore     bool
	colors     int // palette size of a PNG/GIF result, 0: not reduced
}

func (c *ImageView2) parse(cmd fop.Cmd) (view2Params, error) {
	p := view2Params{mode: -1, q: c.x.cfg.DefaultQuality}
	ps, err := cmd.Params(view2Spec)
	if err != nil {
		return p, err
	}
	for _, pr := range ps {
		switch pr.Name {
		case "":
			p.mode, err = cmd.Int("mode", pr.Value, 0, 5)
		case "w":
			p.w, err = cmd.Int("w", pr.Value, 1, c.x.cfg.MaxOutSide)
		case "h":
			p.h, err = cmd.Int("h", pr.Value, 1, c.x.cfg.MaxOutSide)
		case "format":
			p.format, err = parseFormat(cmd, pr.Value)
		case "interlace":
			p.interlace, err = parseBool(cmd, "interlace", pr.Value)
		case "q":
			p.q, p.qForced, err = parseQuality(cmd, "q", pr.Value)
		case "ignore-error":
			p.ignore, err = parseBool(cmd, "ignore-error", pr.Value)
		case "colors":
			p.colors, err = cmd.Int("colors", pr.Value, 2, 256)
		}
		if err != nil {
			return p, err
		}
	}
	if p.mode < 0 {
		return p, cmd.Errorf("mode (0-5) is required: imageView2/<mode>/...")
	}
	return p, nil
}

// Validate checks the parameters.
func (c *ImageView2) Validate(cmd fop.Cmd) error {
	_, err := c.parse(cmd)
	return err
}

// Process runs imageView2.
func (c *ImageView2) Process(ctx context.Context, cmd fop.Cmd, in fop.Blob) (fop.Blob, error) {
	p, err := c.parse(cmd)
	if err != nil {
		return fop.Blob{}, err
	}
	out, err := run(ctx, in.Data, func() (fop.Blob, error) { return c.x.view2(p, in) })
	return ignoreOr(in, p.ignore, out, err)
}

// viewPlan is the geometry of an imageView2 result: scale the (oriented)
// source to tw×th, then, for the crop modes, keep the centre cw×ch.
type viewPlan struct {
	tw, th int
	cw, ch int
}

// planView computes the imageView2 geometry of mode for an (oriented) sw×sh
// source; w or h is 0 when not given. It never enlarges.
func planView(mode, w, h, sw, sh int) viewPlan {
	fw, fh := float64(sw), float64(sh)
	inf := math.Inf(1)
	lim := func(v int) float64 {
		if v == 0 {
			return inf
		}
		return float64(v)
	}
	scaled := func(s float64) viewPlan {
		if s > 1 || math.IsInf(s, 1) {
			s = 1
		}
		tw, th := round(fw*s), round(fh*s)
		return viewPlan{tw, th, tw, th}
	}
	// one value given: the "min" modes use it for both.
	if mode == 1 || mode == 3 || mode == 4 || mode == 5 {
		if w == 0 {
			w = h
		}
		if h == 0 {
			h = w
		}
	}
	long, short := fw, fh
	if sh > sw {
		long, short = fh, fw
	}
	switch mode {
	case 0:
		return scaled(math.Min(lim(w)/long, lim(h)/short))
	case 2:
		return scaled(math.Min(lim(w)/fw, lim(h)/fh))
	case 3:
		return scaled(math.Max(float64(w)/fw, float64(h)/fh))
	case 4:
		return scaled(math.Max(float64(w)/long, float64(h)/short))
	case 1, 5:
		bw, bh := w, h
		if mode == 5 && sh > sw { // w is the long edge: a portrait box
			bw, bh = h, w
		}
		if w == 0 { // neither given: nothing to do
			return viewPlan{sw, sh, sw, sh}
		}
		s := math.Max(float64(bw)/fw, float64(bh)/fh)
		if s <= 1 {
			v := scaled(s)
			v.cw, v.ch = min(bw, v.tw), min(bh, v.th)
			return v
		}
		// Smaller than the box: no scaling, largest centre region with
		// the box's aspect ratio.
		k := math.Min(fw/float64(bw), fh/float64(bh))
		return viewPlan{sw, sh, min(sw, round(float64(bw)*k)), min(sh, round(float64(bh)*k))}
	}
	return viewPlan{sw, sh, sw, sh}
}

func (x *Image) view2(p view2Params, in fop.Blob) (fop.Blob, error) {
	src, err := x.open(in, true)
	if err != nil {
		return fop.Blob{}, err
	}
	plan := planView(p.mode, p.w, p.h, src.w, src.h)
	if err := x.checkOut(plan.cw, plan.ch); err != nil {
		return fop.Blob{}, err
	}
	o := output{format: p.format, interlace: p.interlace}
	if o.format == "" {
		o.format = defaultFormat(src.hdr.Format)
	}
	o.quality = p.q
	if src.hdr.Format == "jpeg" {
		o.quality = EffectiveQuality(p.q, p.qForced, EstimateJPEGQuality(in.Data), src.w, src.h, plan.cw, plan.ch)
	}
	// A derived image keeps no metadata (docs/processing-urls.md,
	// "Metadata"): it is upright and in sRGB, so neither the orientation
	// nor a colour profile is needed, and the source's EXIF (a camera's
	// 10 KB, its thumbnail, GPS) would outweigh a thumbnail's pixels.
	o.strip = true
	var im *vips.Image
	if src.hdr.Pages > 1 && animatedFormat(o.format) {
		im, err = vips.Thumbnail(in.Data, vips.ThumbnailOptions{
			Width: plan.tw, Height: plan.th, Size: vips.SizeForce,
			AllPages: true, FailOnTruncated: true,
		})
	} else {
		im, err = scaleStill(src, plan.tw, plan.th)
	}
	if err != nil {
		return fop.Blob{}, failed(err)
	}
	defer im.Close()
	if plan.cw != plan.tw || plan.ch != plan.th {
		c, err := cropFrames(im, (plan.tw-plan.cw)/2, (plan.th-plan.ch)/2, plan.cw, plan.ch)
		if err != nil {
			return fop.Blob{}, failed(err)
		}
		defer c.Close()
		im = c
	}
	b, err := encodeColors(im, o, p.colors)
	if err != nil {
		return fop.Blob{}, failed(err)
	}
	return fop.Blob{Data: b, MIME: mimes[o.format], Derived: true}, nil
}

// scaleStill decodes the first frame of src and scales it to tw×th
// upright: the JPEG decoded at the DCT scale that keeps it at least as
// large as needed, then a lanczos3 reduce (imgproxy's pipeline).
func scaleStill(src *source, tw, th int) (*vips.Image, error) {
	sw, sh := tw, th // the result as stored, before orientation
	if src.hdr.Swapped() {
		sw, sh = th, tw
	}
	jpeg := src.hdr.Format == "jpeg"
	return vips.Scale(src.data, vips.ScaleOptions{
		Width: sw, Height: sh, JPEG: jpeg,
		JPEGShrink:      vips.JPEGShrink(src.hdr.Width, src.hdr.Height, sw, sh),
		Orientation:     src.hdr.Orientation,
		FailOnTruncated: true,
	})
}
