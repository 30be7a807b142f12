package image

import (
	"fmt"
	"strings"

	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image/vips"
)

// imageMogr2 extent and border: operations that put the image on a new
// canvas.

// parseSides parses "<W>x<H>" with each side in lo..hi; with single, "<N>"
// alone means N for both (ImageMagick's -border 10).
func parseSides(cmd fop.Cmd, name, v string, lo, hi int, single bool) (int, int, error) {
	ws, hs, ok := strings.Cut(v, "x")
	if !ok {
		if !single {
			return 0, 0, cmd.Errorf("%s must be <width>x<height>, got %q", name, v)
		}
		hs = ws
	}
	w, err := cmd.Int(name+" width", ws, lo, hi)
	if err != nil {
		return 0, 0, err
	}
	h, err := cmd.Int(name+" height", hs, lo, hi)
	if err != nil {
		return 0, 0, err
	}
	return w, h, nil
}

// extentOffset places a w×h image on a cw×ch canvas by gravity, as
// ImageMagick's -gravity ... -extent does: a centred side is at
// cw/2 - w/2, each half rounded down (191 px on 300 lands at 55), and the
// offset is negative when the canvas is smaller (the image is cut).
func extentOffset(w, h, cw, ch int, g gravity) (x, y int) {
	switch g {
	case north, center, south:
		x = cw/2 - w/2
	case northEast, east, southEast:
		x = cw - w
	}
	switch g {
	case west, center, east:
		y = ch/2 - h/2
	case southWest, south, southEast:
		y = ch - h
	}
	return x, y
}

// embed puts im at (x, y) of a width×height canvas of colour c; an image
// without alpha gets one when c is not opaque.
func embed(im *vips.Image, x, y, width, height int, c Colour) (*vips.Image, error) {
	src, err := c.canvas(im)
	if err != nil {
		return nil, err
	}
	if src != im {
		defer src.Close()
	}
	out, err := src.Embed(x, y, width, height, c.bands(src))
	if err != nil {
		return nil, fmt.Errorf("embed: %w", err)
	}
	return out, nil
}
