package image

import (
	"bytes"
	"errors"
	"image"
	"image/draw"
	"image/png"
	"testing"

	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image/vips"
)

// pixelsOf decodes b with Go's decoders into NRGBA bytes.
func pixelsOf(t *testing.T, b []byte) (*image.NRGBA, string) {
	t.Helper()
	m, f, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	n := image.NewNRGBA(m.Bounds())
	draw.Draw(n, n.Bounds(), m, m.Bounds().Min, draw.Src)
	return n, f
}

func samePixels(t *testing.T, a, b []byte) bool {
	t.Helper()
	pa, fa := pixelsOf(t, a)
	pb, fb := pixelsOf(t, b)
	return fa == fb && pa.Bounds() == pb.Bounds() && bytes.Equal(pa.Pix, pb.Pix)
}

func TestImageSlimJPEG(t *testing.T) {
	r := defReg(t)
	for _, c := range []struct {
		name   string
		src    []byte
		orient int
	}{{"storm", storm, 1}, {"blinds", blinds, 6}} {
		out := mustDo(t, r, "imageslim", c.src)
		if !out.Derived || len(out.Data) >= len(c.src) || out.MIME != "image/jpeg" {
			t.Fatalf("%s: %d -> %d bytes, derived %v, %s", c.name, len(c.src), len(out.Data), out.Derived, out.MIME)
		}
		t.Logf("%s: %d -> %d bytes (%.3f)", c.name, len(c.src), len(out.Data), float64(len(out.Data))/float64(len(c.src)))
		if !samePixels(t, c.src, out.Data) {
			t.Errorf("%s: pixels changed", c.name)
		}
		h, err := vips.Probe(out.Data)
		if err != nil {
			t.Fatal(err)
		}
		if got := max(h.Orientation, 1); got != c.orient {
			t.Errorf("%s: orientation %d, want %d", c.name, got, c.orient)
		}
		// no GPS, no EXIF thumbnail: at most the orientation block is left
		im, err := vips.Load(out.Data, vips.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ex, ok := im.Exif(); ok && len(ex) > 64 {
			t.Errorf("%s: %d bytes of EXIF left", c.name, len(ex))
		}
		if _, ok := im.String("exif-ifd3-GPSLatitude"); ok {
			t.Errorf("%s: GPS left", c.name)
		}
		im.Close()
		// already slim: the same bytes come back, not derived
		again := mustDo(t, r, "imageslim", out.Data)
		if !bytes.Equal(again.Data, out.Data) || again.Derived {
			t.Errorf("%s: second imageslim changed %d -> %d bytes", c.name, len(out.Data), len(again.Data))
		}
	}
}

func TestImageSlimPNG(t *testing.T) {
	r := defReg(t)
	// the repo's PNG, at zlevel 6 (zlib level 9 takes 9 s on it on this
	// machine): smaller with the same pixels, or the original
	out := mustDo(t, r, "imageslim/zlevel/6", mate)
	switch {
	case bytes.Equal(out.Data, mate):
		t.Logf("mate: unchanged (%d bytes)", len(mate))
	case len(out.Data) < len(mate) && samePixels(t, mate, out.Data):
		t.Logf("mate: %d -> %d bytes", len(mate), len(out.Data))
	default:
		t.Errorf("mate: %d -> %d bytes, derived %v", len(mate), len(out.Data), out.Derived)
	}
	// an uncompressed PNG of a photograph: smaller, same pixels; zlevel/0 is
	// not smaller, so it comes back as it was
	photo, _ := pixelsOf(t, mustDo(t, r, "imageView2/2/w/300", storm).Data)
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.NoCompression}).Encode(&b, photo); err != nil {
		t.Fatal(err)
	}
	raw := b.Bytes()
	for _, q := range []string{"imageslim", "imageslim/zlevel/1", "imageslim/zlevel/10"} {
		out := mustDo(t, r, q, raw)
		if len(out.Data) >= len(raw) || !samePixels(t, raw, out.Data) {
			t.Errorf("%s: %d -> %d bytes", q, len(raw), len(out.Data))
		}
		t.Logf("%s: %d -> %d bytes", q, len(raw), len(out.Data))
	}
	if out := mustDo(t, r, "imageslim/zlevel/0", raw); !bytes.Equal(out.Data, raw) {
		t.Errorf("zlevel/0: %d -> %d bytes, want the original", len(raw), len(out.Data))
	}
	slim := mustDo(t, r, "imageslim", raw).Data
	if again := mustDo(t, r, "imageslim", slim); !bytes.Equal(again.Data, slim) {
		t.Errorf("second imageslim of a PNG changed it")
	}
}

// A truecolour PNG of at most 256 colours becomes a palette PNG with the
// same pixels (from zlevel 9); below zlevel 9 it stays truecolour.
func TestImageSlimExactPalette(t *testing.T) {
	r := defReg(t)
	few, _ := pixelsOf(t, mustDo(t, r, "imageMogr2/thumbnail/400x/format/png/colors/64", storm).Data)
	var b bytes.Buffer
	if err := png.Encode(&b, few); err != nil { // NRGBA, opaque: written as RGB
		t.Fatal(err)
	}
	src := b.Bytes()
	for _, c := range []struct {
		q       string
		palette bool
	}{{"imageslim", true}, {"imageslim/zlevel/10", true}, {"imageslim/zlevel/8", false}} {
		out := mustDo(t, r, c.q, src)
		if !samePixels(t, src, out.Data) {
			t.Errorf("%s: pixels changed", c.q)
		}
		if n := paletteSize(t, out.Data); (n > 0) != c.palette || n > 64 {
			t.Errorf("%s: palette of %d colours, want palette %v", c.q, n, c.palette)
		}
		t.Logf("%s: %d -> %d bytes", c.q, len(src), len(out.Data))
	}
	if out := mustDo(t, r, "imageslim", src); len(out.Data) >= len(src)/2 {
		t.Errorf("palette PNG %d bytes, source %d", len(out.Data), len(src))
	}
}

// The ICC profile is kept (APP2 ICC_PROFILE segments are copied as they are).
func TestImageSlimKeepsICC(t *testing.T) {
	seg := append([]byte("ICC_PROFILE\x00\x01\x01"), bytes.Repeat([]byte("profile-bytes "), 20)...)
	app2 := append([]byte{0xFF, 0xE2, byte((len(seg) + 2) >> 8), byte(len(seg) + 2)}, seg...)
	src := append(append(append([]byte{}, storm[:2]...), app2...), storm[2:]...)
	out := mustDo(t, defReg(t), "imageslim", src)
	if len(out.Data) >= len(src) {
		t.Fatalf("not smaller: %d -> %d", len(src), len(out.Data))
	}
	if !bytes.Contains(out.Data, app2) {
		t.Errorf("ICC profile segment dropped")
	}
}

func TestImageSlimErrors(t *testing.T) {
	r := defReg(t)
	for _, q := range []string{"imageslim/zlevel/11", "imageslim/zlevel/-1", "imageslim/zlevel/x", "imageslim/q/3"} {
		cmd := parseCmd(t, q)
		err := r[cmd.Name].(fop.Validator).Validate(cmd)
		var pe *fop.ParseError
		if !errors.As(err, &pe) || status(err) != 400 {
			t.Errorf("%s: %v, want a 400 ParseError", q, err)
		}
	}
	if _, err := do(t, r, "imageslim", animatedGIF(2, 10, 10)); status(err) != 400 {
		t.Errorf("GIF: %v, want 400", err)
	}
	if _, err := do(t, r, "imageslim", storm[:len(storm)/2]); status(err) != 400 {
		t.Errorf("truncated JPEG: %v, want 400", err)
	}
}
