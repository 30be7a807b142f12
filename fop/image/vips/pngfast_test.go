package vips

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"math/rand"
	"testing"
)

// pngChunks splits a PNG into its chunks (type, data); rebuildPNG joins
// them again with fresh checksums. Together they make inputs a real
// encoder would not.
type pngChunk struct {
	typ  string
	data []byte
}

func pngChunks(t testing.TB, b []byte) []pngChunk {
	t.Helper()
	var out []pngChunk
	for p := 8; p < len(b); {
		n := int(binary.BigEndian.Uint32(b[p:]))
		out = append(out, pngChunk{string(b[p+4 : p+8]), append([]byte(nil), b[p+8:p+8+n]...)})
		p += 12 + n
	}
	return out
}

func rebuildPNG(chunks []pngChunk) []byte {
	var b bytes.Buffer
	b.Write([]byte("\x89PNG\r\n\x1a\n"))
	for _, c := range chunks {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(c.data)))
		b.Write(n[:])
		b.WriteString(c.typ)
		b.Write(c.data)
		binary.BigEndian.PutUint32(n[:], crc32.ChecksumIEEE(append([]byte(c.typ), c.data...)))
		b.Write(n[:])
	}
	return b.Bytes()
}

// splitIDAT rewrites a PNG with its image data in chunks of at most n bytes.
func splitIDAT(t testing.TB, b []byte, n int) []byte {
	var z []byte
	var out []pngChunk
	for _, c := range pngChunks(t, b) {
		switch c.typ {
		case "IDAT":
			z = append(z, c.data...)
		case "IEND":
			for len(z) > 0 {
				k := min(n, len(z))
				out = append(out, pngChunk{"IDAT", z[:k]})
				z = z[k:]
			}
			out = append(out, c)
		default:
			out = append(out, c)
		}
	}
	return rebuildPNG(out)
}

func withChunk(t testing.TB, b []byte, c pngChunk) []byte {
	cs := pngChunks(t, b)
	return rebuildPNG(append(cs[:1:1], append([]pngChunk{c}, cs[1:]...)...))
}

// noisy makes a w×h image of the given model whose rows make Go's encoder
// choose every PNG filter (smooth gradients and noise).
func noisy(w, h int, model color.Model) image.Image {
	r := rand.New(rand.NewSource(int64(w*h) + 1))
	var im interface {
		image.Image
		Set(x, y int, c color.Color)
	}
	switch model {
	case color.GrayModel:
		im = image.NewGray(image.Rect(0, 0, w, h))
	case color.Gray16Model:
		im = image.NewGray16(image.Rect(0, 0, w, h))
	case color.NRGBA64Model:
		im = image.NewNRGBA64(image.Rect(0, 0, w, h))
	case color.RGBAModel:
		im = image.NewRGBA(image.Rect(0, 0, w, h))
	default:
		im = image.NewNRGBA(image.Rect(0, 0, w, h))
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := uint8(x + y)
			if y%7 < 3 {
				v = uint8(r.Intn(256))
			}
			a := uint8(255)
			if model == color.NRGBAModel {
				a = uint8(x * 255 / w)
			}
			im.Set(x, y, color.NRGBA{v, uint8(x * 3), uint8(y*5) ^ v, a})
		}
	}
	return im
}

func encodePNG(t testing.TB, im image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, im); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pixels of an encoded image, as Go's own PNG decoder reads them, in NRGBA.
func goPixels(t testing.TB, b []byte) *image.NRGBA {
	t.Helper()
	im, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out := image.NewNRGBA(im.Bounds())
	for y := 0; y < im.Bounds().Dy(); y++ {
		for x := 0; x < im.Bounds().Dx(); x++ {
			out.Set(x, y, im.At(x, y))
		}
	}
	return out
}

func savePNG(t testing.TB, im *Image) []byte {
	t.Helper()
	b, err := im.SavePNG(PNGOptions{Strip: true})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPNGWholeDecodes checks the libdeflate decoder against Go's image/png
// as an independent decoder, on each colour type it takes, with every
// filter, the image data in one chunk and in many, and the project's
// real PNG.
func TestPNGWholeDecodes(t *testing.T) {
	gray := encodePNG(t, noisy(301, 97, color.GrayModel))
	rgb := encodePNG(t, noisy(257, 130, color.RGBAModel)) // opaque: colour type 2
	rgba := encodePNG(t, noisy(190, 211, color.NRGBAModel))
	cases := []struct {
		name  string
		data  []byte
		bands int
	}{
		{"gray", gray, 1},
		{"rgb", rgb, 3},
		{"rgba", rgba, 4},
		{"rgba-idat-100", splitIDAT(t, rgba, 100), 4},
		{"rgb-idat-1", splitIDAT(t, rgb, 1), 3},
		{"one-pixel", encodePNG(t, noisy(1, 1, color.NRGBAModel)), 4},
		{"one-column", encodePNG(t, noisy(1, 50, color.GrayModel)), 1},
		{"with-gama-text", withChunk(t, withChunk(t, rgb, pngChunk{"gAMA", []byte{0, 0, 0xb1, 0x8f}}), pngChunk{"tEXt", []byte("Comment\x00hello")}), 3},
		{"mate-stripes", read(t, "mate-stripes-dark-1920x1440.png"), 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			im, ok := LoadPNGWhole(c.data, DefaultWholeMax)
			if !ok {
				t.Fatal("not decoded by the whole-image path")
			}
			defer im.Close()
			if im.Bands() != c.bands {
				t.Fatalf("bands %d, want %d", im.Bands(), c.bands)
			}
			got, want := goPixels(t, savePNG(t, im)), goPixels(t, c.data)
			if !bytes.Equal(got.Pix, want.Pix) || got.Rect != want.Rect {
				t.Fatalf("pixels differ from image/png's decoding (%v vs %v)", got.Rect, want.Rect)
			}
			// And exactly what libvips' own loader gives, resolution
			// included (written even when stripping); text chunks are not
			// kept by the whole-image path, as imageView2 strips them.
			lv, err := Load(c.data, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer lv.Close()
			if im.Interpretation() != lv.Interpretation() {
				t.Errorf("interpretation %s, libvips %s", im.Interpretation(), lv.Interpretation())
			}
			a, b := savePNG(t, im), savePNG(t, lv)
			if !bytes.Equal(a, b) {
				t.Errorf("saved again: %d bytes, from libvips' loader %d", len(a), len(b))
			}
		})
	}
}

// TestPNGWholeFallsBack: every input the whole-image path does not handle
// is left to libvips (ok false), so what libvips did with it stays.
func TestPNGWholeFallsBack(t *testing.T) {
	rgb := encodePNG(t, noisy(64, 48, color.RGBAModel))
	cs := pngChunks(t, rgb)
	badCRC := append([]byte(nil), rgb...)
	badCRC[len(badCRC)-20] ^= 0xff // inside the last IDAT
	var idat []byte
	for _, c := range cs {
		if c.typ == "IDAT" {
			idat = append(idat, c.data...)
		}
	}
	// A filter type of 5 on the first row, with valid zlib and checksums.
	badFilter := func() []byte {
		var raw bytes.Buffer
		raw.WriteByte(5)
		raw.Write(make([]byte, 64*3))
		for y := 1; y < 48; y++ {
			raw.WriteByte(0)
			raw.Write(make([]byte, 64*3))
		}
		return rebuildPNG([]pngChunk{cs[0], {"IDAT", zlibOf(t, raw.Bytes())}, {"IEND", nil}})
	}()
	short := rebuildPNG([]pngChunk{cs[0], {"IDAT", zlibOf(t, make([]byte, 10*(64*3+1)))}, {"IEND", nil}})
	long := rebuildPNG([]pngChunk{cs[0], {"IDAT", zlibOf(t, make([]byte, 60*(64*3+1)))}, {"IEND", nil}})
	cases := map[string][]byte{
		"16-bit":     encodePNG(t, noisy(20, 20, color.Gray16Model)),
		"16-bit-rgb": encodePNG(t, noisy(20, 20, color.NRGBA64Model)),
		"palette":    encodePNG(t, image.NewPaletted(image.Rect(0, 0, 8, 8), color.Palette{color.Black, color.White})),
		"interlaced": func() []byte {
			c := pngChunks(t, rgb)
			c[0].data = append([]byte(nil), c[0].data...)
			c[0].data[12] = 1
			return rebuildPNG(c)
		}(),
		"trns":       withChunk(t, rgb, pngChunk{"tRNS", []byte{0, 1, 0, 2, 0, 3}}),
		"iccp":       withChunk(t, rgb, pngChunk{"iCCP", []byte("x\x00\x00")}),
		"exif":       withChunk(t, rgb, pngChunk{"eXIf", []byte("MM\x00*")}),
		"unknown":    withChunk(t, rgb, pngChunk{"prVt", []byte("x")}),
		"bad-crc":    badCRC,
		"bad-filter": badFilter,
		"short-data": short,
		"extra-data": long,
		"truncated":  rgb[:len(rgb)/2],
		"no-iend":    rgb[:len(rgb)-12],
		"jpeg":       read(t, "storm-1920x1080.jpg"),
		"too-big":    nil, // below: the limit
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			max := DefaultWholeMax
			if data == nil {
				data, max = rgb, 64*48*3-1
			}
			if im, ok := LoadPNGWhole(data, max); ok {
				im.Close()
				t.Fatal("decoded by the whole-image path; want it left to libvips")
			}
		})
	}
	if im, ok := LoadPNGWhole(rgb, 64*48*3); !ok {
		t.Error("an image of exactly the limit was not decoded whole")
	} else {
		im.Close()
	}
}

func zlibOf(t testing.TB, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestScalePNGSameEitherWay: imageView2's pipeline gives byte-identical
// results whether the PNG is decoded whole or by libvips' loader.
func TestScalePNGSameEitherWay(t *testing.T) {
	inputs := map[string][]byte{
		"mate-stripes": read(t, "mate-stripes-dark-1920x1440.png"),
		"rgba":         splitIDAT(t, encodePNG(t, noisy(190, 211, color.NRGBAModel)), 4096),
		"gray":         encodePNG(t, noisy(301, 97, color.GrayModel)),
	}
	for name, data := range inputs {
		h, err := Probe(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []int{200, 77} {
			o := ScaleOptions{Width: w, Height: max(1, h.Height*w/h.Width)}
			fast, err := Scale(data, o)
			if err != nil {
				t.Fatal(err)
			}
			o.WholeMax = -1
			slow, err := Scale(data, o)
			if err != nil {
				t.Fatal(err)
			}
			a, b := savePNG(t, fast), savePNG(t, slow)
			fast.Close()
			slow.Close()
			if !bytes.Equal(a, b) {
				t.Errorf("%s w%d: %d bytes decoded whole, %d through libvips' loader", name, w, len(a), len(b))
			}
		}
	}
}

// BenchmarkPNGDecode compares the two decoders on the project's PNG.
func BenchmarkPNGDecode(b *testing.B) {
	data := read(b, "mate-stripes-dark-1920x1440.png")
	b.Run("libvips", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			im, err := Load(data, LoadOptions{Sequential: true})
			if err != nil {
				b.Fatal(err)
			}
			m, err := im.CopyMemory()
			if err != nil {
				b.Fatal(err)
			}
			m.Close()
			im.Close()
		}
	})
	b.Run("whole", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			im, ok := LoadPNGWhole(data, DefaultWholeMax)
			if !ok {
				b.Fatal("not decoded whole")
			}
			im.Close()
		}
	})
}

// FuzzPNGWhole feeds arbitrary bytes, and PNGs with their checksums
// repaired after mutation, to the whole-image decoder (C code reading
// untrusted input): it must not crash, and whatever it decodes must be
// what image/png decodes from the same bytes.
func FuzzPNGWhole(f *testing.F) {
	f.Add(encodePNG(f, noisy(9, 7, color.NRGBAModel)), false)
	f.Add(encodePNG(f, noisy(5, 3, color.GrayModel)), true)
	f.Add(splitIDAT(f, encodePNG(f, noisy(8, 8, color.RGBAModel)), 7), true)
	f.Fuzz(func(t *testing.T, data []byte, repair bool) {
		if repair && len(data) > 8 && bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
			data = repairCRCs(data)
		}
		im, ok := LoadPNGWhole(data, 1<<20)
		if !ok {
			return
		}
		defer im.Close()
		got := goPixels(t, savePNG(t, im))
		want, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("decoded whole, but image/png refuses it: %v", err)
		}
		if want.Bounds() != got.Rect {
			t.Fatalf("size %v, image/png %v", got.Rect, want.Bounds())
		}
		if w := goPixels(t, encodePNG(t, want)); !bytes.Equal(got.Pix, w.Pix) {
			t.Fatal("pixels differ from image/png's")
		}
	})
}

// repairCRCs rewrites the checksum of each whole chunk of a PNG.
func repairCRCs(b []byte) []byte {
	b = append([]byte(nil), b...)
	for p := 8; p+12 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[p:]))
		if n < 0 || p+12+n > len(b) {
			break
		}
		binary.BigEndian.PutUint32(b[p+8+n:], crc32.ChecksumIEEE(b[p+4:p+8+n]))
		p += 12 + n
	}
	return b
}
