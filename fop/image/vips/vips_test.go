package vips

import (
	"bytes"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	_ "image/png"
	"os"
	"testing"
)

const testdata = "../../../testdata/images/"

func TestMain(m *testing.M) {
	if err := Startup(); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(testdata + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// animatedGIF makes an n-frame w×h GIF with the standard library.
func animatedGIF(t testing.TB, n, w, h int) []byte {
	t.Helper()
	g := &gif.GIF{}
	pal := color.Palette{color.Black, color.White, color.RGBA{255, 0, 0, 255}}
	for i := 0; i < n; i++ {
		p := image.NewPaletted(image.Rect(0, 0, w, h), pal)
		for x := 0; x < w; x++ {
			p.SetColorIndex(x, (x+i)%h, uint8(1+i%2))
		}
		g.Image = append(g.Image, p)
		g.Delay = append(g.Delay, 10)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestProbe(t *testing.T) {
	cases := []struct {
		file                string
		format              string
		w, h, bands, orient int
		alpha               bool
		interp              string
	}{
		{"storm-1920x1080.jpg", "jpeg", 1920, 1080, 3, 1, false, "srgb"},
		{"kleiber-6028x3391.jpg", "jpeg", 6028, 3391, 3, 1, false, "srgb"},
		{"mate-stripes-dark-1920x1440.png", "png", 1920, 1440, 4, 0, true, "srgb"},
		{"blinds-exif-o6-gps.jpg", "jpeg", 1920, 1200, 3, 6, false, "srgb"},
	}
	for _, c := range cases {
		h, err := Probe(read(t, c.file))
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if h.Format != c.format || h.Width != c.w || h.Height != c.h || h.Bands != c.bands ||
			h.Orientation != c.orient || h.HasAlpha != c.alpha || h.Interpretation != c.interp || h.Pages != 1 {
			t.Errorf("%s: got %+v", c.file, h)
		}
	}
	h, err := Probe(animatedGIF(t, 7, 40, 30))
	if err != nil {
		t.Fatal(err)
	}
	if h.Format != "gif" || h.Pages != 7 || h.Width != 40 || h.Height != 30 {
		t.Errorf("gif: %+v", h)
	}
	for _, bad := range [][]byte{nil, []byte("hello world, not an image"), read(t, "storm-1920x1080.jpg")[:200]} {
		if _, err := Probe(bad); err == nil {
			t.Errorf("Probe(%d bytes) succeeded", len(bad))
		}
	}
}

func decode(t *testing.T, b []byte) image.Image {
	t.Helper()
	m, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestThumbnail(t *testing.T) {
	cases := []struct {
		file   string
		o      ThumbnailOptions
		ww, wh int
	}{
		{"storm-1920x1080.jpg", ThumbnailOptions{Width: 200, Size: SizeDown}, 200, 113},
		{"storm-1920x1080.jpg", ThumbnailOptions{Width: 200, Height: 200, Size: SizeForce}, 200, 200},
		{"storm-1920x1080.jpg", ThumbnailOptions{Width: 200, Height: 200, Crop: true}, 200, 200},
		{"storm-1920x1080.jpg", ThumbnailOptions{Width: 4000, Size: SizeDown}, 1920, 1080},
		// auto-rotated: displayed 1200×1920
		{"blinds-exif-o6-gps.jpg", ThumbnailOptions{Width: 600, Height: 960, Size: SizeForce}, 600, 960},
		{"blinds-exif-o6-gps.jpg", ThumbnailOptions{Width: 600, Height: 375, Size: SizeForce, NoRotate: true}, 600, 375},
	}
	for _, c := range cases {
		im, err := Thumbnail(read(t, c.file), c.o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := im.SaveJPEG(JPEGOptions{Quality: 75})
		im.Close()
		if err != nil {
			t.Fatal(err)
		}
		if r := decode(t, b).Bounds(); r.Dx() != c.ww || r.Dy() != c.wh {
			t.Errorf("%s %+v: got %dx%d want %dx%d", c.file, c.o, r.Dx(), r.Dy(), c.ww, c.wh)
		}
	}
}

func TestAnimatedThumbnail(t *testing.T) {
	im, err := Thumbnail(animatedGIF(t, 5, 40, 30), ThumbnailOptions{Width: 20, Height: 15, Size: SizeForce, AllPages: true})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if im.Pages != 5 || im.Width() != 20 || im.PageHeight() != 15 {
		t.Fatalf("pages %d %dx%d", im.Pages, im.Width(), im.PageHeight())
	}
	b, err := im.SaveGIF(false)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gif.DecodeAll(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Image) != 5 || g.Config.Width != 20 || g.Config.Height != 15 {
		t.Errorf("gif out: %d frames %dx%d", len(g.Image), g.Config.Width, g.Config.Height)
	}
}

func TestOps(t *testing.T) {
	im, err := Load(read(t, "blinds-exif-o6-gps.jpg"), LoadOptions{Sequential: true})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if im.Orientation() != 6 {
		t.Fatalf("orientation %d", im.Orientation())
	}
	if ex, ok := im.Exif(); !ok || !bytes.HasPrefix(ex, []byte("Exif\x00\x00")) {
		t.Fatalf("exif: %v %q", ok, ex[:min(len(ex), 8)])
	}
	if s, ok := im.String("exif-ifd0-Model"); !ok || !bytes.Contains([]byte(s), []byte("Canon EOS 350D")) {
		t.Errorf("model %q", s)
	}
	ar, err := im.AutoRotate()
	if err != nil {
		t.Fatal(err)
	}
	defer ar.Close()
	if ar.Width() != 1200 || ar.Height() != 1920 || ar.Orientation() > 1 {
		t.Errorf("autorot %dx%d o=%d", ar.Width(), ar.Height(), ar.Orientation())
	}
	small, err := ar.Resize(0.1, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if small.Width() != 120 || small.Height() != 96 {
		t.Errorf("resize %dx%d", small.Width(), small.Height())
	}
	// Clockwise: a marker in the top-left corner goes to the top-right.
	marked := image.NewRGBA(image.Rect(0, 0, 40, 20))
	for y := 0; y < 20; y++ {
		for x := 0; x < 40; x++ {
			c := color.RGBA{0, 0, 0, 255}
			if x < 5 && y < 5 {
				c = color.RGBA{255, 255, 255, 255}
			}
			marked.Set(x, y, c)
		}
	}
	var mb bytes.Buffer
	if err := jpeg.Encode(&mb, marked, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	src, err := Load(mb.Bytes(), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, tc := range []struct {
		name string
		f    func() (*Image, error)
	}{
		{"rot90", func() (*Image, error) { return src.Rot(D90) }},
		{"rotate90", func() (*Image, error) { return src.Rotate(90, []float64{255, 255, 255}) }},
	} {
		r, err := tc.f()
		if err != nil {
			t.Fatal(err)
		}
		b, err := r.SavePNG(PNGOptions{})
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		m := decode(t, b)
		if m.Bounds().Dx() != 20 || m.Bounds().Dy() != 40 {
			t.Errorf("%s: %v", tc.name, m.Bounds())
			continue
		}
		rr, _, _, _ := m.At(m.Bounds().Max.X-2, m.Bounds().Min.Y+1).RGBA()
		lr, _, _, _ := m.At(m.Bounds().Min.X+1, m.Bounds().Min.Y+1).RGBA()
		if rr < 0xc000 || lr > 0x4000 {
			t.Errorf("%s: not clockwise (top-right %x, top-left %x)", tc.name, rr, lr)
		}
	}
	avg, err := src.Average()
	if err != nil {
		t.Fatal(err)
	}
	if len(avg) != 3 || avg[0] < 6 || avg[0] > 10 { // 25 white px of 800: 255*25/800 ≈ 8
		t.Errorf("average %v", avg)
	}
}

func TestTruncated(t *testing.T) {
	b := read(t, "storm-1920x1080.jpg")
	im, err := Thumbnail(b[:len(b)/2], ThumbnailOptions{Width: 200, FailOnTruncated: true})
	if err == nil {
		_, err = im.SaveJPEG(JPEGOptions{Quality: 75})
		im.Close()
	}
	if err == nil {
		t.Fatal("truncated JPEG decoded without error")
	}
	t.Logf("truncated: %v", err)
}

// BenchmarkRawPipelineJPEG is the floor imageView2/2/w/200/q/75 is compared
// with: imgproxy's pipeline on the 1920x1080 JPEG in process, nothing else
// (no HTTP, no header read of our own): the JPEG decoded at the largest
// power-of-two shrink that stays at or above the target (8: 240x135), a
// lanczos3 reduce to 200 wide, and jpegsave at Q75 with optimised Huffman
// tables and no metadata.
func BenchmarkRawPipelineJPEG(b *testing.B) {
	data := read(b, "storm-1920x1080.jpg")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			im, err := Load(data, LoadOptions{Sequential: true, JPEGShrink: 8})
			if err != nil {
				b.Error(err)
				return
			}
			r, err := im.Resize(200.0/float64(im.Width()), 113.0/float64(im.Height()))
			if err == nil {
				_, err = r.SaveJPEG(JPEGOptions{Quality: 75, OptimizeCoding: true, Strip: true})
				r.Close()
			}
			im.Close()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}
