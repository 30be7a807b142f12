package image

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/qufop/qufop/fop/image/vips"
)

// Colour is an 8-bit RGBA colour given in a URL (background, bordercolor).
type Colour struct{ R, G, B, A uint8 }

var (
	white = Colour{255, 255, 255, 255}
	// borderGrey is ImageMagick's default -bordercolor: Qiniu's docs name
	// no default and its imageMogr2 follows ImageMagick.
	borderGrey = Colour{0xDF, 0xDF, 0xDF, 255}
)

// colourNames are the colour names Qiniu's background documentation lists
// (transparent, none, white, black, red, orange, yellow, green, ...), with the
// CSS values.
var colourNames = map[string]Colour{
	"transparent": {0, 0, 0, 0}, "none": {0, 0, 0, 0},
	"white": {255, 255, 255, 255}, "black": {0, 0, 0, 255},
	"red": {255, 0, 0, 255}, "orange": {255, 165, 0, 255}, "yellow": {255, 255, 0, 255},
	"green": {0, 128, 0, 255}, "blue": {0, 0, 255, 255}, "purple": {128, 0, 128, 255},
	"gray": {128, 128, 128, 255}, "grey": {128, 128, 128, 255}, "pink": {255, 192, 203, 255},
	"brown": {165, 42, 42, 255}, "cyan": {0, 255, 255, 255}, "magenta": {255, 0, 255, 255},
}

// ParseColour decodes a colour parameter: the URL-safe base64 (padding
// optional) of "#RRGGBB", "#RRGGBBAA" or a colour name of colourNames.
func ParseColour(v string) (Colour, error) {
	raw, err := base64.URLEncoding.DecodeString(v)
	if err != nil {
		raw, err = base64.RawURLEncoding.DecodeString(v)
	}
	if err != nil || len(raw) == 0 {
		return Colour{}, fmt.Errorf("%q is not URL-safe base64", v)
	}
	s := strings.ToLower(strings.TrimSpace(string(raw)))
	if c, ok := colourNames[s]; ok {
		return c, nil
	}
	hex, ok := strings.CutPrefix(s, "#")
	if !ok || (len(hex) != 6 && len(hex) != 8) {
		return Colour{}, fmt.Errorf("%q (decoded %q) is not #RRGGBB, #RRGGBBAA or a colour name", v, s)
	}
	n, err := strconv.ParseUint(hex, 16, 32)
	if err != nil {
		return Colour{}, fmt.Errorf("%q (decoded %q) is not #RRGGBB, #RRGGBBAA or a colour name", v, s)
	}
	if len(hex) == 6 {
		n = n<<8 | 0xFF
	}
	return Colour{uint8(n >> 24), uint8(n >> 16), uint8(n >> 8), uint8(n)}, nil
}

// opaque reports whether the colour has no transparency.
func (c Colour) opaque() bool { return c.A == 255 }

// bands returns c as one value per band of im (grey images get the
// luminance; 16-bit images are scaled; alpha only when im has it).
func (c Colour) bands(im *vips.Image) []float64 {
	n := im.Bands()
	scale := 1.0
	if im.Header().BandFormat == "ushort" {
		scale = 257
	}
	colour := []float64{float64(c.R), float64(c.G), float64(c.B)}
	if n <= 2 { // b-w, with or without alpha
		colour = []float64{0.2126*float64(c.R) + 0.7152*float64(c.G) + 0.0722*float64(c.B)}
	}
	if im.Interpretation() == "cmyk" {
		colour = make([]float64, 4)
	}
	out := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		switch {
		case im.HasAlpha() && i == n-1:
			out = append(out, float64(c.A)*scale)
		case i < len(colour):
			out = append(out, colour[i]*scale)
		default:
			out = append(out, 0)
		}
	}
	return out
}

// canvas prepares im to receive new area of colour c: an image without
// alpha gets an alpha band when c is not opaque, so that the new area can
// be transparent. It returns im itself when nothing is needed (the caller
// closes what differs from im).
func (c Colour) canvas(im *vips.Image) (*vips.Image, error) {
	if c.opaque() || im.HasAlpha() || im.Interpretation() == "cmyk" {
		return im, nil
	}
	return im.AddAlpha()
}

// flattenBands is the colour (without alpha) a transparent image is
// flattened onto: c, or white when c itself is not opaque (JPEG has no
// transparency to keep).
func (c Colour) flattenBands(im *vips.Image) []float64 {
	if !c.opaque() {
		c = white
	}
	b := c.bands(im)
	if im.HasAlpha() {
		b = b[:len(b)-1]
	}
	return b
}
