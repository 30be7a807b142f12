package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"unicode"

	"github.com/rwcarlsen/goexif/exif"
	"github.com/rwcarlsen/goexif/tiff"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image/vips"
)

func noArgs(cmd fop.Cmd) error {
	if len(cmd.Args) > 0 {
		return cmd.Errorf("%s takes no parameters", cmd.Name)
	}
	return nil
}

func jsonBlob(v any) (fop.Blob, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return fop.Blob{}, errs.Failed(err, "encoding result")
	}
	return fop.Blob{Data: b, MIME: "application/json", NoStore: true, Derived: true}, nil
}

// ImageInfo is imageInfo: format, size and colour model from the header.
type ImageInfo struct{ x *Image }

// Validate checks that no parameters are given.
func (c *ImageInfo) Validate(cmd fop.Cmd) error { return noArgs(cmd) }

// InfoResult is the imageInfo JSON.
type InfoResult struct {
	Size        int    `json:"size"`
	Format      string `json:"format"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	ColorModel  string `json:"colorModel"`
	FrameNumber int    `json:"frameNumber,omitempty"`
	Orientation string `json:"orientation,omitempty"`
}

// orientations are the EXIF orientation names Qiniu reports.
var orientations = [...]string{"", "Top-left", "Top-right", "Bottom-right", "Bottom-left",
	"Left-top", "Right-top", "Right-bottom", "Left-bottom"}

// colorModel names the model Go's image package would decode the image to,
// as Qiniu does ("ycbcr" for a colour JPEG, "nrgba" for a PNG with alpha).
func colorModel(h vips.Header) string {
	deep := h.BandFormat == "ushort"
	switch {
	case h.Palette:
		return "palette"
	case h.Interpretation == "cmyk":
		return "cmyk"
	}
	switch h.Format {
	case "jpeg":
		if h.Bands == 1 {
			return "gray"
		}
		return "ycbcr"
	case "webp":
		if h.HasAlpha {
			return "nycbcra"
		}
		return "ycbcr"
	}
	switch {
	case h.Bands == 1 && deep:
		return "gray16"
	case h.Bands == 1:
		return "gray"
	case h.HasAlpha && deep:
		return "nrgba64"
	case h.HasAlpha:
		return "nrgba"
	case deep:
		return "rgba64"
	}
	return "rgba"
}

// Process runs imageInfo.
func (c *ImageInfo) Process(ctx context.Context, cmd fop.Cmd, in fop.Blob) (fop.Blob, error) {
	if err := noArgs(cmd); err != nil {
		return fop.Blob{}, err
	}
	src, err := c.x.open(in, false)
	if err != nil {
		return fop.Blob{}, err
	}
	h := src.hdr
	r := InfoResult{Size: len(in.Data), Format: h.Format, Width: h.Width, Height: h.Height, ColorModel: colorModel(h)}
	if h.Format == "gif" {
		r.FrameNumber = h.Pages
	}
	if h.Orientation > 1 && h.Orientation < len(orientations) {
		r.Orientation = orientations[h.Orientation]
	}
	return jsonBlob(r)
}

// Exif is exif: the EXIF tags of the stored object.
type Exif struct{ x *Image }

// Validate checks that no parameters are given.
func (c *Exif) Validate(cmd fop.Cmd) error { return noArgs(cmd) }

// ExifValue is one tag of the exif JSON.
type ExifValue struct {
	Type int    `json:"type"`
	Val  string `json:"val"`
}

// Process runs exif.
func (c *Exif) Process(ctx context.Context, cmd fop.Cmd, in fop.Blob) (fop.Blob, error) {
	if err := noArgs(cmd); err != nil {
		return fop.Blob{}, err
	}
	if in.Derived {
		return fop.Blob{}, errs.BadRequest("exif is not supported on processed images")
	}
	if _, err := c.x.open(in, false); err != nil {
		return fop.Blob{}, err
	}
	res, err := run(ctx, in.Data, func() (map[string]ExifValue, error) {
		im, err := vips.Load(in.Data, vips.LoadOptions{Sequential: true})
		if err != nil {
			return nil, failed(err)
		}
		defer im.Close()
		raw, ok := im.Exif()
		if !ok {
			return nil, errs.BadRequest("no exif data")
		}
		return decodeExif(raw)
	})
	if err != nil {
		return fop.Blob{}, err
	}
	return jsonBlob(res)
}

// decodeExif turns libvips' exif-data blob ("Exif\0\0" + TIFF) into the
// exif JSON map.
func decodeExif(raw []byte) (map[string]ExifValue, error) {
	raw = bytes.TrimPrefix(raw, []byte("Exif\x00\x00"))
	x, err := exif.Decode(bytes.NewReader(raw))
	if err != nil && x == nil {
		return nil, errs.Wrap(400, err, "no exif data")
	}
	out := map[string]ExifValue{}
	_ = x.Walk(walker(func(name exif.FieldName, t *tiff.Tag) error {
		out[string(name)] = ExifValue{Type: int(t.Type), Val: tagString(t)}
		return nil
	}))
	if len(out) == 0 {
		return nil, errs.BadRequest("no exif data")
	}
	return out, nil
}

type walker func(exif.FieldName, *tiff.Tag) error

func (w walker) Walk(n exif.FieldName, t *tiff.Tag) error { return w(n, t) }

// tagString formats a tag value: text as is, numbers and rationals joined
// by ", ", other binary data summarised.
func tagString(t *tiff.Tag) string {
	switch t.Format() {
	case tiff.StringVal:
		s, _ := t.StringVal()
		return strings.TrimRight(strings.TrimSpace(s), "\x00")
	case tiff.UndefVal:
		v := bytes.TrimRight(t.Val, "\x00")
		printable := len(v) > 0 && len(v) <= 256
		for _, r := range string(v) {
			if r > unicode.MaxASCII || !unicode.IsPrint(r) {
				printable = false
				break
			}
		}
		if printable {
			return string(v)
		}
		return fmt.Sprintf("%d bytes undefined data", len(t.Val))
	}
	n := int(t.Count)
	if n > 64 {
		return fmt.Sprintf("%d values", n)
	}
	parts := make([]string, 0, n)
	for i := 0; i < n; i++ {
		switch t.Format() {
		case tiff.RatVal:
			num, den, err := t.Rat2(i)
			if err == nil {
				parts = append(parts, fmt.Sprintf("%d/%d", num, den))
			}
		case tiff.IntVal:
			v, err := t.Int64(i)
			if err == nil {
				parts = append(parts, fmt.Sprint(v))
			}
		case tiff.FloatVal:
			v, err := t.Float(i)
			if err == nil {
				parts = append(parts, fmt.Sprint(v))
			}
		}
	}
	return strings.Join(parts, ", ")
}

// ImageAve is imageAve: the average colour.
type ImageAve struct{ x *Image }

// Validate checks that no parameters are given.
func (c *ImageAve) Validate(cmd fop.Cmd) error { return noArgs(cmd) }

// AveResult is the imageAve JSON.
type AveResult struct {
	RGB string `json:"RGB"`
}

// Process runs imageAve. The average is taken over a shrink-on-load
// thumbnail of at most 256×256 (box averages preserve the mean), in sRGB,
// ignoring alpha.
func (c *ImageAve) Process(ctx context.Context, cmd fop.Cmd, in fop.Blob) (fop.Blob, error) {
	if err := noArgs(cmd); err != nil {
		return fop.Blob{}, err
	}
	if _, err := c.x.open(in, true); err != nil {
		return fop.Blob{}, err
	}
	rgb, err := run(ctx, in.Data, func() (string, error) {
		im, err := vips.Thumbnail(in.Data, vips.ThumbnailOptions{Width: 256, Height: 256, Size: vips.SizeDown, FailOnTruncated: true})
		if err != nil {
			return "", failed(err)
		}
		defer im.Close()
		s, err := im.SRGB()
		if err != nil {
			return "", failed(err)
		}
		defer s.Close()
		avg, err := s.Average()
		if err != nil {
			return "", failed(err)
		}
		var c [3]int
		for i := range c {
			c[i] = int(math.Round(avg[min(i, len(avg)-1)]))
			c[i] = max(0, min(255, c[i]))
		}
		return fmt.Sprintf("0x%02x%02x%02x", c[0], c[1], c[2]), nil
	})
	if err != nil {
		return fop.Blob{}, err
	}
	return jsonBlob(AveResult{RGB: rgb})
}
