package image

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"flag"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop/image/vips"
)

// Image bombs: inputs whose header promises far more work or memory than
// their size suggests. They live in testdata/bombs (small files, made by
// the generators below: go test -run TestBombFixtures -update-bombs), so
// that the gateway's test can serve the same bytes.

var updateBombs = flag.Bool("update-bombs", false, "rewrite testdata/bombs from the generators")

const bombDir = "testdata/bombs"

// bombs are the fixtures by file name.
var bombs = map[string]func() []byte{
	// A JPEG whose SOF claims 65535×65535 (4.3 Gpx), with the scan of 8×8.
	"jpeg-65535x65535.jpg": func() []byte { return jpegClaiming(65535, 65535) },
	// A PNG whose IHDR claims 65535×65535, with the data of 1×1.
	"png-65535x65535.png": func() []byte { return pngClaiming(65535, 65535) },
	// A decompression bomb: 20000×20000 (each side within MaxSrcSide, 400
	// Mpx against MaxSrcPixels' 150), one-bit gray, all zeros: 50 MB of
	// scanlines deflated to a few tens of KB, 400 MB once decoded to 8 bits.
	"png-bomb-20000x20000.png": func() []byte { return zeroPNG(20000, 20000, 1, 0) },
	// A GIF of 10,000 1×1 frames (MaxGIFFrames is 200).
	"gif-10000-frames.gif": func() []byte { return tinyFramesGIF(10000) },
}

// truncated are the test images cut in half (made when needed, not kept:
// they are large): their header is intact, their pixels are not.
var truncated = map[string]string{
	"jpeg-truncated.jpg": "../../testdata/images/storm-1920x1080.jpg",
	"png-truncated.png":  "../../testdata/images/mate-stripes-dark-1920x1440.png",
}

func bombBytes(t testing.TB, name string) []byte {
	t.Helper()
	if src, ok := truncated[name]; ok {
		b := mustRead(src)
		return b[:len(b)/2]
	}
	b, err := os.ReadFile(filepath.Join(bombDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBombFixtures checks that testdata/bombs is what the generators make
// (and rewrites it with -update-bombs).
func TestBombFixtures(t *testing.T) {
	want := map[string][]byte{}
	for name, gen := range bombs {
		want[name] = gen()
	}
	for name, b := range want {
		p := filepath.Join(bombDir, name)
		if *updateBombs {
			if err := os.MkdirAll(bombDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (make it with -update-bombs)", err)
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s differs from its generator (run with -update-bombs)", p)
		}
		if len(got) > 256<<10 {
			t.Errorf("%s is %d bytes: bombs must be small on disk", p, len(got))
		}
	}
}

// jpegClaiming is a small real JPEG with the size in its SOF changed.
func jpegClaiming(w, h int) []byte {
	m := image.NewGray(image.Rect(0, 0, 8, 8))
	b := jpegOf(nil, m, 75)
	for i := 2; i+9 < len(b); {
		if b[i] != 0xff {
			break
		}
		marker := b[i+1]
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc {
			binary.BigEndian.PutUint16(b[i+5:], uint16(h))
			binary.BigEndian.PutUint16(b[i+7:], uint16(w))
			return b
		}
		i += 2 + n
	}
	panic("no SOF")
}

// pngClaiming is a 1×1 PNG whose IHDR says w×h (CRC fixed).
func pngClaiming(w, h int) []byte {
	b := pngOf(1, 1)
	// Signature (8), IHDR length (4), "IHDR" (4), then width and height.
	binary.BigEndian.PutUint32(b[16:], uint32(w))
	binary.BigEndian.PutUint32(b[20:], uint32(h))
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// zeroPNG is a w×h PNG of the given bit depth and colour type whose pixels
// are all zero: zlib makes it about a thousandth of its scanlines.
func zeroPNG(w, h, depth, ctype int) []byte {
	channels := map[int]int{0: 1, 2: 3, 4: 2, 6: 4}[ctype]
	rowBytes := (w*channels*depth + 7) / 8
	var idat bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&idat, zlib.BestCompression)
	row := make([]byte, 1+rowBytes) // filter 0, then zeros
	for y := 0; y < h; y++ {
		zw.Write(row)
	}
	zw.Close()
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = byte(depth), byte(ctype)
	pngChunk(&b, "IHDR", ihdr)
	pngChunk(&b, "IDAT", idat.Bytes())
	pngChunk(&b, "IEND", nil)
	return b.Bytes()
}

func pngChunk(b *bytes.Buffer, typ string, data []byte) {
	binary.Write(b, binary.BigEndian, uint32(len(data)))
	c := crc32.NewIEEE()
	c.Write([]byte(typ))
	c.Write(data)
	b.WriteString(typ)
	b.Write(data)
	binary.Write(b, binary.BigEndian, c.Sum32())
}

// tinyFramesGIF is an n-frame 1×1 GIF.
func tinyFramesGIF(n int) []byte {
	pal := color.Palette{color.Black, color.White}
	g := &gif.GIF{}
	for i := 0; i < n; i++ {
		p := image.NewPaletted(image.Rect(0, 0, 1, 1), pal)
		p.Pix[0] = uint8(i % 2)
		g.Image = append(g.Image, p)
		g.Delay = append(g.Delay, 0) // no delay: no control block per frame
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// TestBombsRefused sends each bomb to every command that decodes pixels:
// each is a 400 naming the limit it breaks, refused before libvips reads
// it (probe is not called) where the container tells, and libvips' memory
// stays small for those it does read (the truncated ones: their headers
// are honest, their data is cut).
func TestBombsRefused(t *testing.T) {
	r := defReg(t)
	probes := 0
	orig := probe
	probe = func(b []byte) (vips.Header, error) { probes++; return orig(b) }
	t.Cleanup(func() { probe = orig })

	cases := []struct {
		file    string
		want    string // in the public message
		decoder bool   // libvips reads it (a header cannot tell)
		skip    string // a command that is served
	}{
		{"jpeg-65535x65535.jpg", "source image too large: 65535x65535 (limit 30000 px per side)", false, ""},
		{"png-65535x65535.png", "source image too large: 65535x65535 (limit 30000 px per side)", false, ""},
		{"png-bomb-20000x20000.png", "source image too large: 20000x20000 (limit 150000000 pixels)", false, ""},
		{"gif-10000-frames.gif", "too many frames: 10000 (limit 200)", false, ""},
		{"png-truncated.png", "truncated image data: the PNG ends before its IEND chunk", false, ""},
		// A crop of its intact top is served: libvips reads sequentially
		// and stops before the cut.
		{"jpeg-truncated.jpg", "invalid or truncated image data", true, "imageMogr2/auto-orient/crop/!100x100a0a0"},
	}
	cmds := []string{
		"imageView2/2/w/200", "imageView2/1/w/200/h/200/format/gif",
		"imageMogr2/thumbnail/200x", "imageMogr2/rotate/90", "imageMogr2/auto-orient/crop/!100x100a0a0",
		"imageAve",
	}
	for _, c := range cases {
		data := bombBytes(t, c.file)
		for _, q := range cmds {
			if q == c.skip {
				continue
			}
			probes = 0
			_, err := do(t, r, q, data)
			if st := status(err); st != 400 {
				t.Errorf("%s %s: status %d (%v), want 400", c.file, q, st, err)
				continue
			}
			if msg := errs.Public(err); !strings.Contains(msg, c.want) {
				t.Errorf("%s %s: %q, want it to say %q", c.file, q, msg, c.want)
			}
			if !c.decoder && probes != 0 {
				t.Errorf("%s %s: libvips read the header (%d probes); the container check should refuse it first", c.file, q, probes)
			}
		}
	}
	if _, high := vips.TrackedMemory(); high > 64<<20 {
		t.Errorf("libvips' tracked memory reached %d MB", high>>20)
	}
}

// TestReadContainer checks the container reader on real images against
// libvips' header, and on the bombs against what they claim.
func TestReadContainer(t *testing.T) {
	for _, name := range []string{"storm-1920x1080.jpg", "blinds-exif-o6-gps.jpg", "mate-stripes-dark-1920x1440.png"} {
		b := mustRead(testdata + name)
		c, ok := readContainer(b)
		h, err := vips.Probe(b)
		if !ok || err != nil || c.w != h.Width || c.h != h.Height || c.frames != 1 || c.truncated {
			t.Errorf("%s: container %+v %v, libvips %dx%d %v", name, c, ok, h.Width, h.Height, err)
		}
		// A plain JPEG's header is read without libvips: it must say what
		// libvips' would.
		if jh, ok := c.jpegHeader(); ok {
			if jh.Width != h.Width || jh.Height != h.Height || jh.Bands != h.Bands || jh.Orientation != h.Orientation ||
				jh.Interpretation != h.Interpretation || jh.BandFormat != h.BandFormat || jh.Format != h.Format || jh.Pages != h.Pages {
				t.Errorf("%s: header from the markers %+v, libvips %+v", name, jh, h)
			}
		} else if c.format == "jpeg" {
			t.Errorf("%s: a camera JPEG's header was not read from its markers", name)
		}
	}
	// Orientation: absent, each value, and blocks that do not parse.
	exif := func(order string, entries ...[3]uint16) []byte {
		var b []byte
		put16 := func(v uint16) {
			if order == "II" {
				b = append(b, byte(v), byte(v>>8))
			} else {
				b = append(b, byte(v>>8), byte(v))
			}
		}
		b = append(b, order...)
		put16(42)
		if order == "II" {
			b = append(b, 8, 0, 0, 0)
		} else {
			b = append(b, 0, 0, 0, 8)
		}
		put16(uint16(len(entries)))
		for _, e := range entries { // tag, type, value (count 1)
			put16(e[0])
			put16(e[1])
			if order == "II" {
				b = append(b, 1, 0, 0, 0)
			} else {
				b = append(b, 0, 0, 0, 1)
			}
			put16(e[2])
			b = append(b, 0, 0)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		t    []byte
		o    int
		ok   bool
	}{
		{"little-endian 6", exif("II", [3]uint16{0x010f, 2, 0}, [3]uint16{0x0112, 3, 6}), 6, true},
		{"big-endian 8", exif("MM", [3]uint16{0x0112, 3, 8}), 8, true},
		{"no orientation", exif("II", [3]uint16{0x010f, 2, 0}), 0, true},
		{"orientation 9", exif("II", [3]uint16{0x0112, 3, 9}), 0, false},
		{"orientation as a LONG", exif("MM", [3]uint16{0x0112, 4, 6}), 0, false},
		{"not TIFF", []byte("XX*\x00\x08\x00\x00\x00"), 0, false},
		{"cut", exif("II", [3]uint16{0x0112, 3, 6})[:12], 0, false},
	} {
		if o, ok := exifOrientation(tc.t); o != tc.o || ok != tc.ok {
			t.Errorf("%s: %d %v, want %d %v", tc.name, o, ok, tc.o, tc.ok)
		}
	}
	for name, want := range map[string]bool{"storm-1920x1080.jpg": false, "blinds-exif-o6-gps.jpg": false, "kleiber-6028x3391.jpg": false} {
		b := mustRead(testdata + name)
		if cutJPEG(b) != want || !cutJPEG(b[:len(b)/2]) || !cutJPEG(b[:len(b)-2]) {
			t.Errorf("%s: cutJPEG whole %v, half %v, without EOI %v", name, cutJPEG(b), cutJPEG(b[:len(b)/2]), cutJPEG(b[:len(b)-2]))
		}
	}
	g := animatedGIF(5, 40, 30)
	if c, ok := readContainer(g); !ok || c.w != 40 || c.h != 30 || c.frames != 5 {
		t.Errorf("5-frame GIF: %+v %v", c, ok)
	}
	for name, want := range map[string]container{
		"jpeg-65535x65535.jpg":     {format: "jpeg", w: 65535, h: 65535, frames: 1, components: 1, orientOK: true},
		"png-65535x65535.png":      {format: "png", w: 65535, h: 65535, frames: 1},
		"png-bomb-20000x20000.png": {format: "png", w: 20000, h: 20000, frames: 1},
		"gif-10000-frames.gif":     {format: "gif", w: 1, h: 1, frames: 10000},
		"png-truncated.png":        {format: "png", w: 1920, h: 1440, frames: 1, truncated: true},
		"jpeg-truncated.jpg":       {format: "jpeg", w: 1920, h: 1080, frames: 1, components: 3, orientation: 1, orientOK: true},
	} {
		if c, ok := readContainer(bombBytes(t, name)); !ok || c != want {
			t.Errorf("%s: %+v %v, want %+v", name, c, ok, want)
		}
	}
	for _, b := range [][]byte{nil, []byte("\xff\xd8"), []byte("\xff\xd8\xff\xda\x00\x02"), []byte("\x89PNG\r\n\x1a\n"), []byte("GIF89a"), []byte("garbage")} {
		if c, ok := readContainer(b); ok {
			t.Errorf("%q: read as %+v", b, c)
		}
	}
}

// FuzzContainer: the container reader takes any bytes without panicking
// or reading out of range, and what it reads is in range.
func FuzzContainer(f *testing.F) {
	for name := range bombs {
		f.Add(bombBytes(f, name))
	}
	f.Add(bombBytes(f, "jpeg-truncated.jpg")[:4096])
	f.Add(pngOf(3, 2))
	f.Add(animatedGIF(3, 4, 5))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, ok := readContainer(b)
		if !ok {
			return
		}
		if c.w < 0 || c.h < 0 || c.frames < 0 || c.frames > len(b) {
			t.Fatalf("%+v", c)
		}
	})
}

// TestTruncatedConcurrently: a truncated JPEG is a 400 however many run at
// once. libvips keeps one error buffer for all threads: a failing call
// could read another's message, or none (the other cleared it), and a bad
// input was then taken for a processing failure (599).
func TestTruncatedConcurrently(t *testing.T) {
	r := defReg(t)
	data := bombBytes(t, "jpeg-truncated.jpg")
	var wg sync.WaitGroup
	errc := make(chan string, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 8; i++ {
				for _, q := range []string{"imageMogr2/thumbnail/200x", "imageAve", "imageView2/2/w/200"} {
					if _, err := do(t, r, q, data); status(err) != 400 {
						select {
						case errc <- q + ": " + errs.Public(err):
						default:
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	n := 0
	for e := range errc {
		if n++; n <= 3 {
			t.Errorf("truncated JPEG: %s, want 400", e)
		}
	}
	if n > 3 {
		t.Errorf("... and %d more", n-3)
	}
}

// TestMogr2RefusedBeforeDecode: imageMogr2 refuses an output or
// intermediate image over the limits from the header, without decoding a
// source that is itself within them (12000x12000, 144 Mpx; one bit a
// pixel, 17 KB of PNG, 144 MB decoded).
func TestMogr2RefusedBeforeDecode(t *testing.T) {
	r := defReg(t)
	big := zeroPNG(12000, 12000, 1, 0)
	decodes := 0
	origLoad, origThumb := loadImage, thumbnailImage
	loadImage = func(b []byte, o vips.LoadOptions) (*vips.Image, error) { decodes++; return origLoad(b, o) }
	thumbnailImage = func(b []byte, o vips.ThumbnailOptions) (*vips.Image, error) { decodes++; return origThumb(b, o) }
	t.Cleanup(func() { loadImage, thumbnailImage = origLoad, origThumb })
	for q, want := range map[string]string{
		"imageMogr2/rotate/90":                    "output image too large: 12000x12000 (limit 9999 px per side)",
		"imageMogr2/rotate/45":                    "intermediate image too large",
		"imageMogr2/blur/3x2":                     "output image too large: 12000x12000",
		"imageMogr2/thumbnail/!200p/crop/100x100": "intermediate image too large: 24000x24000",
		"imageMogr2/crop/!9999x9999a0a0":          "output image too large: 9999x9999",
		"imageMogr2/auto-orient/rotate/180":       "output image too large",
	} {
		decodes = 0
		_, err := do(t, r, q, big)
		if status(err) != 400 || !strings.Contains(errs.Public(err), want) {
			t.Errorf("%s: %v, want a 400 saying %q", q, err, want)
		}
		if decodes != 0 {
			t.Errorf("%s: decoded before the refusal", q)
		}
	}
	// Within the limits it runs (and decodes).
	decodes = 0
	if _, err := do(t, r, "imageMogr2/crop/!100x100a0a0/rotate/30", big); err != nil || decodes != 1 {
		t.Errorf("a small crop: %v (%d decodes)", err, decodes)
	}
}
