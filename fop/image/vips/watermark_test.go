package vips

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"
)

// solidPNG encodes a w×h PNG of one colour.
func solidPNG(t *testing.T, w, h int, c color.NRGBA) []byte {
	t.Helper()
	im := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			im.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, im); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTextMask(t *testing.T) {
	small, err := Text("qufop", "DejaVu Sans, 12", 72)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	big, err := Text("qufop", "DejaVu Sans, 24", 72)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	if small.Bands() != 1 || small.Width() < 10 || small.Height() < 8 {
		t.Fatalf("mask %dx%d, %d bands", small.Width(), small.Height(), small.Bands())
	}
	if big.Width() <= small.Width() || big.Height() <= small.Height() {
		t.Errorf("24 pt %dx%d is not larger than 12 pt %dx%d", big.Width(), big.Height(), small.Width(), small.Height())
	}
	// Markup is escaped: "<b>" is drawn, so the text is wider than "b".
	tag, err := Text("<b>", "DejaVu Sans, 12", 72)
	if err != nil {
		t.Fatalf("text with '<': %v", err)
	}
	defer tag.Close()
	b, err := Text("b", "DejaVu Sans, 12", 72)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if tag.Width() <= b.Width() {
		t.Errorf("\"<b>\" is %d px wide, \"b\" %d: markup was parsed", tag.Width(), b.Width())
	}
}

// TestComposite draws a half-opaque red square onto a white base and
// reads the pixels back: inside the square the blend, outside the base.
func TestComposite(t *testing.T) {
	base, err := Load(solidPNG(t, 40, 30, color.NRGBA{255, 255, 255, 255}), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	wm, err := Load(solidPNG(t, 10, 10, color.NRGBA{255, 0, 0, 255}), LoadOptions{Sequential: true})
	if err != nil {
		t.Fatal(err)
	}
	defer wm.Close()
	if _, err := base.Composite(wm, 0, 0); err == nil {
		t.Error("Composite accepted an overlay that reads an encoded input")
	}
	over, err := wm.Overlay(0.5)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if over.Bands() != 4 || over.Header().BandFormat != "uchar" {
		t.Fatalf("overlay: %d bands of %s", over.Bands(), over.Header().BandFormat)
	}
	wm.Close()                               // the overlay must not need its input any more
	out, err := base.Composite(over, 35, -5) // partly outside: clipped
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if out.Width() != 40 || out.Height() != 30 {
		t.Fatalf("composite is %dx%d, want the base's 40x30", out.Width(), out.Height())
	}
	b, err := out.SavePNG(PNGOptions{})
	if err != nil {
		t.Fatal(err)
	}
	im, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	at := func(x, y int) color.NRGBA { return color.NRGBAModel.Convert(im.At(x, y)).(color.NRGBA) }
	if c := at(37, 2); c.R != 255 || c.G < 120 || c.G > 135 || c.A != 255 {
		t.Errorf("inside the square: %v, want about {255 128 128 255}", c)
	}
	for _, p := range [][2]int{{34, 2}, {37, 5}, {0, 0}, {39, 29}} {
		if c := at(p[0], p[1]); c != (color.NRGBA{255, 255, 255, 255}) {
			t.Errorf("outside the square at %v: %v, want white", p, c)
		}
	}
}
