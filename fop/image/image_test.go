package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image/vips"
)

const testdata = "../../testdata/images/"

var (
	storm  = mustRead(testdata + "storm-1920x1080.jpg")
	blinds = mustRead(testdata + "blinds-exif-o6-gps.jpg")
	mate   = mustRead(testdata + "mate-stripes-dark-1920x1440.png")
)

func mustRead(name string) []byte {
	b, err := os.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

func newReg(t testing.TB, cfg Config) fop.Registry {
	t.Helper()
	x, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := fop.Registry{}
	x.Register(r)
	return r
}

func defReg(t testing.TB) fop.Registry { return newReg(t, NewDefaultConfig()) }

func parseCmd(t testing.TB, q string) fop.Cmd {
	t.Helper()
	ch, err := fop.Parse(q)
	if err != nil {
		t.Fatalf("parse %q: %v", q, err)
	}
	if len(ch.Cmds) != 1 {
		t.Fatalf("parse %q: %d commands", q, len(ch.Cmds))
	}
	return ch.Cmds[0]
}

// do runs one command on data.
func do(t testing.TB, r fop.Registry, q string, data []byte) (fop.Blob, error) {
	t.Helper()
	cmd := parseCmd(t, q)
	p, ok := r[cmd.Name]
	if !ok {
		t.Fatalf("no processor %q", cmd.Name)
	}
	return p.Process(context.Background(), cmd, fop.Blob{Data: data, MIME: "application/octet-stream"})
}

// size decodes the output header with the standard library (webp: libvips).
func size(t *testing.T, b []byte) (int, int) {
	t.Helper()
	if bytes.HasPrefix(b, []byte("RIFF")) {
		h, err := vips.Probe(b)
		if err != nil {
			t.Fatal(err)
		}
		return h.Width, h.Height
	}
	c, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode output: %v", err)
	}
	return c.Width, c.Height
}

// pngOf makes a w×h opaque PNG.
func pngOf(w, h int) []byte {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range m.Pix {
		m.Pix[i] = uint8(i * 7)
	}
	for i := 3; i < len(m.Pix); i += 4 {
		m.Pix[i] = 255
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// animatedGIF makes an n-frame w×h GIF.
func animatedGIF(n, w, h int) []byte {
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
		panic(err)
	}
	return b.Bytes()
}

func jpegOf(t testing.TB, m image.Image, q int) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: q}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type dimCase struct {
	q    string
	src  []byte
	w, h int
}

func runDims(t *testing.T, cases []dimCase) {
	r := defReg(t)
	for _, c := range cases {
		out, err := do(t, r, c.q, c.src)
		if err != nil {
			t.Errorf("%s: %v", c.q, err)
			continue
		}
		if !out.Derived {
			t.Errorf("%s: output not Derived", c.q)
		}
		if w, h := size(t, out.Data); w != c.w || h != c.h {
			t.Errorf("%s: got %dx%d, want %dx%d", c.q, w, h, c.w, c.h)
		}
	}
}

// Expected sizes are computed by hand from the rules of qiniu-compat.md
// §5.1: scale s, sides floor(side*s+0.5). storm is 1920×1080; blinds is
// stored 1920×1200 with Orientation=6, displayed 1200×1920.
func TestImageView2Modes(t *testing.T) {
	tiny := pngOf(100, 100)
	runDims(t, []dimCase{
		// mode 0: long edge <= w, short edge <= h
		{"imageView2/0/w/200", storm, 200, 113},           // 1080*200/1920 = 112.5
		{"imageView2/0/h/200", storm, 356, 200},           // 1920*200/1080 = 355.6
		{"imageView2/0/w/200/h/100", storm, 178, 100},     // min(.1042,.0926)
		{"imageView2/0/w/600", blinds, 375, 600},          // long edge is the height
		{"imageView2/0/w/5000/h/5000", storm, 1920, 1080}, // never enlarges
		// mode 1: cover then centre crop
		{"imageView2/1/w/200/h/100", storm, 200, 100},
		{"imageView2/1/w/200", storm, 200, 200},
		{"imageView2/1/h/150", storm, 150, 150},
		{"imageView2/1/w/3000/h/3000", storm, 1080, 1080}, // too small: largest square
		{"imageView2/1/w/200/h/100", tiny, 100, 50},       // too small: box aspect kept
		// mode 2: fit inside
		{"imageView2/2/w/200", storm, 200, 113},
		{"imageView2/2/h/200", storm, 356, 200},
		{"imageView2/2/w/200/h/100", storm, 178, 100},
		{"imageView2/2/w/4000", storm, 1920, 1080},
		{"imageView2/2/w/600", blinds, 600, 960}, // auto-oriented portrait
		// mode 3: cover, no crop
		{"imageView2/3/w/200/h/100", storm, 200, 113},
		{"imageView2/3/w/200", storm, 356, 200},
		{"imageView2/3/h/100", storm, 178, 100},
		{"imageView2/3/w/4000/h/10", storm, 1920, 1080},
		// mode 4: long >= w, short >= h
		{"imageView2/4/w/200/h/100", storm, 200, 113},
		{"imageView2/4/w/200", storm, 356, 200},
		{"imageView2/4/h/300", storm, 533, 300}, // 1920*300/1080 = 533.3
		{"imageView2/4/w/400/h/200", blinds, 250, 400},
		// mode 5: like 4, then centre crop (w along the long edge)
		{"imageView2/5/w/200/h/100", storm, 200, 100},
		{"imageView2/5/w/200", storm, 200, 200},
		{"imageView2/5/h/120", storm, 120, 120},
		{"imageView2/5/w/400/h/200", blinds, 200, 400},
		{"imageView2/5/w/200/h/100", tiny, 100, 50},
		// no size: format conversion only
		{"imageView2/2/format/png", tiny, 100, 100},
	})
}

func TestImageMogr2Geometry(t *testing.T) {
	small := pngOf(100, 50)
	runDims(t, []dimCase{
		{"imageMogr2/thumbnail/!50p", storm, 960, 540},
		{"imageMogr2/thumbnail/!50px", storm, 960, 1080},
		{"imageMogr2/thumbnail/!x50p", storm, 1920, 540},
		{"imageMogr2/thumbnail/50%25", storm, 960, 540}, // unescaped form
		{"imageMogr2/thumbnail/200x", storm, 200, 113},
		{"imageMogr2/thumbnail/x200", storm, 356, 200},
		{"imageMogr2/thumbnail/200x300", storm, 200, 113},
		{"imageMogr2/thumbnail/!200x300r", storm, 533, 300},
		{"imageMogr2/thumbnail/200x300!", storm, 200, 300},
		{"imageMogr2/thumbnail/200x300%3E", storm, 200, 113},    // '>'
		{"imageMogr2/thumbnail/200x300%3C", storm, 1920, 1080},  // '<': no change
		{"imageMogr2/thumbnail/200x300%3C", small, 200, 100},    // '<': enlarges
		{"imageMogr2/thumbnail/100000@", storm, 421, 237},       // 422x237 = 100014 > area
		{"imageMogr2/thumbnail/20000x20000", storm, 1920, 1080}, // > 10000: shrink only
		{"imageMogr2/thumbnail/20000x20000", small, 100, 50},
		{"imageMogr2/thumbnail/200x300", small, 200, 100}, // fit may enlarge
		// no auto-orient: blinds stays landscape
		{"imageMogr2/thumbnail/600x", blinds, 600, 375},
		{"imageMogr2/auto-orient/thumbnail/600x", blinds, 600, 960},
		// crop
		{"imageMogr2/crop/!300x400a10a10", storm, 300, 400},
		{"imageMogr2/crop/!300x400-10a10", storm, 290, 400},
		{"imageMogr2/crop/300x", storm, 300, 1080},
		{"imageMogr2/crop/x400", storm, 1920, 400},
		{"imageMogr2/crop/300x400", storm, 300, 400},
		{"imageMogr2/crop/!300x400a1800a10", storm, 120, 400},
		{"imageMogr2/crop/!300x400a10a900", storm, 300, 180},
		{"imageMogr2/gravity/Center/crop/!300x400", storm, 300, 400},
		{"imageMogr2/gravity/SouthEast/crop/!300x400a10a10", storm, 300, 400},
		{"imageMogr2/gravity/East/crop/!300x400-50a0", storm, 250, 400},
		// ordered operations
		{"imageMogr2/thumbnail/!50p/crop/!300x400", storm, 300, 400},
		{"imageMogr2/crop/!300x400/thumbnail/!50p", storm, 150, 200},
		{"imageMogr2/rotate/90", storm, 1080, 1920},
		{"imageMogr2/rotate/180/rotate/90", storm, 1080, 1920},
		{"imageMogr2/rotate/360", storm, 1920, 1080},
		{"imageMogr2/thumbnail/200x/blur/3x9", storm, 200, 113},
	})
}

func TestCropPosition(t *testing.T) {
	// IM geometry: the box is placed by gravity then moved by the offsets.
	cases := []struct {
		geom         string
		grav         gravity
		w, h         int
		x, y, cw, ch int
		ok           bool
	}{
		{"!300x400a10a10", northWest, 1920, 1080, 10, 10, 300, 400, true},
		{"!300x400-10a10", northWest, 1920, 1080, 0, 10, 290, 400, true},
		{"!300x400a10-10", northWest, 1920, 1080, 10, 0, 300, 390, true},
		{"!300x400", center, 1920, 1080, 810, 340, 300, 400, true},
		{"!300x400a10a10", southEast, 1920, 1080, 1610, 670, 300, 400, true},
		{"!300x400a5000a0", northWest, 1920, 1080, 0, 0, 0, 0, false},
		{"x400", south, 1920, 1080, 0, 680, 1920, 400, true},
	}
	for _, c := range cases {
		g, err := parseCropGeometry(c.geom)
		if err != nil {
			t.Fatalf("%s: %v", c.geom, err)
		}
		x, y, cw, ch, ok := g.rect(c.w, c.h, c.grav)
		if x != c.x || y != c.y || cw != c.cw || ch != c.ch || ok != c.ok {
			t.Errorf("%s grav %d: got %d,%d %dx%d %v", c.geom, c.grav, x, y, cw, ch, ok)
		}
	}
}

func TestRotateArbitrary(t *testing.T) {
	r := defReg(t)
	// The reference example chain.
	out, err := do(t, r, "imageMogr2/auto-orient/thumbnail/!256x256r/gravity/Center/crop/!256x256/blur/3x9/quality/80/rotate/45", storm)
	if err != nil {
		t.Fatal(err)
	}
	w, h := size(t, out.Data)
	// 256*(cos 45 + sin 45) = 362.04
	if w < 361 || w > 363 || h < 361 || h > 363 {
		t.Errorf("rotate 45: %dx%d", w, h)
	}
	// the corners are white in a jpeg
	m, err := jpeg.Decode(bytes.NewReader(out.Data))
	if err != nil {
		t.Fatal(err)
	}
	if rr, g, b, _ := m.At(1, 1).RGBA(); rr < 0xf000 || g < 0xf000 || b < 0xf000 {
		t.Errorf("corner not white: %x %x %x", rr, g, b)
	}
	// with alpha: transparent corners
	out, err = do(t, r, "imageMogr2/thumbnail/200x/rotate/30", mate)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := png.Decode(bytes.NewReader(out.Data))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, a := pm.At(0, 0).RGBA(); a != 0 {
		t.Errorf("corner alpha %x, want 0", a)
	}
}

var magics = map[string][]byte{
	"image/jpeg": {0xFF, 0xD8, 0xFF},
	"image/png":  []byte("\x89PNG\r\n\x1a\n"),
	"image/gif":  []byte("GIF8"),
	"image/webp": []byte("RIFF"),
}

// jpegMarkers reports whether a JPEG has a progressive (SOF2) and a baseline
// (SOF0) frame header.
func jpegMarkers(b []byte) (sof2, sof0 bool) {
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xFF {
			return
		}
		m := b[i+1]
		if m == 0xDA {
			return
		}
		sof2 = sof2 || m == 0xC2
		sof0 = sof0 || m == 0xC0
		i += 2 + (int(b[i+2])<<8 | int(b[i+3]))
	}
	return
}

func TestFormats(t *testing.T) {
	r := defReg(t)
	cases := []struct {
		q, mime string
		src     []byte
	}{
		{"imageView2/2/w/100", "image/jpeg", storm},
		{"imageView2/2/w/100/format/jpg", "image/jpeg", mate},
		{"imageView2/2/w/100/format/jpeg", "image/jpeg", mate},
		{"imageView2/2/w/100/format/png", "image/png", storm},
		{"imageView2/2/w/100/format/webp", "image/webp", storm},
		{"imageView2/2/w/100/format/gif", "image/gif", storm},
		{"imageView2/2/w/100", "image/png", mate},
		{"imageMogr2/thumbnail/100x/format/webp", "image/webp", mate},
		{"imageMogr2/thumbnail/100x/format/gif", "image/gif", storm},
		{"imageMogr2/thumbnail/100x/format/png/strip", "image/png", storm},
	}
	for _, c := range cases {
		out, err := do(t, r, c.q, c.src)
		if err != nil {
			t.Errorf("%s: %v", c.q, err)
			continue
		}
		if out.MIME != c.mime || !bytes.HasPrefix(out.Data, magics[c.mime]) {
			t.Errorf("%s: MIME %s, magic %q", c.q, out.MIME, out.Data[:8])
		}
		if c.mime == "image/webp" && string(out.Data[8:12]) != "WEBP" {
			t.Errorf("%s: not WEBP", c.q)
		}
	}
	// transparent areas become white: mate's stripes are dark, alpha 17..255
	out, err := do(t, r, "imageView2/2/w/100/format/jpg", mate)
	if err != nil {
		t.Fatal(err)
	}
	m, err := jpeg.Decode(bytes.NewReader(out.Data))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.ColorModel().(interface{ Convert(color.Color) color.Color }); !ok {
		t.Fatal("no colour model")
	}
	// interlace
	for _, q := range []string{"imageView2/2/w/100/interlace/1", "imageMogr2/thumbnail/100x/interlace/1"} {
		out, err := do(t, r, q, storm)
		if err != nil {
			t.Fatal(err)
		}
		if p, b := jpegMarkers(out.Data); !p || b {
			t.Errorf("%s: SOF2 %v SOF0 %v", q, p, b)
		}
	}
	out, err = do(t, r, "imageView2/2/w/100/interlace/0", storm)
	if err != nil {
		t.Fatal(err)
	}
	if p, b := jpegMarkers(out.Data); p || !b {
		t.Errorf("interlace/0: SOF2 %v SOF0 %v", p, b)
	}
}

func TestFlattenWhite(t *testing.T) {
	// a fully transparent PNG becomes white in jpg
	m := image.NewNRGBA(image.Rect(0, 0, 20, 20))
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	out, err := do(t, defReg(t), "imageView2/2/w/10/format/jpg", b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	j, err := jpeg.Decode(bytes.NewReader(out.Data))
	if err != nil {
		t.Fatal(err)
	}
	if r, g, bb, _ := j.At(5, 5).RGBA(); r < 0xf800 || g < 0xf800 || bb < 0xf800 {
		t.Errorf("not white: %x %x %x", r, g, bb)
	}
}

func TestAnimatedGIF(t *testing.T) {
	r := defReg(t)
	src := animatedGIF(5, 40, 30)
	cases := []struct {
		q            string
		frames, w, h int
	}{
		{"imageView2/2/w/20", 5, 20, 15},
		{"imageView2/1/w/10", 5, 10, 10},
		{"imageView2/2/w/20/format/webp", 0, 20, 15},
		{"imageMogr2/thumbnail/20x", 1, 20, 15},
	}
	for _, c := range cases {
		out, err := do(t, r, c.q, src)
		if err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		if w, h := size(t, out.Data); w != c.w || h != c.h {
			t.Errorf("%s: %dx%d", c.q, w, h)
		}
		if c.frames == 0 {
			h, err := vips.Probe(out.Data)
			if err != nil || h.Pages != 5 {
				t.Errorf("%s: webp pages %d %v", c.q, h.Pages, err)
			}
			continue
		}
		g, err := gif.DecodeAll(bytes.NewReader(out.Data))
		if err != nil {
			t.Fatal(err)
		}
		if len(g.Image) != c.frames {
			t.Errorf("%s: %d frames, want %d", c.q, len(g.Image), c.frames)
		}
	}
	out, err := do(t, r, "imageView2/2/w/20/format/png", src)
	if err != nil {
		t.Fatal(err)
	}
	if w, h := size(t, out.Data); w != 20 || h != 15 {
		t.Errorf("gif to png: %dx%d", w, h)
	}
}

func TestQualityEstimate(t *testing.T) {
	// Real camera/wallpaper JPEGs (values as ImageMagick's algorithm gives).
	for _, c := range []struct {
		b []byte
		q int
	}{{storm, 98}, {blinds, 98}, {mustRead(testdata + "kleiber-6028x3391.jpg"), 92}} {
		if got := EstimateJPEGQuality(c.b); got != c.q {
			t.Errorf("estimate %d, want %d", got, c.q)
		}
	}
	// Standard IJG tables, from Go's encoder (colour and grey) and libjpeg.
	rgb := image.NewRGBA(image.Rect(0, 0, 16, 16))
	gray := image.NewGray(image.Rect(0, 0, 16, 16))
	for _, q := range []int{5, 10, 25, 50, 53, 60, 75, 85, 90, 95, 100} {
		if got := EstimateJPEGQuality(jpegOf(t, rgb, q)); got != q {
			t.Errorf("colour q%d: estimate %d", q, got)
		}
		if got := EstimateJPEGQuality(jpegOf(t, gray, q)); got != q {
			t.Errorf("grey q%d: estimate %d", q, got)
		}
	}
	for _, bad := range [][]byte{nil, []byte("nope"), mate, storm[:10]} {
		if got := EstimateJPEGQuality(bad); got != 0 {
			t.Errorf("non-JPEG estimate %d", got)
		}
	}
}

func TestEffectiveQuality(t *testing.T) {
	cases := []struct {
		q                    int
		forced               bool
		srcQ, sw, sh, dw, dh int
		want                 int
	}{
		{75, false, 98, 1920, 1080, 200, 113, 75}, // srcQ > 90: no correction
		{95, false, 98, 1920, 1080, 200, 113, 95},
		{75, false, 50, 400, 225, 380, 214, 53},   // 50*sqrt(90000/81320) = 52.6
		{75, true, 50, 400, 225, 380, 214, 75},    // '!' forces q
		{95, false, 80, 1920, 1080, 200, 113, 90}, // capped at 90
		{40, false, 80, 1920, 1080, 200, 113, 40},
		{75, false, 0, 1920, 1080, 200, 113, 75}, // unknown source quality
	}
	for _, c := range cases {
		if got := EffectiveQuality(c.q, c.forced, c.srcQ, c.sw, c.sh, c.dw, c.dh); got != c.want {
			t.Errorf("%+v: got %d", c, got)
		}
	}
	// end to end: a Q50 source resized a little
	src := jpegOf(t, image.NewRGBA(image.Rect(0, 0, 400, 225)), 50)
	r := defReg(t)
	for q, want := range map[string]int{
		"imageView2/2/w/380":                    53,
		"imageView2/2/w/380/q/75!":              75,
		"imageView2/2/w/380/q/40":               40,
		"imageMogr2/thumbnail/380x":             53,
		"imageMogr2/thumbnail/380x/quality/80!": 80,
	} {
		out, err := do(t, r, q, src)
		if err != nil {
			t.Fatal(err)
		}
		if got := EstimateJPEGQuality(out.Data); got != want {
			t.Errorf("%s: output quality %d, want %d", q, got, want)
		}
	}
}

func status(err error) int { return errs.Status(err) }

func TestErrors(t *testing.T) {
	r := defReg(t)
	bad := []string{
		"imageView2",
		"imageView2/9/w/100",
		"imageView2/2/w/abc",
		"imageView2/2/w/0",
		"imageView2/2/w/10000",
		"imageView2/2/w/100/q/101",
		"imageView2/2/w/100/q/0",
		"imageView2/2/w/100/q/x!",
		"imageView2/2/w/100/format/bmp",
		"imageView2/2/w/100/interlace/2",
		"imageView2/2/x/1",
		"imageView2/2/w/1/w/2",
		"imageView2/2/w",
		"imageMogr2/thumbnail/abc",
		"imageMogr2/thumbnail/!0p",
		"imageMogr2/thumbnail/!1000p",
		"imageMogr2/thumbnail/10000x",
		"imageMogr2/thumbnail/0x100",
		"imageMogr2/thumbnail/x",
		"imageMogr2/crop/!300x400a10",
		"imageMogr2/crop/10001x",
		"imageMogr2/crop/abc",
		"imageMogr2/rotate/0",
		"imageMogr2/rotate/361",
		"imageMogr2/blur/60x2",
		"imageMogr2/blur/3x0",
		"imageMogr2/blur/3",
		"imageMogr2/gravity/Up",
		"imageMogr2/quality/0",
		"imageMogr2/bogus",
		"imageInfo/x",
		"exif/1",
		"imageAve/1",
	}
	for _, q := range bad {
		cmd := parseCmd(t, q)
		p := r[cmd.Name]
		err := p.(fop.Validator).Validate(cmd)
		var pe *fop.ParseError
		if !errors.As(err, &pe) || status(err) != 400 {
			t.Errorf("Validate(%s) = %v, want a 400 ParseError", q, err)
			continue
		}
		if !strings.Contains(err.Error(), q) {
			t.Errorf("%s: error does not name the segment: %v", q, err)
		}
		if _, err := p.Process(context.Background(), cmd, fop.Blob{Data: storm}); status(err) != 400 {
			t.Errorf("Process(%s) = %v, want 400", q, err)
		}
	}
	good := []string{
		"imageView2/0/w/1", "imageView2/5/h/9999/format/webp/interlace/1/q/90!/ignore-error/1",
		"imageMogr2/auto-orient/thumbnail/!256x256r/gravity/Center/crop/!256x256/blur/3x9/quality/80/rotate/45",
		"imageMogr2/strip/format/png", "imageInfo", "exif", "imageAve",
	}
	for _, q := range good {
		cmd := parseCmd(t, q)
		if err := r[cmd.Name].(fop.Validator).Validate(cmd); err != nil {
			t.Errorf("Validate(%s): %v", q, err)
		}
	}
	// bad input
	inputs := map[string][]byte{
		"garbage":   []byte("this is not an image at all, not even close"),
		"empty":     {},
		"truncated": storm[:len(storm)/2],
		"header":    storm[:300],
	}
	for name, in := range inputs {
		for _, q := range []string{"imageView2/2/w/200", "imageMogr2/thumbnail/200x", "imageInfo", "imageAve"} {
			if name == "truncated" && q == "imageInfo" {
				continue // the header is intact
			}
			_, err := do(t, r, q, in)
			if status(err) != 400 {
				t.Errorf("%s on %s: %v, want 400", q, name, err)
			}
		}
		for _, q := range []string{"imageView2/2/w/200/ignore-error/1", "imageMogr2/thumbnail/200x/ignore-error/1"} {
			out, err := do(t, r, q, in)
			if err != nil || !bytes.Equal(out.Data, in) {
				t.Errorf("%s on %s: %v, want the input back", q, name, err)
			}
		}
	}
	if _, err := do(t, r, "imageMogr2/crop/!300x400a5000a0", storm); status(err) != 400 {
		t.Errorf("crop outside: %v", err)
	}
}

func TestLimits(t *testing.T) {
	gif5 := animatedGIF(5, 40, 30)
	cases := []struct {
		name string
		mod  func(*Config)
		q    string
		src  []byte
	}{
		{"bytes", func(c *Config) { c.MaxSrcBytes = 1000 }, "imageView2/2/w/100", storm},
		{"bytes info", func(c *Config) { c.MaxSrcBytes = 1000 }, "imageInfo", storm},
		{"side", func(c *Config) { c.MaxSrcSide = 1900 }, "imageView2/2/w/100", storm},
		{"pixels", func(c *Config) { c.MaxSrcPixels = 2_000_000 }, "imageMogr2/thumbnail/100x", storm},
		{"frames", func(c *Config) { c.MaxGIFFrames = 4 }, "imageView2/2/w/20", gif5},
		{"frames mogr2", func(c *Config) { c.MaxGIFFrames = 4 }, "imageMogr2/thumbnail/20x", gif5},
		{"out side", func(c *Config) { c.MaxOutSide = 1000 }, "imageView2/2/format/png", storm},
		{"out pixels", func(c *Config) { c.MaxOutPixels = 1_000_000 }, "imageView2/0/w/1500", storm},
		{"mogr2 out", func(c *Config) {}, "imageMogr2/thumbnail/9999x", storm}, // 9999x5624 > 25 MP
		{"mogr2 work", func(c *Config) {}, "imageMogr2/thumbnail/!999p/crop/100x100", storm},
	}
	for _, c := range cases {
		cfg := NewDefaultConfig()
		c.mod(&cfg)
		r := newReg(t, cfg)
		_, err := do(t, r, c.q, c.src)
		if status(err) != 400 || !strings.Contains(errs.Public(err), "") {
			t.Errorf("%s: %v, want 400", c.name, err)
		}
		t.Logf("%s: %s", c.name, errs.Public(err))
		// ignore-error returns the input
		sep := "/"
		if !strings.Contains(c.q, "/") {
			continue
		}
		out, err := do(t, r, c.q+sep+"ignore-error/1", c.src)
		if err != nil || !bytes.Equal(out.Data, c.src) {
			t.Errorf("%s ignore-error: %v", c.name, err)
		}
	}
	bad := NewDefaultConfig()
	bad.MaxOutSide = 0
	bad.DefaultQuality = 101
	if _, err := New(bad); err == nil {
		t.Error("New accepted a bad config")
	}
}

func TestImageInfo(t *testing.T) {
	r := defReg(t)
	cases := []struct {
		src  []byte
		want string
	}{
		{storm, `{"size":631012,"format":"jpeg","width":1920,"height":1080,"colorModel":"ycbcr"}`},
		{blinds, `{"size":1157681,"format":"jpeg","width":1920,"height":1200,"colorModel":"ycbcr","orientation":"Right-top"}`},
		{mate, `{"size":1363078,"format":"png","width":1920,"height":1440,"colorModel":"nrgba"}`},
	}
	for _, c := range cases {
		out, err := do(t, r, "imageInfo", c.src)
		if err != nil {
			t.Fatal(err)
		}
		if string(out.Data) != c.want || out.MIME != "application/json" || !out.NoStore {
			t.Errorf("got %s (%s, nostore %v), want %s", out.Data, out.MIME, out.NoStore, c.want)
		}
	}
	g := animatedGIF(5, 40, 30)
	out, err := do(t, r, "imageInfo", g)
	if err != nil {
		t.Fatal(err)
	}
	var info InfoResult
	if err := json.Unmarshal(out.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info != (InfoResult{Size: len(g), Format: "gif", Width: 40, Height: 30, ColorModel: "palette", FrameNumber: 5}) {
		t.Errorf("gif info %+v", info)
	}
	gray := jpegOf(t, image.NewGray(image.Rect(0, 0, 8, 8)), 80)
	if out, err := do(t, r, "imageInfo", gray); err != nil || !strings.Contains(string(out.Data), `"colorModel":"gray"`) {
		t.Errorf("gray: %s %v", out.Data, err)
	}
}

func TestExif(t *testing.T) {
	r := defReg(t)
	out, err := do(t, r, "exif", blinds)
	if err != nil {
		t.Fatal(err)
	}
	if out.MIME != "application/json" || !out.NoStore {
		t.Errorf("MIME %s nostore %v", out.MIME, out.NoStore)
	}
	var m map[string]ExifValue
	if err := json.Unmarshal(out.Data, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]ExifValue{
		"Make":            {2, "Canon"},
		"Model":           {2, "Canon EOS 350D DIGITAL"},
		"Orientation":     {3, "6"},
		"GPSLatitudeRef":  {2, "N"},
		"GPSLongitudeRef": {2, "E"},
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %+v, want %+v", k, m[k], v)
		}
	}
	for _, k := range []string{"GPSLatitude", "GPSLongitude", "DateTime", "ExposureTime"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %s in %s", k, out.Data)
		}
	}
	if m["GPSLatitude"].Type != 5 || !strings.HasPrefix(m["GPSLatitude"].Val, "31/1") {
		t.Errorf("GPSLatitude %+v", m["GPSLatitude"])
	}
	// no exif
	if _, err := do(t, r, "exif", mate); status(err) != 400 || errs.Public(err) != "no exif data" {
		t.Errorf("png exif: %v", err)
	}
	// derived input
	cmd := parseCmd(t, "exif")
	if _, err := r["exif"].Process(context.Background(), cmd, fop.Blob{Data: blinds, Derived: true}); status(err) != 400 {
		t.Errorf("derived exif: %v", err)
	}
}

func TestImageAve(t *testing.T) {
	r := defReg(t)
	out, err := do(t, r, "imageAve", storm)
	if err != nil {
		t.Fatal(err)
	}
	var res AveResult
	if err := json.Unmarshal(out.Data, &res); err != nil {
		t.Fatal(err)
	}
	// reference: the mean of the fully decoded image, in pure Go
	m, err := jpeg.Decode(bytes.NewReader(storm))
	if err != nil {
		t.Fatal(err)
	}
	var sum [3]float64
	b := m.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bb, _ := m.At(x, y).RGBA()
			sum[0] += float64(r >> 8)
			sum[1] += float64(g >> 8)
			sum[2] += float64(bb >> 8)
		}
	}
	n := float64(b.Dx() * b.Dy())
	var got [3]int
	if _, err := fmtSscanf(res.RGB, &got); err != nil {
		t.Fatalf("RGB %q: %v", res.RGB, err)
	}
	for i := range got {
		if d := float64(got[i]) - sum[i]/n; d > 3 || d < -3 {
			t.Errorf("channel %d: %d vs %.1f (%s)", i, got[i], sum[i]/n, out.Data)
		}
	}
	if out.MIME != "application/json" || !out.NoStore {
		t.Errorf("MIME %s", out.MIME)
	}
}

func TestPipeline(t *testing.T) {
	r := defReg(t)
	ch, err := fop.Parse("imageView2/2/w/400|imageMogr2/crop/!200x100a10a10/format/png|imageInfo")
	if err != nil {
		t.Fatal(err)
	}
	b := fop.Blob{Data: storm, MIME: "image/jpeg"}
	for _, c := range ch.Cmds {
		if b, err = r[c.Name].Process(context.Background(), c, b); err != nil {
			t.Fatalf("%s: %v", c.Raw, err)
		}
		if !b.Derived {
			t.Errorf("%s: not derived", c.Raw)
		}
	}
	if want := `"format":"png","width":200,"height":100`; !strings.Contains(string(b.Data), want) {
		t.Errorf("pipeline result %s", b.Data)
	}
	// exif refuses derived input
	ch, _ = fop.Parse("imageView2/2/w/400|exif")
	b = fop.Blob{Data: blinds}
	b, err = r["imageView2"].Process(context.Background(), ch.Cmds[0], b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r["exif"].Process(context.Background(), ch.Cmds[1], b); status(err) != 400 {
		t.Errorf("exif after imageView2: %v", err)
	}
}

func TestCancelled(t *testing.T) {
	r := defReg(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cmd := parseCmd(t, "imageView2/2/w/100")
	if _, err := r["imageView2"].Process(ctx, cmd, fop.Blob{Data: storm}); err == nil {
		t.Error("cancelled context processed")
	}
}

// BenchmarkImageView2 reports, besides the time, the process's CPU time
// per operation (cpu-ms/op): on a shared machine the wall time moves with
// the neighbours' load, the CPU time much less.
func BenchmarkImageView2(b *testing.B) {
	r := defReg(b)
	kleiber := mustRead(testdata + "kleiber-6028x3391.jpg")
	for _, bc := range []struct {
		name, chain string
		src         []byte
	}{
		{"w200", "imageView2/2/w/200/q/75", storm},
		{"w800", "imageView2/2/w/800/q/75", storm},
		{"20mp-w200", "imageView2/2/w/200/q/75", kleiber},
		{"png-w200", "imageView2/2/w/200", mate},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cmd := parseCmd(b, bc.chain)
			p := r["imageView2"]
			storm := bc.src
			b.SetBytes(int64(len(storm)))
			b.ReportAllocs()
			before := cpuTime(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					out, err := p.Process(context.Background(), cmd, fop.Blob{Data: storm})
					if err != nil || len(out.Data) == 0 {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(cpuTime(b)-before)/1e6/float64(b.N), "cpu-ms/op")
		})
	}
}

// cpuTime is the CPU time (user and system) the test process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
