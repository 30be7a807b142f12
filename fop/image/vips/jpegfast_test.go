package vips

import (
	"bytes"
	"image"
	"image/draw"
	"image/jpeg"
	"os"
	"testing"
)

// TestScaleJPEGSameEitherWay: imageView2's pipeline gives the same pixels,
// and JPEGs of the same pixels and size, whether libjpeg decodes into
// memory directly (jpegfast.c) or through libvips' loader, at each DCT
// scale and for sizes that do not divide by it; inputs the direct path
// does not take (CMYK) go to libvips.
func TestScaleJPEGSameEitherWay(t *testing.T) {
	cmyk, err := os.ReadFile("../testdata/storm-400-cmyk.jpg")
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string][]byte{
		"storm":   read(t, "storm-1920x1080.jpg"),
		"kleiber": read(t, "kleiber-6028x3391.jpg"), // 6028/8 and 3391/8 are not whole
		"blinds":  read(t, "blinds-exif-o6-gps.jpg"),
		"cmyk":    cmyk,
	}
	for name, data := range inputs {
		h, err := Probe(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []int{200, 800, h.Width} {
			o := ScaleOptions{Width: w, Height: max(1, h.Height*w/h.Width), JPEG: true, Orientation: h.Orientation}
			o.JPEGShrink = JPEGShrink(h.Width, h.Height, o.Width, o.Height)
			enc := func(o ScaleOptions, png bool) []byte {
				im, err := Scale(data, o)
				if err != nil {
					t.Fatal(err)
				}
				defer im.Close()
				if png {
					return savePNG(t, im)
				}
				b, err := im.SaveJPEG(JPEGOptions{Quality: 75, Strip: true})
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			slowO := o
			slowO.WholeMax = -1
			a, b := goPixels(t, enc(o, true)), goPixels(t, enc(slowO, true))
			if !bytes.Equal(a.Pix, b.Pix) || a.Rect != b.Rect {
				t.Errorf("%s w%d (shrink %d): pixels differ between the direct decode and libvips' loader", name, w, o.JPEGShrink)
			}
			ja, jb := enc(o, false), enc(slowO, false)
			da, err1 := jpeg.Decode(bytes.NewReader(ja))
			db, err2 := jpeg.Decode(bytes.NewReader(jb))
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if len(ja) != len(jb) || da.Bounds() != db.Bounds() || !bytes.Equal(goPixelsOf(da), goPixelsOf(db)) {
				t.Errorf("%s w%d: JPEG %d bytes direct, %d through libvips", name, w, len(ja), len(jb))
			}
		}
	}
}

func goPixelsOf(im image.Image) []byte {
	out := image.NewNRGBA(im.Bounds())
	draw.Draw(out, out.Rect, im, im.Bounds().Min, draw.Src)
	return out.Pix
}

// FuzzScaleJPEG feeds arbitrary bytes to imageView2's pipeline as a JPEG,
// decoded directly (jpegfast.c, C glue over libjpeg reading untrusted
// input) and through libvips: neither may crash, and when both decode,
// the pixels are the same.
func FuzzScaleJPEG(f *testing.F) {
	small, err := os.ReadFile("../testdata/storm-400-cmyk.jpg")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(small, uint8(2))
	f.Add(read(f, "blinds-exif-o6-gps.jpg")[:4096], uint8(8))
	f.Fuzz(func(t *testing.T, data []byte, s uint8) {
		if len(data) < 4 || data[0] != 0xff || data[1] != 0xd8 {
			return
		}
		// The gateway refuses large images from their header before this
		// pipeline runs; here, large claims would only make slow runs.
		if h, err := Probe(data); err != nil || h.Width*h.Height > 1<<20 {
			return
		}
		shrink := []int{1, 2, 4, 8}[s%4]
		o := ScaleOptions{Width: 16, Height: 16, JPEG: true, JPEGShrink: shrink}
		fast, ferr := Scale(data, o)
		o.WholeMax = -1
		slow, serr := Scale(data, o)
		if ferr == nil && serr == nil {
			a, aerr := fast.SavePNG(PNGOptions{Strip: true})
			b, berr := slow.SavePNG(PNGOptions{Strip: true})
			if aerr == nil && berr == nil && !bytes.Equal(goPixels(t, a).Pix, goPixels(t, b).Pix) {
				t.Fatal("pixels differ between the direct decode and libvips' loader")
			}
		}
		if fast != nil {
			fast.Close()
		}
		if slow != nil {
			slow.Close()
		}
	})
}
