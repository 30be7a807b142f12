package image

import (
	"bytes"
	"image/gif"
	"image/png"

	"github.com/qufop/qufop/fop/image/vips"
)

// colors/<n> (imageMogr2, imageView2): a PNG or GIF result with a palette of
// at most n colours (2..256). libvips 8.14 sets a palette's size by bit depth
// only (2, 4, 16 or 256 colours), so the image is quantised here with
// libimagequant, the quantiser libvips uses, and the indexed pixels are
// written by Go's encoders. Other output formats ignore colors, as in
// Qiniu's docs (palette size for GIF/PNG output). Such a result has no
// metadata and is not interlaced. An animated result keeps libvips' own GIF
// palettes (colors is not applied to frames).

// paletteDither is libvips' default dithering for palette output.
const paletteDither = 1.0

// encodeColors encodes im as encode does, but a still PNG or GIF with
// colors > 0 gets a palette of at most that many colours.
func encodeColors(im *vips.Image, o output, colors int) ([]byte, error) {
	if colors > 0 && (o.format == "png" || o.format == "gif") && im.Pages <= 1 {
		return encodePalette(im, o.format, colors)
	}
	return encode(im, o)
}

// encodePalette encodes the first frame of im as a PNG or GIF of at most n
// colours.
func encodePalette(im *vips.Image, format string, n int) ([]byte, error) {
	rgba, err := toRGBA(im)
	if err != nil {
		return nil, err
	}
	defer rgba.Close()
	p, err := rgba.Quantise(n, paletteDither)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if format == "gif" {
		err = gif.Encode(&buf, p, &gif.Options{NumColors: len(p.Palette)})
	} else {
		err = (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, p)
	}
	return buf.Bytes(), err
}

// toRGBA returns the first frame of im as 8-bit sRGB with alpha.
func toRGBA(im *vips.Image) (*vips.Image, error) {
	frame := im
	if im.Pages > 1 {
		f, err := im.ExtractArea(0, 0, im.Width(), im.PageHeight())
		if err != nil {
			return nil, err
		}
		defer f.Close()
		frame = f
	}
	s, err := frame.SRGB()
	if err != nil {
		return nil, err
	}
	if s.HasAlpha() {
		return s, nil
	}
	defer s.Close()
	return s.AddAlpha()
}
