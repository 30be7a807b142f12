package image

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"

	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image/vips"
)

func b64(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) }

func decode(t *testing.T, b []byte) image.Image {
	t.Helper()
	m, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return m
}

func nrgba(m image.Image, x, y int) color.NRGBA {
	return color.NRGBAModel.Convert(m.At(x, y)).(color.NRGBA)
}

// near reports whether two colours differ by at most d per channel.
func near(a, b color.NRGBA, d int) bool {
	diff := func(x, y uint8) bool { return int(x)-int(y) <= d && int(y)-int(x) <= d }
	return diff(a.R, b.R) && diff(a.G, b.G) && diff(a.B, b.B) && diff(a.A, b.A)
}

func mustDo(t *testing.T, r fop.Registry, q string, src []byte) fop.Blob {
	t.Helper()
	out, err := do(t, r, q, src)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// Each bad parameter is a 400 ParseError of one line naming the parameter.
func TestMogr2ExtraParamErrors(t *testing.T) {
	r := defReg(t)
	cases := []struct{ q, name string }{
		{"imageMogr2/size-limit/0", "size-limit"},
		{"imageMogr2/size-limit/abc", "size-limit"},
		{"imageMogr2/size-limit/10g", "size-limit"},
		{"imageMogr2/size-limit/-5k", "size-limit"},
		{"imageMogr2/size-limit/2048m", "size-limit"},
		{"imageMogr2/size-limit/$(size)", "size-limit"},
		{"imageMogr2/colors/1", "colors"},
		{"imageMogr2/colors/257", "colors"},
		{"imageMogr2/colors/x", "colors"},
		{"imageMogr2/background/" + b64("#12345"), "background"},
		{"imageMogr2/background/" + b64("#GGHHII"), "background"},
		{"imageMogr2/background/" + b64("chartreuse-ish"), "background"},
		{"imageMogr2/background/!!!", "background"},
		{"imageMogr2/bordercolor/" + b64("123456"), "bordercolor"},
		{"imageMogr2/extent/100", "extent"},
		{"imageMogr2/extent/0x100", "extent"},
		{"imageMogr2/extent/100x10000", "extent"},
		{"imageMogr2/extent/axb", "extent"},
		{"imageMogr2/border/-1x2", "border"},
		{"imageMogr2/border/10000", "border"},
		{"imageMogr2/border/x", "border"},
		{"imageMogr2/sharpen/0", "sharpen"},
		{"imageMogr2/sharpen/301", "sharpen"},
		{"imageMogr2/sharpen/1.5", "sharpen"},
		{"imageView2/2/w/100/colors/1", "colors"},
		{"imageView2/2/w/100/colors/300", "colors"},
	}
	for _, c := range cases {
		_, err := do(t, r, c.q, storm)
		var pe *fop.ParseError
		if !errors.As(err, &pe) || status(err) != 400 {
			t.Errorf("%s: got %v (status %d), want a 400 ParseError", c.q, err, status(err))
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, c.name) {
			t.Errorf("%s: message %q should be one line naming %s", c.q, msg, c.name)
		}
	}
	good := []string{
		"imageMogr2/size-limit/15k", "imageMogr2/size-limit/15K!", "imageMogr2/size-limit/1m",
		"imageMogr2/size-limit/5000", "imageMogr2/size-limit/$(fsize)!",
		"imageMogr2/colors/2", "imageMogr2/colors/256",
		"imageMogr2/background/" + b64("#FF0000"), "imageMogr2/background/" + b64("#ff000080"),
		"imageMogr2/background/" + b64("transparent"), "imageMogr2/background/" + strings.TrimRight(b64("Red"), "="),
		"imageMogr2/extent/300x200", "imageMogr2/border/10", "imageMogr2/border/10x0",
		"imageMogr2/bordercolor/" + b64("#00ff00"), "imageMogr2/sharpen/1", "imageMogr2/sharpen/300",
		"imageView2/2/w/100/colors/64",
	}
	for _, q := range good {
		cmd := parseCmd(t, q)
		if err := r[cmd.Name].(fop.Validator).Validate(cmd); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}

func TestParseColour(t *testing.T) {
	cases := []struct {
		in   string
		want Colour
	}{
		{"#FF0000", Colour{255, 0, 0, 255}},
		{"#00ff0080", Colour{0, 255, 0, 128}},
		{"white", Colour{255, 255, 255, 255}},
		{"Transparent", Colour{0, 0, 0, 0}},
		{"green", Colour{0, 128, 0, 255}},
	}
	for _, c := range cases {
		got, err := ParseColour(b64(c.in))
		if err != nil || got != c.want {
			t.Errorf("%q: got %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

var (
	red   = color.NRGBA{255, 0, 0, 255}
	green = color.NRGBA{0, 255, 0, 255}
)

// extent places the image per gravity on a canvas of the background colour
// (pixel-exact, PNG output), and cuts like a crop when the canvas is smaller.
func TestExtentGravity(t *testing.T) {
	r := defReg(t)
	thumb := decode(t, mustDo(t, r, "imageMogr2/thumbnail/192x/format/png", storm).Data) // 192x108
	if b := thumb.Bounds(); b.Dx() != 192 || b.Dy() != 108 {
		t.Fatalf("thumb %v", b)
	}
	bg := "/background/" + b64("#FF0000")
	cases := []struct {
		gravity string
		x, y    int // where the thumb's top-left lands on the 300x200 canvas
	}{
		{"NorthWest", 0, 0}, {"North", 54, 0}, {"NorthEast", 108, 0},
		{"West", 0, 46}, {"Center", 54, 46}, {"East", 108, 46},
		{"SouthWest", 0, 92}, {"South", 54, 92}, {"SouthEast", 108, 92},
	}
	for _, c := range cases {
		q := "imageMogr2/thumbnail/192x/gravity/" + c.gravity + "/extent/300x200" + bg + "/format/png"
		m := decode(t, mustDo(t, r, q, storm).Data)
		if b := m.Bounds(); b.Dx() != 300 || b.Dy() != 200 {
			t.Errorf("%s: %v, want 300x200", c.gravity, b)
			continue
		}
		for _, p := range [][2]int{{0, 0}, {191, 0}, {0, 107}, {191, 107}, {96, 54}} {
			if got, want := nrgba(m, c.x+p[0], c.y+p[1]), nrgba(thumb, p[0], p[1]); got != want {
				t.Errorf("%s: image pixel %v at %v is %v, want %v", c.gravity, p, [2]int{c.x + p[0], c.y + p[1]}, got, want)
			}
		}
		// the new area: just outside the placed image, on every side there is one
		for _, p := range [][2]int{{c.x - 1, c.y}, {c.x + 192, c.y}, {c.x, c.y - 1}, {c.x, c.y + 108}} {
			if p[0] < 0 || p[1] < 0 || p[0] >= 300 || p[1] >= 200 {
				continue
			}
			if got := nrgba(m, p[0], p[1]); got != red {
				t.Errorf("%s: new area %v is %v, want red", c.gravity, p, got)
			}
		}
	}
	// odd sides, ImageMagick's rounding: 191x107 centred on 300x200 lands
	// at (150-95, 100-53) = (55, 47)
	odd := decode(t, mustDo(t, r, "imageMogr2/thumbnail/191x/format/png", storm).Data)
	m := decode(t, mustDo(t, r, "imageMogr2/thumbnail/191x/gravity/Center/extent/300x200"+bg+"/format/png", storm).Data)
	if odd.Bounds().Dx() != 191 || odd.Bounds().Dy() != 107 {
		t.Fatalf("odd thumb %v", odd.Bounds())
	}
	if got, want := nrgba(m, 55, 47), nrgba(odd, 0, 0); got != want || nrgba(m, 54, 47) != red || nrgba(m, 55, 46) != red {
		t.Errorf("odd centre: image not at (55,47): %v vs %v", got, want)
	}
	// smaller canvas: the same pixels as the crop with that gravity
	for _, g := range []string{"NorthWest", "Center", "SouthEast"} {
		e := decode(t, mustDo(t, r, "imageMogr2/thumbnail/192x/gravity/"+g+"/extent/100x50/format/png", storm).Data)
		c := decode(t, mustDo(t, r, "imageMogr2/thumbnail/192x/gravity/"+g+"/crop/100x50/format/png", storm).Data)
		if e.Bounds() != c.Bounds() {
			t.Fatalf("%s: extent %v, crop %v", g, e.Bounds(), c.Bounds())
		}
		for _, p := range [][2]int{{0, 0}, {99, 49}, {50, 25}} {
			if nrgba(e, p[0], p[1]) != nrgba(c, p[0], p[1]) {
				t.Errorf("%s: extent and crop differ at %v", g, p)
			}
		}
	}
	// no background: white; a transparent one makes a JPEG source's new area transparent
	m = decode(t, mustDo(t, r, "imageMogr2/thumbnail/192x/extent/200x200/format/png", storm).Data)
	if got := nrgba(m, 199, 199); got != (color.NRGBA{255, 255, 255, 255}) {
		t.Errorf("default extent colour %v, want white", got)
	}
	m = decode(t, mustDo(t, r, "imageMogr2/thumbnail/192x/extent/200x200/background/"+b64("transparent")+"/format/png", storm).Data)
	if got := nrgba(m, 199, 199); got.A != 0 {
		t.Errorf("transparent extent: %v", got)
	}
	if got := nrgba(m, 5, 5); got.A != 255 {
		t.Errorf("image pixel under transparent extent: %v", got)
	}
}

// border adds W px left and right and H px top and bottom, in bordercolor
// (default ImageMagick's #DFDFDF).
// The plan refuses a canvas over the output limits before anything is
// decoded.
func TestCanvasLimits(t *testing.T) {
	r := defReg(t)
	loads := 0
	orig := loadImage
	defer func() { loadImage = orig }()
	loadImage = func(b []byte, o vips.LoadOptions) (*vips.Image, error) { loads++; return orig(b, o) }
	for _, q := range []string{"imageMogr2/extent/9999x9999", "imageMogr2/border/5000", "imageMogr2/thumbnail/100x/border/5000x10"} {
		_, err := do(t, r, q, storm)
		if status(err) != 400 || !strings.Contains(err.Error(), "too large") {
			t.Errorf("%s: %v, want 400 too large", q, err)
		}
	}
	if loads != 0 {
		t.Errorf("%d decodes for refused canvases", loads)
	}
}

func TestBorder(t *testing.T) {
	r := defReg(t)
	thumb := decode(t, mustDo(t, r, "imageMogr2/thumbnail/192x/format/png", storm).Data)
	cases := []struct {
		q      string
		bw, bh int
		col    color.NRGBA
	}{
		{"border/10x5/bordercolor/" + b64("#00FF00"), 10, 5, green},
		{"bordercolor/" + b64("#00FF00") + "/border/10x5", 10, 5, green},
		{"border/7", 7, 7, color.NRGBA{0xDF, 0xDF, 0xDF, 255}},
		{"border/0x3/bordercolor/" + b64("red"), 0, 3, red},
	}
	for _, c := range cases {
		q := "imageMogr2/thumbnail/192x/" + c.q + "/format/png"
		m := decode(t, mustDo(t, r, q, storm).Data)
		w, h := 192+2*c.bw, 108+2*c.bh
		if b := m.Bounds(); b.Dx() != w || b.Dy() != h {
			t.Errorf("%s: %v, want %dx%d", c.q, b, w, h)
			continue
		}
		for _, p := range [][2]int{{c.bw - 1, c.bh + 50}, {w - c.bw, c.bh + 50}, {c.bw + 96, c.bh - 1}, {c.bw + 96, h - c.bh}, {0, 0}, {w - 1, h - 1}} {
			if p[0] < 0 || p[1] < 0 || p[0] >= w || p[1] >= h || (c.bw == 0 && (p[0] == c.bw-1 || p[0] == w-c.bw)) {
				continue
			}
			if got := nrgba(m, p[0], p[1]); got != c.col {
				t.Errorf("%s: border pixel %v is %v, want %v", c.q, p, got, c.col)
			}
		}
		for _, p := range [][2]int{{0, 0}, {191, 107}} {
			if got, want := nrgba(m, c.bw+p[0], c.bh+p[1]), nrgba(thumb, p[0], p[1]); got != want {
				t.Errorf("%s: image pixel %v is %v, want %v", c.q, p, got, want)
			}
		}
	}
}

// background colours what a rotate uncovers and what a JPEG flattens.
func TestBackground(t *testing.T) {
	r := defReg(t)
	blue := color.NRGBA{0, 0, 255, 255}
	m := decode(t, mustDo(t, r, "imageMogr2/thumbnail/200x/rotate/30/background/"+b64("#0000FF"), storm).Data)
	if got := nrgba(m, 1, 1); !near(got, blue, 40) {
		t.Errorf("rotate corner %v, want blue", got)
	}
	// a transparent PNG flattened to JPEG: the background, not white
	tr := image.NewNRGBA(image.Rect(0, 0, 20, 20))
	var b bytes.Buffer
	if err := png.Encode(&b, tr); err != nil {
		t.Fatal(err)
	}
	m = decode(t, mustDo(t, r, "imageMogr2/format/jpg/background/"+b64("#FF0000"), b.Bytes()).Data)
	if got := nrgba(m, 10, 10); !near(got, red, 40) {
		t.Errorf("flattened %v, want red", got)
	}
	// a translucent background flattens onto white
	m = decode(t, mustDo(t, r, "imageMogr2/format/jpg/background/"+b64("transparent"), b.Bytes()).Data)
	if got := nrgba(m, 10, 10); !near(got, color.NRGBA{255, 255, 255, 255}, 8) {
		t.Errorf("flattened on transparent %v, want white", got)
	}
}

// edgeEnergy is the sum of absolute horizontal differences of the green
// channel: sharpening raises it.
func edgeEnergy(m image.Image) int {
	e, b := 0, m.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X + 1; x < b.Max.X; x++ {
			d := int(nrgba(m, x, y).G) - int(nrgba(m, x-1, y).G)
			if d < 0 {
				d = -d
			}
			e += d
		}
	}
	return e
}

func TestSharpen(t *testing.T) {
	r := defReg(t)
	plain := mustDo(t, r, "imageMogr2/thumbnail/400x/format/png", storm).Data
	base := edgeEnergy(decode(t, plain))
	prev := base
	for _, n := range []int{10, 70, 300} {
		out := mustDo(t, r, fmt.Sprintf("imageMogr2/thumbnail/400x/sharpen/%d/format/png", n), storm).Data
		if bytes.Equal(out, plain) {
			t.Errorf("sharpen/%d: unchanged", n)
		}
		if w, h := size(t, out); w != 400 || h != 225 {
			t.Errorf("sharpen/%d: %dx%d, want 400x225", n, w, h)
		}
		e := edgeEnergy(decode(t, out))
		if e <= prev {
			t.Errorf("sharpen/%d: edge energy %d, not above %d", n, e, prev)
		}
		t.Logf("sharpen/%d: edge energy %d (plain %d)", n, e, base)
		prev = e
	}
	one := mustDo(t, r, "imageMogr2/thumbnail/400x/sharpen/1/format/png", storm).Data
	seventy := mustDo(t, r, "imageMogr2/thumbnail/400x/sharpen/70/format/png", storm).Data
	if !bytes.Equal(one, seventy) {
		t.Errorf("sharpen/1 should be sharpen/70")
	}
}

func TestSizeLimit(t *testing.T) {
	r := defReg(t)
	for _, c := range []string{"400k", "200k", "100k", "50k", "30000"} {
		out := mustDo(t, r, "imageMogr2/size-limit/"+c, storm)
		l, _ := parseSizeLimit(parseCmd(t, "imageMogr2"), c)
		if len(out.Data) > int(l.bytes) {
			t.Errorf("size-limit/%s: %d bytes", c, len(out.Data))
		}
		if w, h := size(t, out.Data); w != 1920 || h != 1080 {
			t.Errorf("size-limit/%s: %dx%d", c, w, h)
		}
		t.Logf("size-limit/%s: %d bytes (source %d)", c, len(out.Data), len(storm))
	}
	// impossible cap: with '!' the original bytes, without it the smallest result
	out := mustDo(t, r, "imageMogr2/size-limit/1k!", storm)
	if !bytes.Equal(out.Data, storm) {
		t.Errorf("size-limit/1k!: not the original (%d bytes)", len(out.Data))
	}
	out = mustDo(t, r, "imageMogr2/size-limit/1k", storm)
	if bytes.Equal(out.Data, storm) || len(out.Data) <= 1024 || size2(t, out.Data) != [2]int{1920, 1080} {
		t.Errorf("size-limit/1k: %d bytes", len(out.Data))
	}
	// '!': a result not smaller than the original gives the original
	small := mustDo(t, r, "imageMogr2/thumbnail/300x/quality/20!", storm).Data
	out = mustDo(t, r, "imageMogr2/quality/100!/size-limit/1m!", small)
	if !bytes.Equal(out.Data, small) {
		t.Errorf("quality/100!/size-limit/1m!: %d bytes, not the %d-byte original", len(out.Data), len(small))
	}
	out = mustDo(t, r, "imageMogr2/quality/100!/size-limit/1m", small)
	if len(out.Data) <= len(small) {
		t.Errorf("quality/100!/size-limit/1m: %d bytes, expected more than the %d-byte source", len(out.Data), len(small))
	}
	out = mustDo(t, r, "imageMogr2/size-limit/$(fsize)", storm)
	if len(out.Data) > len(storm) {
		t.Errorf("size-limit/$(fsize): %d > %d", len(out.Data), len(storm))
	}
	// not JPEG: encoded as usual; '!' still returns the original over the cap
	png1 := mustDo(t, r, "imageMogr2/thumbnail/300x/format/png", storm).Data
	png2 := mustDo(t, r, "imageMogr2/thumbnail/300x/format/png/size-limit/10k", storm).Data
	if !bytes.Equal(png1, png2) {
		t.Errorf("size-limit changed a PNG")
	}
	out = mustDo(t, r, "imageMogr2/thumbnail/300x/format/png/size-limit/10k!", storm)
	if !bytes.Equal(out.Data, storm) {
		t.Errorf("PNG over the cap with '!': not the original")
	}
}

func size2(t *testing.T, b []byte) [2]int {
	w, h := size(t, b)
	return [2]int{w, h}
}

// The search takes the highest quality that fits, in at most
// maxLimitEncodes encodes, for every start quality and cap.
func TestSearchQuality(t *testing.T) {
	for q := 1; q <= 100; q++ {
		for limit := 0; limit <= 110; limit++ {
			calls := 0
			enc := func(k int) ([]byte, error) {
				calls++
				if k < 1 || k > q {
					t.Fatalf("q %d: encode at %d", q, k)
				}
				return make([]byte, k), nil // size grows with the quality
			}
			b, n, err := searchQuality(q, limit, enc)
			if err != nil || n != calls || n > maxLimitEncodes {
				t.Fatalf("q %d limit %d: %d encodes (%d counted), %v", q, limit, calls, n, err)
			}
			want := min(q, max(limit, 1))
			if len(b) != want {
				t.Fatalf("q %d limit %d: quality %d, want %d", q, limit, len(b), want)
			}
		}
	}
}

// A real search: at most maxLimitEncodes encodes, the result fits.
func TestFitJPEGEncodes(t *testing.T) {
	if _, err := New(NewDefaultConfig()); err != nil { // starts libvips
		t.Fatal(err)
	}
	for _, limit := range []int{150 << 10, 40 << 10, 1 << 10} {
		im, err := vips.Load(storm, vips.LoadOptions{Sequential: true, FailOnTruncated: true})
		if err != nil {
			t.Fatal(err)
		}
		b, n, err := fitJPEG(im, output{format: "jpeg", quality: 90}, limit)
		im.Close()
		if err != nil {
			t.Fatal(err)
		}
		if n > maxLimitEncodes {
			t.Errorf("limit %d: %d encodes", limit, n)
		}
		if limit > 1<<10 && len(b) > limit {
			t.Errorf("limit %d: %d bytes", limit, len(b))
		}
		t.Logf("limit %d: %d bytes after %d encodes", limit, len(b), n)
	}
}

// paletteSize decodes a PNG or GIF and returns its palette's length (0 when
// it is not paletted).
func paletteSize(t *testing.T, b []byte) int {
	p, ok := decode(t, b).(*image.Paletted)
	if !ok {
		return 0
	}
	return len(p.Palette)
}

func TestColors(t *testing.T) {
	r := defReg(t)
	cases := []struct {
		q   string
		src []byte
		max int
	}{
		{"imageMogr2/thumbnail/400x/format/png/colors/16", storm, 16},
		{"imageMogr2/thumbnail/400x/format/png/colors/100", storm, 100},
		{"imageMogr2/thumbnail/400x/colors/2", mate, 2},
		{"imageMogr2/thumbnail/400x/format/gif/colors/8", storm, 8},
		{"imageView2/2/w/300/format/png/colors/32", storm, 32},
		{"imageView2/2/w/300/colors/5", mate, 5},
	}
	for _, c := range cases {
		out := mustDo(t, r, c.q, c.src)
		n := paletteSize(t, out.Data)
		if n < 2 || n > c.max {
			t.Errorf("%s: %d colours, want 2..%d", c.q, n, c.max)
		}
		t.Logf("%s: %d colours, %d bytes", c.q, n, len(out.Data))
	}
	// more than a power of two: 100 is not rounded down to 64
	if n := paletteSize(t, mustDo(t, r, "imageMogr2/thumbnail/400x/format/png/colors/100", storm).Data); n <= 64 {
		t.Errorf("colors/100: only %d colours", n)
	}
	// JPEG ignores colors
	a := mustDo(t, r, "imageMogr2/thumbnail/300x", storm).Data
	b := mustDo(t, r, "imageMogr2/thumbnail/300x/colors/4", storm).Data
	if !bytes.Equal(a, b) {
		t.Errorf("colors changed a JPEG")
	}
	// alpha survives: mate's transparent pixels stay transparent
	m := decode(t, mustDo(t, r, "imageMogr2/format/png/colors/64", mate).Data)
	src := decode(t, mate)
	for _, p := range [][2]int{{0, 0}, {960, 720}, {1919, 1439}} {
		if a, b := nrgba(m, p[0], p[1]).A, nrgba(src, p[0], p[1]).A; (a == 0) != (b == 0) {
			t.Errorf("alpha at %v: %d, source %d", p, a, b)
		}
	}
}
