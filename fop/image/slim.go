package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"image/png"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image/vips"
)

// ImageSlim is imageslim[/zlevel/<0-10>] (qiniu-compat.md §5.8): JPEG and PNG
// made smaller without visible change, the original returned when the
// result is not smaller.
//
// A JPEG is re-compressed losslessly (jpegtran -optimize, -progressive): its
// DCT coefficients are kept, so it decodes to exactly the same pixels; the
// Huffman tables are optimised, baseline and progressive are both tried,
// and the metadata is dropped but for the ICC profile and the orientation
// (a minimal EXIF block), so the image shows as before. Re-encoding at the
// source's quality would add a generation of loss and, on the repo's
// photographs, came out 12-23 % larger (no chroma subsampling at quality
// 90 and above).
//
// A PNG is decoded and written again with zlib level min(zlevel, 9) (9 when
// not given), every row filter tried, and no metadata but the ICC profile;
// from zlevel 9 on (10 is 9), an 8-bit PNG of at most 256 colours without
// an ICC profile is also tried as a palette PNG, which is lossless. Qiniu's sync timeouts (1 s JPEG, 3 s
// PNG) are not applied: the worker's request deadline is.
type ImageSlim struct{ x *Image }

func init() { commands["imageslim"] = func(x *Image) fop.Processor { return &ImageSlim{x} } }

var slimSpec = fop.Spec{Named: map[string]fop.Kind{"zlevel": fop.Value}}

func (c *ImageSlim) parse(cmd fop.Cmd) (int, error) {
	ps, err := cmd.Params(slimSpec)
	if err != nil {
		return 0, err
	}
	z := 9
	for _, p := range ps {
		if z, err = cmd.Int("zlevel", p.Value, 0, 10); err != nil {
			return 0, err
		}
	}
	return z, nil
}

// Validate checks the parameters.
func (c *ImageSlim) Validate(cmd fop.Cmd) error {
	_, err := c.parse(cmd)
	return err
}

// Process runs imageslim.
func (c *ImageSlim) Process(ctx context.Context, cmd fop.Cmd, in fop.Blob) (fop.Blob, error) {
	z, err := c.parse(cmd)
	if err != nil {
		return fop.Blob{}, err
	}
	return run(ctx, in.Data, func() (fop.Blob, error) { return c.x.slim(in, z) })
}

func (x *Image) slim(in fop.Blob, zlevel int) (fop.Blob, error) {
	src, err := x.open(in, true)
	if err != nil {
		return fop.Blob{}, err
	}
	var out []byte
	switch src.hdr.Format {
	case "jpeg":
		out, err = slimJPEG(in.Data, src.hdr.Orientation)
	case "png":
		out, err = slimPNG(in.Data, zlevel)
	default:
		return fop.Blob{}, errs.BadRequest("imageslim works on JPEG and PNG, not %s", src.hdr.Format)
	}
	if err != nil {
		return fop.Blob{}, failed(err)
	}
	if len(out) >= len(in.Data) {
		return in, nil
	}
	return fop.Blob{Data: out, MIME: mimes[src.hdr.Format], Derived: true}, nil
}

// slimJPEG returns the smaller of the baseline and progressive lossless
// re-compressions.
func slimJPEG(data []byte, orientation int) ([]byte, error) {
	app1 := orientationExif(orientation)
	var best []byte
	for _, progressive := range []bool{false, true} {
		b, err := vips.RecompressJPEG(data, progressive, app1)
		if err != nil {
			return nil, errs.Wrap(400, err, "invalid or truncated image data")
		}
		if best == nil || len(b) < len(best) {
			best = b
		}
	}
	return best, nil
}

// orientationExif is an EXIF block holding only the orientation tag, nil
// for the default orientation 1 (or none).
func orientationExif(o int) []byte {
	if o < 2 || o > 8 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("Exif\x00\x00MM\x00\x2a")
	be := binary.BigEndian
	w := func(v any) { _ = binary.Write(&b, be, v) }
	w(uint32(8))      // IFD0 right after the TIFF header
	w(uint16(1))      // one entry
	w(uint16(0x0112)) // Orientation
	w(uint16(3))      // SHORT
	w(uint32(1))      // count
	w(uint16(o))      // value, left-justified in 4 bytes
	w(uint16(0))
	w(uint32(0)) // no next IFD
	return b.Bytes()
}

// slimPNG writes the PNG again at the given zlib level with every filter;
// from level 9 on, an 8-bit image of at most 256 colours is also tried as a
// palette PNG (lossless), and the smaller is kept.
func slimPNG(data []byte, zlevel int) ([]byte, error) {
	load := func() (*vips.Image, error) {
		return vips.Load(data, vips.LoadOptions{Sequential: true, FailOnTruncated: true})
	}
	im, err := load()
	if err != nil {
		return nil, err
	}
	defer im.Close()
	d, err := im.DropMetadata()
	if err != nil {
		return nil, err
	}
	defer d.Close()
	best, err := d.SavePNGFilter(min(zlevel, 9), vips.PNGFilterAll, false)
	if err != nil || zlevel < 9 || im.Header().BandFormat != "uchar" {
		return best, err
	}
	if _, icc := im.Blob("icc-profile-data"); icc {
		return best, nil // Go's encoder would drop the profile
	}
	again, err := load() // the first decode was sequential, and is spent
	if err != nil {
		return nil, err
	}
	defer again.Close()
	b, err := exactPalettePNG(again)
	if err != nil || b == nil || len(b) >= len(best) {
		return best, err
	}
	return b, nil
}

// exactPalettePNG encodes im as a palette PNG when it has at most 256
// colours (nil otherwise).
func exactPalettePNG(im *vips.Image) ([]byte, error) {
	rgba, err := toRGBA(im)
	if err != nil {
		return nil, err
	}
	defer rgba.Close()
	p, err := rgba.ExactPalette()
	if err != nil || p == nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, p); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
