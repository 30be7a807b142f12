package image

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"strings"
	"sync"
	"testing"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/storage"
)

// wmObjects is a bucket set in memory, keyed "bucket/key". It honours
// max as the gateway's does and records the max of each call.
type wmObjects struct {
	mu   sync.Mutex
	objs map[string][]byte
	maxs []int64
}

func (f *wmObjects) ReadObject(_ context.Context, _, bucket, key string, max int64) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maxs = append(f.maxs, max)
	if bucket != "pics" {
		return nil, storage.NoSuchBucket(bucket)
	}
	b, ok := f.objs[bucket+"/"+key]
	if !ok {
		return nil, errs.NotFound("no such key")
	}
	if int64(len(b)) > max {
		return nil, errs.BadRequest("object is over the %d-byte limit", max)
	}
	return b, nil
}

func wmB64(s string) string { return fop.EncodeBase64([]byte(s)) }

// wmURL is the image/ value naming pics/<key>.
func wmURL(key string) string { return wmB64("http://gw.example/pics/" + key) }

// solid is a w×h PNG of one colour.
func wmSolid(t testing.TB, w, h int, c color.NRGBA) []byte {
	t.Helper()
	im := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(im.Pix); i += 4 {
		im.Pix[i], im.Pix[i+1], im.Pix[i+2], im.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, im); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var (
	wmRed  = color.NRGBA{255, 0, 0, 255}
	wmBlue = color.NRGBA{0, 0, 255, 255}
)

// wmFixture is a registry whose storage holds a 40×30 red and a 40×30 blue
// PNG, and a base photograph: storm-1920x1080.jpg as a 400×225 PNG, so
// that pixels compare exactly.
type wmFixture struct {
	reg  fop.Registry
	objs *wmObjects
	base []byte
	img  *image.NRGBA
}

func newWMFixture(t *testing.T) *wmFixture {
	t.Helper()
	objs := &wmObjects{objs: map[string][]byte{
		"pics/red.png":  wmSolid(t, 40, 30, wmRed),
		"pics/blue.png": wmSolid(t, 40, 30, wmBlue),
	}}
	cfg := NewDefaultConfig()
	cfg.Objects = objs
	reg := newReg(t, cfg)
	out, err := do(t, reg, "imageView2/2/w/400/format/png", storm)
	if err != nil {
		t.Fatal(err)
	}
	return &wmFixture{reg: reg, objs: objs, base: out.Data, img: wmDecode(t, out.Data)}
}

func wmDecode(t testing.TB, b []byte) *image.NRGBA {
	t.Helper()
	im, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	n := image.NewNRGBA(im.Bounds())
	for y := im.Bounds().Min.Y; y < im.Bounds().Max.Y; y++ {
		for x := im.Bounds().Min.X; x < im.Bounds().Max.X; x++ {
			n.Set(x, y, im.At(x, y))
		}
	}
	return n
}

func (f *wmFixture) run(t *testing.T, q string) *image.NRGBA {
	t.Helper()
	out, err := do(t, f.reg, q, f.base)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if out.MIME != "image/png" {
		t.Fatalf("%s: MIME %q, want the input's image/png", q, out.MIME)
	}
	im := wmDecode(t, out.Data)
	if im.Bounds() != f.img.Bounds() {
		t.Fatalf("%s: %v, want the input's %v", q, im.Bounds(), f.img.Bounds())
	}
	return im
}

func TestWatermarkParams(t *testing.T) {
	f := newWMFixture(t)
	wm := "image/" + wmURL("red.png")
	txt := "text/" + wmB64("qufop")
	tests := []struct {
		q    string
		want string // substring of the error; "" for valid
	}{
		{"watermark", "needs a mode"},
		{"watermark/4/" + wm, "unknown watermark mode"},
		{"watermark/1", "needs image/"},
		{"watermark/1/dissolve/50", "needs image/"},
		{"watermark/1/image/a+b", "not URL-safe base64"},
		{"watermark/1/image/" + wmB64("ftp://h/pics/a.png"), "not an http(s)"},
		{"watermark/1/image/" + wmB64("http://h/"), "does not name a bucket"},
		{"watermark/1/image/" + wmB64("http://h/pics"), "bad key"},
		{"watermark/1/image/" + wmB64("http://h/pics/a.png?imageMogr2/rotate/90"), "query or fragment"},
		{"watermark/1/" + wm + "/dissolve/0", "dissolve must be in 1..100"},
		{"watermark/1/" + wm + "/dissolve/101", "dissolve must be in 1..100"},
		{"watermark/1/" + wm + "/dissolve/half", "dissolve must be an integer"},
		{"watermark/1/" + wm + "/gravity/Up", `unknown gravity "Up"`},
		{"watermark/1/" + wm + "/ws/1.5", "ws must be a number in 0..1"},
		{"watermark/1/" + wm + "/ws/-0.1", "ws must be a number in 0..1"},
		{"watermark/1/" + wm + "/ws/NaN", "ws must be a number in 0..1"},
		{"watermark/1/" + wm + "/dx/ten", "dx must be an integer"},
		{"watermark/1/" + wm + "/dy/10000", "dy must be in -9999..9999"},
		{"watermark/1/" + wm + "/" + txt, `"text" does not apply to image watermarks`},
		{"watermark/1/" + wm + "/fontsize/300", `"fontsize" does not apply to image watermarks`},
		{"watermark/1/" + wm + "/" + wm, "given twice"},
		{"watermark/1/" + wm + "/dissolve", "needs a value"},
		{"watermark/1/" + wm + "/blogo/1", `unknown parameter "blogo"`},
		{"watermark/2", "needs text/"},
		{"watermark/2/text/" + wmB64("\xff\xfe"), "not UTF-8"},
		{"watermark/2/" + txt + "/fontsize/20001", "fontsize must be in 0..20000"},
		{"watermark/2/" + txt + "/fontsize/-1", "fontsize must be in 0..20000"},
		{"watermark/2/" + txt + "/fill/" + wmB64("#12345"), "not #RRGGBB"},
		{"watermark/2/" + txt + "/fill/" + wmB64("chartreuse-ish"), "not #RRGGBB"},
		{"watermark/2/" + txt + "/fill/a+b", "not URL-safe base64"},
		{"watermark/2/" + txt + "/font/" + wmB64("Sans\nSerif"), "control characters"},
		{"watermark/2/" + txt + "/ws/0.5", `"ws" does not apply to text watermarks`},
		{"watermark/2/text/" + wmB64(strings.Repeat("x", 1000)) + "/fontsize/20000", "text too wide"},
		{"watermark/3", "at least one"},
		{"watermark/3/dissolve/50/" + wm, "comes before the first image or text"},
		{"watermark/3" + strings.Repeat("/"+txt, 21), "at most 20 watermarks"},
		// valid
		{"watermark/1/" + wm, ""},
		{"watermark/1/dissolve/50/" + wm + "/gravity/center/dx/-5/dy/0/ws/0.0", ""},
		{"watermark/2/" + txt + "/font/" + wmB64("DejaVu Sans") + "/fontsize/0/fill/" + wmB64("Red"), ""},
		{"watermark/3/" + wm + "/dissolve/50/" + txt + "/dissolve/60/" + wm + "/dissolve/70", ""},
	}
	p := f.reg["watermark"].(fop.Validator)
	for _, tc := range tests {
		err := p.Validate(parseCmd(t, tc.q))
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.q, err)
			}
			continue
		}
		var pe *fop.ParseError
		switch {
		case err == nil:
			t.Errorf("%s: accepted, want an error with %q", tc.q, tc.want)
		case !errors.As(err, &pe) || errs.Status(err) != 400:
			t.Errorf("%s: %v (status %d), want a 400 ParseError", tc.q, err, errs.Status(err))
		case !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: %q, want one line with %q", tc.q, err, tc.want)
		}
	}
}

func TestWatermarkDefaults(t *testing.T) {
	f := newWMFixture(t)
	c := f.reg["watermark"].(*Watermark)
	parse := func(q string) []mark {
		t.Helper()
		ms, err := c.parse(parseCmd(t, q))
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return ms
	}
	img := parse("watermark/1/image/" + wmURL("dir/red.png"))[0]
	if img.bucket != "pics" || img.key != "dir/red.png" || img.dissolve != 100 || img.grav != southEast ||
		img.dx != 10 || img.dy != 10 || img.ws != 0 {
		t.Errorf("image defaults: %+v", img)
	}
	txt := parse("watermark/2/text/" + wmB64("七牛云"))[0]
	if txt.text != "七牛云" || txt.font != DefaultFont || txt.twips != 240 || txt.fill != (Colour{0, 0, 0, 255}) ||
		txt.dissolve != 100 || txt.grav != southEast || txt.dx != 10 || txt.dy != 10 {
		t.Errorf("text defaults: %+v", txt)
	}
	if m := parse("watermark/2/text/" + wmB64("a") + "/fontsize/0/fill/" + wmB64("#0A0b0C"))[0]; m.twips != 240 || m.fill != (Colour{10, 11, 12, 255}) {
		t.Errorf("fontsize/0 and fill #0A0b0C: %+v", m)
	}
	ms := parse("watermark/3/image/" + wmURL("red.png") + "/dx/1/text/" + wmB64("a") + "/dx/2/image/" + wmURL("blue.png"))
	if len(ms) != 3 || ms[0].dx != 1 || ms[1].dx != 2 || ms[2].dx != 10 || ms[1].kind != markText || ms[2].key != "blue.png" {
		t.Errorf("mode 3: %+v", ms)
	}
}

// TestWatermarkStorageErrors: the watermark image must be a stored object;
// each failure is a 400 naming it.
func TestWatermarkStorageErrors(t *testing.T) {
	f := newWMFixture(t)
	tests := []struct{ q, want string }{
		{"watermark/1/image/" + wmURL("missing.png"), `no object "missing.png" in bucket "pics"`},
		{"watermark/1/image/" + wmB64("http://h/nobucket/red.png"), `no bucket "nobucket"`},
		{"watermark/3/image/" + wmURL("red.png") + "/image/" + wmURL("gone.png"), `no object "gone.png"`},
	}
	for _, tc := range tests {
		_, err := do(t, f.reg, tc.q, f.base)
		if errs.Status(err) != 400 || !strings.Contains(errs.Public(err), tc.want) {
			t.Errorf("%s: %v (status %d), want 400 with %q", tc.q, err, errs.Status(err), tc.want)
		}
	}
	// Without storage access, 400 rather than a fetch.
	noObjs := defReg(t)
	if _, err := do(t, noObjs, "watermark/1/image/"+wmURL("red.png"), f.base); errs.Status(err) != 400 {
		t.Errorf("no Objects: %v, want 400", err)
	}
}

// TestWatermarkByteLimit: the watermark image's bytes count with the
// input's against MaxSrcBytes.
func TestWatermarkByteLimit(t *testing.T) {
	objs := &wmObjects{objs: map[string][]byte{"pics/red.png": wmSolid(t, 40, 30, wmRed)}}
	base := wmSolid(t, 100, 80, wmBlue)
	cfg := NewDefaultConfig()
	cfg.Objects = objs
	wmLen := int64(len(objs.objs["pics/red.png"]))
	cfg.MaxSrcBytes = int64(len(base)) + wmLen - 1 // one byte short
	reg := newReg(t, cfg)
	q := "watermark/3/image/" + wmURL("red.png") + "/image/" + wmURL("red.png")
	if _, err := do(t, reg, q, base); errs.Status(err) != 400 {
		t.Errorf("input + watermark one byte over the limit: %v, want 400", err)
	}
	if len(objs.maxs) != 1 || objs.maxs[0] != wmLen-1 {
		t.Errorf("read with max %v, want one read with %d (the limit less the input)", objs.maxs, wmLen-1)
	}
	cfg.MaxSrcBytes++
	objs.maxs = nil
	if _, err := do(t, newReg(t, cfg), q, base); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	if len(objs.maxs) != 1 {
		t.Errorf("the same image twice was read %d times, want once", len(objs.maxs))
	}
	// The watermark image passes the source limits too.
	cfg = NewDefaultConfig()
	cfg.Objects = objs
	cfg.MaxSrcSide = 39
	if _, err := do(t, newReg(t, cfg), "watermark/1/image/"+wmURL("red.png"), wmSolid(t, 30, 30, wmBlue)); errs.Status(err) != 400 ||
		!strings.Contains(errs.Public(err), "source image too large") {
		t.Errorf("40 px watermark with a 39 px side limit: %v, want 400", err)
	}
}

// checkBox checks that im is c inside r (within tol per channel) and the
// base image outside it (exactly).
func wmCheckBox(t *testing.T, name string, im, base *image.NRGBA, r image.Rectangle, c color.NRGBA, tol int) {
	t.Helper()
	bad := 0
	for y := 0; y < im.Rect.Dy() && bad < 5; y++ {
		for x := 0; x < im.Rect.Dx() && bad < 5; x++ {
			got := im.NRGBAAt(x, y)
			want := base.NRGBAAt(x, y)
			d := 0
			if (image.Point{x, y}).In(r) {
				want, d = c, tol
			}
			if !wmNear(got, want, d) {
				t.Errorf("%s: pixel (%d,%d) is %v, want %v (watermark at %v)", name, x, y, got, want, r)
				bad++
			}
		}
	}
}

func wmNear(a, b color.NRGBA, tol int) bool {
	d := func(x, y uint8) bool { return int(x)-int(y) <= tol && int(y)-int(x) <= tol }
	return d(a.R, b.R) && d(a.G, b.G) && d(a.B, b.B) && d(a.A, b.A)
}

// TestWatermarkPlacement puts an opaque 40×30 red image with each gravity
// on a 400×225 photograph, and checks every pixel: red exactly where
// ImageMagick's -gravity/-geometry +dx+dy put it, the photograph elsewhere.
func TestWatermarkPlacement(t *testing.T) {
	f := newWMFixture(t)
	const W, H, w, h, dx, dy = 400, 225, 40, 30, 7, 5
	tests := []struct {
		gravity string
		x, y    int
	}{
		{"NorthWest", dx, dy},
		{"North", (W-w)/2 + dx, dy},
		{"NorthEast", W - w - dx, dy},
		{"West", dx, (H-h)/2 + dy},
		{"Center", (W-w)/2 + dx, (H-h)/2 + dy},
		{"East", W - w - dx, (H-h)/2 + dy},
		{"SouthWest", dx, H - h - dy},
		{"South", (W-w)/2 + dx, H - h - dy},
		{"SouthEast", W - w - dx, H - h - dy},
	}
	for _, tc := range tests {
		im := f.run(t, "watermark/1/image/"+wmURL("red.png")+"/gravity/"+tc.gravity+"/dx/7/dy/5")
		wmCheckBox(t, tc.gravity, im, f.img, image.Rect(tc.x, tc.y, tc.x+w, tc.y+h), wmRed, 0)
	}
	// Defaults: SouthEast, 10 px from the right and bottom edges.
	im := f.run(t, "watermark/1/image/"+wmURL("red.png"))
	wmCheckBox(t, "defaults", im, f.img, image.Rect(W-w-10, H-h-10, W-10, H-10), wmRed, 0)
	// A mark partly outside the image is clipped.
	im = f.run(t, "watermark/1/image/"+wmURL("red.png")+"/gravity/NorthWest/dx/-10/dy/-20")
	wmCheckBox(t, "clipped", im, f.img, image.Rect(0, 0, w-10, h-20), wmRed, 0)
	// One entirely outside leaves the image unchanged.
	im = f.run(t, "watermark/1/image/"+wmURL("red.png")+"/gravity/NorthWest/dx/400")
	wmCheckBox(t, "outside", im, f.img, image.Rectangle{}, wmRed, 0)
}

func TestWatermarkDissolve(t *testing.T) {
	f := newWMFixture(t)
	im := f.run(t, "watermark/1/image/"+wmURL("red.png")+"/gravity/NorthWest/dx/0/dy/0/dissolve/50")
	for _, p := range []image.Point{{0, 0}, {20, 15}, {39, 29}} {
		b, got := f.img.NRGBAAt(p.X, p.Y), im.NRGBAAt(p.X, p.Y)
		want := color.NRGBA{uint8((int(b.R) + 255) / 2), uint8(int(b.G) / 2), uint8(int(b.B) / 2), 255}
		if !wmNear(got, want, 2) {
			t.Errorf("dissolve 50 at %v: %v, want about %v (half-way between %v and red)", p, got, want, b)
		}
	}
	wmCheckBox(t, "dissolve outside", im, f.img, image.Rect(0, 0, 40, 30), im.NRGBAAt(0, 0), 255)
}

// TestWatermarkScale: ws scales the mark so that its short edge is ws
// times the image's short edge (225 px), keeping its aspect ratio.
func TestWatermarkScale(t *testing.T) {
	f := newWMFixture(t)
	tests := []struct {
		ws   string
		w, h int
	}{
		// short edge 0.5×225 = 112.5 → 113; 40×113/30 = 150.67 → 151
		{"0.5", 151, 113},
		// 0.1×225 = 22.5 → 23 (half up); 40×23/30 = 30.67 → 31
		{"0.1", 31, 23},
		{"0", 40, 30},
	}
	for _, tc := range tests {
		im := f.run(t, "watermark/1/image/"+wmURL("red.png")+"/gravity/NorthWest/dx/0/dy/0/ws/"+tc.ws)
		// Resampling a solid colour leaves it (almost) solid to its edges.
		wmCheckBox(t, "ws "+tc.ws, im, f.img, image.Rect(0, 0, tc.w, tc.h), wmRed, 8)
	}
}

// TestWatermarkOrder: in mode 3 a later watermark covers an earlier one.
func TestWatermarkOrder(t *testing.T) {
	f := newWMFixture(t)
	at := "/gravity/NorthWest/dx/0/dy/0"
	box := image.Rect(0, 0, 40, 30)
	im := f.run(t, "watermark/3/image/"+wmURL("red.png")+at+"/image/"+wmURL("blue.png")+at)
	wmCheckBox(t, "red then blue", im, f.img, box, wmBlue, 0)
	im = f.run(t, "watermark/3/image/"+wmURL("blue.png")+at+"/image/"+wmURL("red.png")+at)
	wmCheckBox(t, "blue then red", im, f.img, box, wmRed, 0)
	// Text after an image draws over it: some pixels of the box change.
	im = f.run(t, "watermark/3/image/"+wmURL("red.png")+at+"/text/"+wmB64("W")+"/fill/"+wmB64("#00FF00")+at+"/fontsize/400")
	if wmInkBox(im, f.img).Empty() || im.NRGBAAt(39, 29) != wmRed {
		t.Errorf("text over an image: ink box %v, corner %v", wmInkBox(im, f.img), im.NRGBAAt(39, 29))
	}
}

// inkBox is the bounding box of the pixels of im that differ from base.
func wmInkBox(im, base *image.NRGBA) image.Rectangle {
	var r image.Rectangle
	for y := 0; y < im.Rect.Dy(); y++ {
		for x := 0; x < im.Rect.Dx(); x++ {
			if !wmNear(im.NRGBAAt(x, y), base.NRGBAAt(x, y), 24) {
				r = r.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	return r
}

func TestWatermarkText(t *testing.T) {
	f := newWMFixture(t)
	box := func(q string) image.Rectangle {
		t.Helper()
		return wmInkBox(f.run(t, q), f.img)
	}
	magenta := "/fill/" + wmB64("#FF00FF")
	const W, H = 400, 225
	se := box("watermark/2/text/" + wmB64("qufop") + magenta)
	// SouthEast, 10 px in: the ink ends a little inside the text's
	// logical box (side bearings, descent).
	if se.Empty() || se.Max.X > W-10 || se.Max.X < W-10-4 || se.Max.Y > H-10 || se.Max.Y < H-10-6 {
		t.Errorf("qufop at SouthEast: ink box %v, want it to end near (%d,%d)", se, W-10, H-10)
	}
	// 240 twips = 12 px: "qufop" is about 12 px high with its ascenders and descenders.
	if se.Dy() < 8 || se.Dy() > 16 {
		t.Errorf("qufop at the default 240 twips: %d px high, want about 12", se.Dy())
	}
	nw := box("watermark/2/text/" + wmB64("qufop") + magenta + "/gravity/NorthWest/dx/30/dy/20")
	if nw.Empty() || nw.Min.X < 30 || nw.Min.X > 30+3 || nw.Min.Y < 20 || nw.Min.Y > 20+6 {
		t.Errorf("qufop at NorthWest 30,20: ink box %v", nw)
	}
	big := box("watermark/2/text/" + wmB64("qufop") + magenta + "/fontsize/480")
	if big.Dy() < se.Dy()*3/2 || big.Dx() < se.Dx()*3/2 {
		t.Errorf("fontsize 480: %v, not clearly larger than 240's %v", big, se)
	}
	// CJK text renders glyphs: a box unlike that of characters no font
	// has (Pango draws those as hex boxes, all alike), and unlike Latin.
	cjk := box("watermark/2/text/" + wmB64("七牛云") + magenta + "/fontsize/480")
	tofu := box("watermark/2/text/" + wmB64("\uE000\uE001\uE002") + magenta + "/fontsize/480")
	latin := box("watermark/2/text/" + wmB64("abc") + magenta + "/fontsize/480")
	if cjk.Empty() || cjk.Size() == tofu.Size() || cjk.Size() == latin.Size() {
		t.Errorf("七牛云: ink box %v, missing glyphs %v, Latin %v: want a box of its own", cjk.Size(), tofu.Size(), latin.Size())
	}
	// 七牛云 in a 24 px CJK font: three square glyphs, about 72×24 px.
	if cjk.Dx() < 60 || cjk.Dx() > 75 || cjk.Dy() < 18 || cjk.Dy() > 26 {
		t.Errorf("七牛云 at 480 twips (24 px): ink box %v, want about 72×24", cjk.Size())
	}
	// Text with no ink (blanks) draws nothing.
	if b := box("watermark/2/text/" + wmB64(" \n ") + magenta); !b.Empty() {
		t.Errorf("blank text: ink box %v, want none", b)
	}
	// An unknown family falls back to a font fontconfig picks: still ink.
	if b := box("watermark/2/text/" + wmB64("qufop") + magenta + "/font/" + wmB64("No Such Font")); b.Empty() {
		t.Error("unknown font family: no ink")
	}
	// dissolve 50 blends the text half-way (a large glyph's solid middle).
	im := f.run(t, "watermark/2/text/"+wmB64("█")+magenta+"/fontsize/2000/gravity/NorthWest/dx/0/dy/0/dissolve/50")
	p := image.Point{X: wmInkBox(im, f.img).Min.X + 10, Y: wmInkBox(im, f.img).Min.Y + 20}
	b, got := f.img.NRGBAAt(p.X, p.Y), im.NRGBAAt(p.X, p.Y)
	if want := (color.NRGBA{uint8((int(b.R) + 255) / 2), uint8(int(b.G) / 2), uint8((int(b.B) + 255) / 2), 255}); !wmNear(got, want, 3) {
		t.Errorf("text dissolve 50 at %v: %v, want about %v", p, got, want)
	}
	// So does a fill half transparent.
	im2 := f.run(t, "watermark/2/text/"+wmB64("█")+"/fill/"+wmB64("#FF00FF80")+"/fontsize/2000/gravity/NorthWest/dx/0/dy/0")
	if got2 := im2.NRGBAAt(p.X, p.Y); !wmNear(got2, got, 2) {
		t.Errorf("fill #FF00FF80 at %v: %v, want as dissolve 50: %v", p, got2, got)
	}
}

// TestWatermarkFormats: the output keeps the input's format (JPEG here, on
// the photograph itself), and an animated GIF gives its first frame.
func TestWatermarkFormats(t *testing.T) {
	f := newWMFixture(t)
	out, err := do(t, f.reg, "watermark/1/image/"+wmURL("red.png"), storm)
	if err != nil {
		t.Fatal(err)
	}
	if out.MIME != "image/jpeg" {
		t.Fatalf("MIME %q, want image/jpeg", out.MIME)
	}
	im := wmDecode(t, out.Data)
	if im.Rect.Dx() != 1920 || im.Rect.Dy() != 1080 {
		t.Fatalf("%v, want 1920x1080", im.Rect)
	}
	// The input's quality, as ImageMagick keeps it: a watermark should not
	// cost a photograph its quality.
	if got, want := EstimateJPEGQuality(out.Data), EstimateJPEGQuality(storm); got != want || want <= 0 {
		t.Errorf("JPEG quality %d, want the input's %d", got, want)
	}
	for _, p := range []image.Point{{1920 - 10 - 40 + 3, 1080 - 10 - 30 + 3}, {1920 - 10 - 3, 1080 - 10 - 3}} {
		if c := im.NRGBAAt(p.X, p.Y); !wmNear(c, wmRed, 40) {
			t.Errorf("JPEG at %v: %v, want red within JPEG tolerance", p, c)
		}
	}
	// Marks go on the image as displayed: blinds is stored 1920x1200 with
	// EXIF orientation 6, displayed 1200x1920.
	out, err = do(t, f.reg, "watermark/1/image/"+wmURL("red.png"), blinds)
	if err != nil {
		t.Fatal(err)
	}
	im = wmDecode(t, out.Data) // Go's decoder ignores EXIF orientation
	if im.Rect.Dx() != 1200 || im.Rect.Dy() != 1920 {
		t.Fatalf("EXIF orientation 6: %v, want the displayed 1200x1920", im.Rect)
	}
	if c := im.NRGBAAt(1200-10-20, 1920-10-15); !wmNear(c, wmRed, 40) {
		t.Errorf("EXIF orientation 6: %v at the displayed SouthEast corner, want red", c)
	}
	out, err = do(t, f.reg, "watermark/1/image/"+wmURL("red.png")+"/gravity/NorthWest/dx/0/dy/0", animatedGIF(3, 60, 50))
	if err != nil {
		t.Fatal(err)
	}
	if out.MIME != "image/gif" {
		t.Fatalf("GIF: MIME %q", out.MIME)
	}
	if w, h := size(t, out.Data); w != 60 || h != 50 {
		t.Errorf("GIF: %dx%d, want one 60x50 frame", w, h)
	}
}

// TestWatermarkConcurrent: text (Pango is not thread-safe; libvips
// serialises it) and image watermarks at once give what they give alone.
func TestWatermarkConcurrent(t *testing.T) {
	f := newWMFixture(t)
	q := "watermark/3/image/" + wmURL("red.png") + "/ws/0.2/text/" + wmB64("七牛云 qufop") + "/gravity/North/fontsize/600"
	want, err := do(t, f.reg, q, f.base)
	if err != nil {
		t.Fatal(err)
	}
	cmd, p := parseCmd(t, q), f.reg["watermark"]
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := p.Process(context.Background(), cmd, fop.Blob{Data: f.base})
			if err == nil && !bytes.Equal(out.Data, want.Data) {
				err = errors.New("result differs from the serial run's")
			}
			errc <- err
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Error(err)
		}
	}
}

// BenchmarkWatermark: an image and a text watermark on the 1920×1080
// photograph (JPEG in, JPEG out at its quality).
func BenchmarkWatermark(b *testing.B) {
	objs := &wmObjects{objs: map[string][]byte{"pics/red.png": wmSolid(b, 200, 100, wmRed)}}
	cfg := NewDefaultConfig()
	cfg.Objects = objs
	reg := newReg(b, cfg)
	for name, q := range map[string]string{
		"image": "watermark/1/image/" + wmURL("red.png") + "/dissolve/50",
		"text":  "watermark/2/text/" + wmB64("七牛云 qufop") + "/fontsize/800",
	} {
		b.Run(name, func(b *testing.B) {
			cmd, p := parseCmd(b, q), reg["watermark"]
			for i := 0; i < b.N; i++ {
				if _, err := p.Process(context.Background(), cmd, fop.Blob{Data: storm}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
