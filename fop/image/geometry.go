package image

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Geometry strings of imageMogr2 (thumbnail, crop) are ImageMagick geometry
// with URL-friendly escapes: a leading '!' starts an escaped string in which
// 'p' stands for '%', 'r' for '^' and 'a' for '+'.

// unescapeGeometry applies the '!' escapes.
func unescapeGeometry(s string) string {
	if !strings.HasPrefix(s, "!") {
		return s
	}
	return strings.NewReplacer("p", "%", "r", "^", "a", "+").Replace(s[1:])
}

// thumbKind is the form of a thumbnail geometry.
type thumbKind int

const (
	thumbPercent  thumbKind = iota // S%: both sides to S%
	thumbPercentW                  // S%x: width to S%
	thumbPercentH                  // xS%: height to S%
	thumbWidth                     // Wx: width W, keep aspect
	thumbHeight                    // xH: height H, keep aspect
	thumbFit                       // WxH: fit inside
	thumbCover                     // WxH^: cover
	thumbExact                     // WxH!: exact size, aspect ignored
	thumbShrink                    // WxH>: fit, only if that shrinks
	thumbEnlarge                   // WxH<: fit, only if that enlarges
	thumbArea                      // A@: area at most A pixels
)

// thumbGeom is a parsed thumbnail geometry.
type thumbGeom struct {
	Kind    thumbKind
	W, H    int // sides (or the percentage in W for percent kinds)
	Area    int
	NoGrowW bool // a side above 10000 (or an area above 25M): shrink only
}

// Ranges of thumbnail geometry values (qiniu-compat.md §5.2).
const (
	maxPercent    = 999
	maxSide       = 9999     // Wx, xH
	shrinkOnlyAt  = 10000    // WxH forms: above this, shrink only
	maxBoxSide    = 1 << 20  // refuse absurd numbers outright
	shrinkOnlyPix = 25000000 // A@: above this, shrink only
	maxArea       = 1 << 40
)

// parseUint parses a non-empty string of ASCII digits.
func parseUint(s string, max int) (int, error) {
	if s == "" || len(s) > 12 {
		return 0, errors.New("bad number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > max {
		return 0, fmt.Errorf("%q out of range", s)
	}
	return n, nil
}

// parseThumbGeometry parses the value of imageMogr2's thumbnail.
func parseThumbGeometry(v string) (thumbGeom, error) {
	s := unescapeGeometry(v)
	if s == "" {
		return thumbGeom{}, errors.New("empty geometry")
	}
	percent := func(t string) (int, error) {
		n, err := parseUint(t, maxPercent)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("percentage must be in 1..%d", maxPercent)
		}
		return n, nil
	}
	switch {
	case strings.HasSuffix(s, "@"):
		a, err := parseUint(s[:len(s)-1], maxArea)
		if err != nil || a < 1 {
			return thumbGeom{}, errors.New("area must be a positive number of pixels")
		}
		return thumbGeom{Kind: thumbArea, Area: a, NoGrowW: a > shrinkOnlyPix}, nil
	case strings.HasSuffix(s, "%x"):
		p, err := percent(s[:len(s)-2])
		return thumbGeom{Kind: thumbPercentW, W: p}, err
	case strings.HasPrefix(s, "x") && strings.HasSuffix(s, "%"):
		p, err := percent(s[1 : len(s)-1])
		return thumbGeom{Kind: thumbPercentH, W: p}, err
	case strings.HasSuffix(s, "%"):
		p, err := percent(s[:len(s)-1])
		return thumbGeom{Kind: thumbPercent, W: p}, err
	}
	kind := thumbFit
	switch s[len(s)-1] {
	case '^':
		kind = thumbCover
	case '!':
		kind = thumbExact
	case '>':
		kind = thumbShrink
	case '<':
		kind = thumbEnlarge
	}
	if kind != thumbFit {
		s = s[:len(s)-1]
	}
	ws, hs, found := strings.Cut(s, "x")
	if !found {
		return thumbGeom{}, fmt.Errorf("bad geometry %q", v)
	}
	side := func(t string, max int) (int, error) {
		n, err := parseUint(t, max)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("side must be in 1..%d", max)
		}
		return n, nil
	}
	switch {
	case ws == "" && hs == "":
		return thumbGeom{}, fmt.Errorf("bad geometry %q", v)
	case hs == "":
		if kind != thumbFit {
			return thumbGeom{}, fmt.Errorf("bad geometry %q", v)
		}
		w, err := side(ws, maxSide)
		return thumbGeom{Kind: thumbWidth, W: w}, err
	case ws == "":
		if kind != thumbFit {
			return thumbGeom{}, fmt.Errorf("bad geometry %q", v)
		}
		h, err := side(hs, maxSide)
		return thumbGeom{Kind: thumbHeight, H: h}, err
	}
	w, err := side(ws, maxBoxSide)
	if err != nil {
		return thumbGeom{}, err
	}
	h, err := side(hs, maxBoxSide)
	if err != nil {
		return thumbGeom{}, err
	}
	return thumbGeom{Kind: kind, W: w, H: h, NoGrowW: w > shrinkOnlyAt || h > shrinkOnlyAt}, nil
}

// round rounds half away from zero, to at least 1.
func round(x float64) int {
	n := int(math.Floor(x + 0.5))
	if n < 1 {
		return 1
	}
	return n
}

// target returns the size a w×h image gets from the geometry.
func (g thumbGeom) target(w, h int) (int, int) {
	fw, fh := float64(w), float64(h)
	scaled := func(s float64) (int, int) {
		if g.NoGrowW && s > 1 {
			s = 1
		}
		return round(fw * s), round(fh * s)
	}
	switch g.Kind {
	case thumbPercent:
		return round(fw * float64(g.W) / 100), round(fh * float64(g.W) / 100)
	case thumbPercentW:
		return round(fw * float64(g.W) / 100), h
	case thumbPercentH:
		return w, round(fh * float64(g.W) / 100)
	case thumbWidth:
		return g.W, round(fh * float64(g.W) / fw)
	case thumbHeight:
		return round(fw * float64(g.H) / fh), g.H
	case thumbFit:
		return scaled(math.Min(float64(g.W)/fw, float64(g.H)/fh))
	case thumbCover:
		return scaled(math.Max(float64(g.W)/fw, float64(g.H)/fh))
	case thumbExact:
		if g.NoGrowW {
			return min(g.W, w), min(g.H, h)
		}
		return g.W, g.H
	case thumbShrink:
		if s := math.Min(float64(g.W)/fw, float64(g.H)/fh); s < 1 {
			return scaled(s)
		}
		return w, h
	case thumbEnlarge:
		if s := math.Min(float64(g.W)/fw, float64(g.H)/fh); s > 1 {
			return scaled(s)
		}
		return w, h
	case thumbArea:
		s := math.Sqrt(float64(g.Area) / (fw * fh))
		if g.NoGrowW && s > 1 {
			s = 1
		}
		tw, th := round(fw*s), round(fh*s)
		for tw*th > g.Area && (tw > 1 || th > 1) {
			if tw >= th {
				tw--
			} else {
				th--
			}
		}
		return tw, th
	}
	return w, h
}

// cropGeom is a parsed crop geometry: W×H (0 = the whole side) at an offset.
type cropGeom struct {
	W, H   int
	DX, DY int
}

const maxCropSide = 10000

// parseCropGeometry parses the value of imageMogr2's crop: "Wx", "xH",
// "WxH", each optionally followed by both offsets ("+10+10", "-10+10", ...,
// written "a10a10", "-10a10" after '!').
func parseCropGeometry(v string) (cropGeom, error) {
	s := unescapeGeometry(v)
	var g cropGeom
	// Offsets: the first '+' or '-' starts them.
	size, offs := s, ""
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		size, offs = s[:i], s[i:]
	}
	ws, hs, found := strings.Cut(size, "x")
	if !found || (ws == "" && hs == "") {
		return g, fmt.Errorf("bad crop geometry %q", v)
	}
	var err error
	if ws != "" {
		if g.W, err = parseUint(ws, maxCropSide); err != nil {
			return g, fmt.Errorf("crop width must be in 0..%d", maxCropSide)
		}
	}
	if hs != "" {
		if g.H, err = parseUint(hs, maxCropSide); err != nil {
			return g, fmt.Errorf("crop height must be in 0..%d", maxCropSide)
		}
	}
	if offs == "" {
		return g, nil
	}
	var vals [2]int
	for k := 0; k < 2; k++ {
		if offs == "" {
			return g, fmt.Errorf("crop %q: both offsets are required", v)
		}
		sign := 1
		if offs[0] == '-' {
			sign = -1
		} else if offs[0] != '+' {
			return g, fmt.Errorf("bad crop offset in %q", v)
		}
		offs = offs[1:]
		j := strings.IndexAny(offs, "+-")
		if j < 0 {
			j = len(offs)
		}
		n, err := parseUint(offs[:j], maxCropSide*3)
		if err != nil {
			return g, fmt.Errorf("bad crop offset in %q", v)
		}
		vals[k] = sign * n
		offs = offs[j:]
	}
	if offs != "" {
		return g, fmt.Errorf("bad crop geometry %q", v)
	}
	g.DX, g.DY = vals[0], vals[1]
	return g, nil
}

// gravity places a crop region (ImageMagick -gravity).
type gravity int

const (
	northWest gravity = iota
	north
	northEast
	west
	center
	east
	southWest
	south
	southEast
)

var gravities = map[string]gravity{
	"northwest": northWest, "north": north, "northeast": northEast,
	"west": west, "center": center, "east": east,
	"southwest": southWest, "south": south, "southeast": southEast,
}

func parseGravity(v string) (gravity, bool) {
	g, ok := gravities[strings.ToLower(v)]
	return g, ok
}

// rect returns the region the crop keeps from a w×h image, clipped to it,
// ImageMagick style: the W×H box is placed by gravity, then moved by the
// offsets (away from the gravity's edge), then intersected with the image.
// ok is false when nothing is left.
func (g cropGeom) rect(w, h int, grav gravity) (x, y, cw, ch int, ok bool) {
	cw, ch = g.W, g.H
	if cw == 0 {
		cw = w
	}
	if ch == 0 {
		ch = h
	}
	switch grav {
	case north, center, south:
		x = (w-cw)/2 + g.DX
	case northEast, east, southEast:
		x = w - cw - g.DX
	default:
		x = g.DX
	}
	switch grav {
	case west, center, east:
		y = (h-ch)/2 + g.DY
	case southWest, south, southEast:
		y = h - ch - g.DY
	default:
		y = g.DY
	}
	x0, y0 := max(x, 0), max(y, 0)
	x1, y1 := min(x+cw, w), min(y+ch, h)
	if x1 <= x0 || y1 <= y0 {
		return 0, 0, 0, 0, false
	}
	return x0, y0, x1 - x0, y1 - y0, true
}
