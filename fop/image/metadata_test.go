package image

import (
	"testing"

	"github.com/qufop/qufop/fop/image/vips"
)

// meta is what a result carries of the metadata the rule is about.
type meta struct {
	w, h        int
	exif        bool   // an EXIF block at all
	make        string // a camera field that imageMogr2 keeps
	gps         bool   // any GPS field
	thumbnail   bool   // an EXIF thumbnail
	orientation int
	icc, xmp    bool
	bands       int
	interp      string
}

func readMeta(t *testing.T, b []byte) meta {
	t.Helper()
	im, err := vips.Load(b, vips.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	m := meta{w: im.Width(), h: im.Height(), orientation: im.Orientation(), bands: im.Bands(), interp: im.Interpretation()}
	_, m.exif = im.Exif()
	m.make, _ = im.String("exif-ifd0-Make")
	_, m.gps = im.String("exif-ifd3-GPSLatitude")
	_, m.thumbnail = im.Blob("jpeg-thumbnail-data")
	_, m.icc = im.Blob("icc-profile-data")
	_, m.xmp = im.Blob("xmp-data")
	return m
}

// The metadata rule (docs/processing-urls.md, "Metadata"): imageView2 keeps
// none, the result being upright and sRGB; imageMogr2 keeps the source's
// EXIF (Qiniu's strip removes it) but never its thumbnail or GPS position,
// with the orientation tag as long as the pixels are not turned upright.
func TestMetadataRule(t *testing.T) {
	r := defReg(t)
	// The sources have what the rule removes.
	for name, src := range map[string][]byte{"blinds": blinds, "storm": storm} {
		m := readMeta(t, src)
		if !m.exif || !m.thumbnail || m.make == "" {
			t.Fatalf("%s: the fixture lost its metadata: %+v", name, m)
		}
	}
	if m := readMeta(t, blinds); !m.gps || m.orientation != 6 || !m.xmp {
		t.Fatalf("blinds: %+v", m)
	}

	for _, tc := range []struct {
		q    string
		src  []byte
		want meta
	}{
		// blinds is stored 1920x1200 with orientation 6: displayed 1200x1920.
		{"imageView2/2/w/200", blinds, meta{w: 200, h: 320, bands: 3, interp: "srgb"}},
		{"imageView2/2/w/200", storm, meta{w: 200, h: 113, bands: 3, interp: "srgb"}},
		{"imageView2/1/w/100/h/100/format/png", blinds, meta{w: 100, h: 100, bands: 3, interp: "srgb"}},
		// imageMogr2 without auto-orient: the pixels stay as stored and
		// the tag says how to show them.
		{"imageMogr2/thumbnail/400x", blinds, meta{w: 400, h: 250, exif: true, make: "Canon", orientation: 6, xmp: true, bands: 3, interp: "srgb"}},
		{"imageMogr2/auto-orient/thumbnail/400x", blinds, meta{w: 400, h: 640, exif: true, make: "Canon", orientation: 1, xmp: true, bands: 3, interp: "srgb"}},
		{"imageMogr2/crop/100x100", storm, meta{w: 100, h: 100, exif: true, make: "Canon", orientation: 1, bands: 3, interp: "srgb"}},
		{"imageMogr2/strip/thumbnail/400x", blinds, meta{w: 400, h: 250, bands: 3, interp: "srgb"}},
	} {
		got := readMeta(t, mustDo(t, r, tc.q, tc.src).Data)
		if got.make != "" && len(got.make) >= len(tc.want.make) {
			got.make = got.make[:len(tc.want.make)] // "Canon (Canon, ASCII, ...)"
		}
		if got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.q, got, tc.want)
		}
	}
}

// A CMYK JPEG (no profile: libvips' CMYK profile applies) comes out of
// imageView2 as 3-band sRGB with about the source's colours.
func TestView2CMYKToSRGB(t *testing.T) {
	r := defReg(t)
	cmyk := mustRead("testdata/storm-400-cmyk.jpg")
	if m := readMeta(t, cmyk); m.interp != "cmyk" || m.bands != 4 || m.icc {
		t.Fatalf("fixture: %+v", m)
	}
	out := mustDo(t, r, "imageView2/2/w/200/format/png", cmyk).Data
	m := readMeta(t, out)
	if m.bands != 3 || m.interp != "srgb" || m.icc {
		t.Fatalf("result: %+v", m)
	}
	ref := mustDo(t, r, "imageView2/2/w/200/format/png", storm).Data
	a, b := decode(t, out), decode(t, ref)
	// The CMYK round trip moves colours a little; a CMYK image read as RGB
	// (or inverted) would be far off.
	var diff, n int
	for y := 0; y < b.Bounds().Dy(); y += 7 {
		for x := 0; x < b.Bounds().Dx(); x += 7 {
			p, q := nrgba(a, x, y), nrgba(b, x, y)
			for _, d := range []int{int(p.R) - int(q.R), int(p.G) - int(q.G), int(p.B) - int(q.B)} {
				diff += max(d, -d)
				n++
			}
		}
	}
	if mean := float64(diff) / float64(n); mean > 20 {
		t.Errorf("mean channel difference %.1f from the sRGB source, want <= 20", mean)
	}
}
