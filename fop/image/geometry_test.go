package image

import "testing"

func TestParseThumbGeometry(t *testing.T) {
	cases := []struct {
		in   string
		want thumbGeom
		bad  bool
	}{
		{in: "!50p", want: thumbGeom{Kind: thumbPercent, W: 50}},
		{in: "50%", want: thumbGeom{Kind: thumbPercent, W: 50}},
		{in: "!50px", want: thumbGeom{Kind: thumbPercentW, W: 50}},
		{in: "!x50p", want: thumbGeom{Kind: thumbPercentH, W: 50}},
		{in: "200x", want: thumbGeom{Kind: thumbWidth, W: 200}},
		{in: "x200", want: thumbGeom{Kind: thumbHeight, H: 200}},
		{in: "200x300", want: thumbGeom{Kind: thumbFit, W: 200, H: 300}},
		{in: "!200x300r", want: thumbGeom{Kind: thumbCover, W: 200, H: 300}},
		{in: "200x300^", want: thumbGeom{Kind: thumbCover, W: 200, H: 300}},
		{in: "200x300!", want: thumbGeom{Kind: thumbExact, W: 200, H: 300}},
		{in: "200x300>", want: thumbGeom{Kind: thumbShrink, W: 200, H: 300}},
		{in: "200x300<", want: thumbGeom{Kind: thumbEnlarge, W: 200, H: 300}},
		{in: "20000x300", want: thumbGeom{Kind: thumbFit, W: 20000, H: 300, NoGrowW: true}},
		{in: "40000@", want: thumbGeom{Kind: thumbArea, Area: 40000}},
		{in: "30000000@", want: thumbGeom{Kind: thumbArea, Area: 30000000, NoGrowW: true}},
		{in: "", bad: true}, {in: "!", bad: true}, {in: "x", bad: true},
		{in: "!0p", bad: true}, {in: "!1000p", bad: true}, {in: "0x", bad: true},
		{in: "10000x", bad: true}, {in: "x0", bad: true}, {in: "200x>", bad: true},
		{in: "-5x5", bad: true}, {in: "+5x5", bad: true}, {in: "5x5x5", bad: true},
		{in: "0@", bad: true}, {in: "@", bad: true}, {in: "abc", bad: true},
		{in: "200", bad: true}, {in: "!50p%", bad: true},
	}
	for _, c := range cases {
		g, err := parseThumbGeometry(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%q: accepted as %+v", c.in, g)
			}
			continue
		}
		if err != nil || g != c.want {
			t.Errorf("%q: got %+v, %v; want %+v", c.in, g, err, c.want)
		}
	}
}

func TestParseCropGeometry(t *testing.T) {
	cases := []struct {
		in   string
		want cropGeom
		bad  bool
	}{
		{in: "300x400", want: cropGeom{W: 300, H: 400}},
		{in: "300x", want: cropGeom{W: 300}},
		{in: "x400", want: cropGeom{H: 400}},
		{in: "!300x400a10a10", want: cropGeom{300, 400, 10, 10}},
		{in: "!300x400-10a10", want: cropGeom{300, 400, -10, 10}},
		{in: "!300x400a10-10", want: cropGeom{300, 400, 10, -10}},
		{in: "!300x400-10-10", want: cropGeom{300, 400, -10, -10}},
		{in: "300x400+10+10", want: cropGeom{300, 400, 10, 10}},
		{in: "!300x400", want: cropGeom{W: 300, H: 400}},
		{in: "!300x400a10", bad: true}, {in: "!300x400a10a", bad: true},
		{in: "x", bad: true}, {in: "", bad: true}, {in: "10001x", bad: true},
		{in: "300x400a10a10", bad: true}, {in: "300", bad: true}, {in: "!300x400a1a2a3", bad: true},
	}
	for _, c := range cases {
		g, err := parseCropGeometry(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%q: accepted as %+v", c.in, g)
			}
			continue
		}
		if err != nil || g != c.want {
			t.Errorf("%q: got %+v, %v; want %+v", c.in, g, err, c.want)
		}
	}
}

// FuzzGeometry: the geometry parsers never panic, and what they accept gives
// sizes of at least 1 pixel and crop rectangles inside the image.
func FuzzGeometry(f *testing.F) {
	for _, s := range []string{"!50p", "!50px", "!x50p", "200x", "x200", "200x300", "!200x300r",
		"200x300!", "200x300>", "200x300<", "40000@", "!300x400a10a10", "!300x400-10a10", "300x", "x400",
		"99999999999x1", "1x99999999999@", "!-1-1", "x%"} {
		f.Add(s, uint16(1920), uint16(1080))
	}
	f.Fuzz(func(t *testing.T, s string, w, h uint16) {
		sw, sh := int(w%5000)+1, int(h%5000)+1
		if g, err := parseThumbGeometry(s); err == nil {
			tw, th := g.target(sw, sh)
			if tw < 1 || th < 1 {
				t.Fatalf("%q on %dx%d: %dx%d", s, sw, sh, tw, th)
			}
			if g.Kind == thumbArea && tw*th > g.Area && tw*th > 1 {
				t.Fatalf("%q on %dx%d: %dx%d exceeds the area", s, sw, sh, tw, th)
			}
		}
		if g, err := parseCropGeometry(s); err == nil {
			for grav := northWest; grav <= southEast; grav++ {
				x, y, cw, ch, ok := g.rect(sw, sh, grav)
				if ok && (x < 0 || y < 0 || cw < 1 || ch < 1 || x+cw > sw || y+ch > sh) {
					t.Fatalf("%q on %dx%d: rect %d,%d %dx%d", s, sw, sh, x, y, cw, ch)
				}
			}
		}
	})
}

func TestPlanView(t *testing.T) {
	// Hand-computed: see TestImageView2Modes for the end-to-end versions.
	cases := []struct {
		mode, w, h, sw, sh int
		want               viewPlan
	}{
		{0, 200, 0, 1920, 1080, viewPlan{200, 113, 200, 113}},
		{1, 200, 100, 1920, 1080, viewPlan{200, 113, 200, 100}},
		{1, 0, 150, 1920, 1080, viewPlan{267, 150, 150, 150}},
		{1, 200, 100, 100, 100, viewPlan{100, 100, 100, 50}},
		{2, 0, 0, 1920, 1080, viewPlan{1920, 1080, 1920, 1080}},
		{3, 200, 100, 1920, 1080, viewPlan{200, 113, 200, 113}},
		{4, 0, 300, 1920, 1080, viewPlan{533, 300, 533, 300}},
		{5, 400, 200, 1200, 1920, viewPlan{250, 400, 200, 400}},
		{5, 200, 0, 1920, 1080, viewPlan{356, 200, 200, 200}},
		{1, 1, 1, 1, 1, viewPlan{1, 1, 1, 1}},
		{2, 1, 0, 9999, 1, viewPlan{1, 1, 1, 1}},
	}
	for _, c := range cases {
		if got := planView(c.mode, c.w, c.h, c.sw, c.sh); got != c.want {
			t.Errorf("%+v: got %+v", c, got)
		}
	}
}
