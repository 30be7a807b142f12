package image

import (
	"bytes"
	"encoding/binary"
)

// container is what an image's container says before any decoder runs:
// the size in a JPEG's SOF, a PNG's IHDR or a GIF's logical screen, a
// GIF's frame count, and whether a PNG ends before its IEND chunk.
//
// It exists because libvips' header read is already a decoder's work on
// hostile bytes: libjpeg refuses a SOF over 65500 px as "invalid" (so the
// limit was not named), and libvips' GIF loader stops counting frames at
// 4096 (after a warning per file) and had read them all to get there.
// Reading these few fields in Go refuses an image bomb with the limit it
// breaks, and without libvips seeing it.
type container struct {
	format    string
	w, h      int
	frames    int  // GIF: image descriptors; 1 otherwise
	truncated bool // PNG: the data ends before IEND
	// JPEG: the SOF's components, and the EXIF orientation (0: none);
	// orientOK is false when an EXIF block was there but could not be
	// read here (libvips' header read then decides).
	components  int
	orientation int
	orientOK    bool
}

// readContainer parses data's container; ok is false when it is not a
// JPEG, PNG or GIF it can read (libvips then has the only say).
func readContainer(data []byte) (c container, ok bool) {
	switch {
	case bytes.HasPrefix(data, []byte("\xff\xd8")):
		return readJPEG(data)
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return readPNG(data)
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return readGIF(data)
	}
	return container{}, false
}

// readJPEG walks the marker segments up to the first SOF.
func readJPEG(b []byte) (container, bool) {
	orient, orientOK, seenExif := 0, true, false
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xff {
			return container{}, false
		}
		m := b[i+1]
		switch {
		case m == 0xff: // fill byte
			i++
			continue
		case m == 0x01 || (m >= 0xd0 && m <= 0xd7): // no length
			i += 2
			continue
		case m == 0xda || m == 0xd9: // scan or end before any SOF
			return container{}, false
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		// SOF0..SOF15 but DHT (c4), JPG (c8) and DAC (cc).
		if m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc {
			if i+9 > len(b) || n < 8 {
				return container{}, false
			}
			h := int(binary.BigEndian.Uint16(b[i+5:]))
			w := int(binary.BigEndian.Uint16(b[i+7:]))
			c := container{format: "jpeg", w: w, h: h, frames: 1, orientation: orient, orientOK: orientOK}
			if i+10 <= len(b) {
				c.components = int(b[i+9])
			}
			return c, true
		}
		if m == 0xe1 && !seenExif && i+4+n-2 <= len(b) && bytes.HasPrefix(b[i+4:], []byte("Exif\x00\x00")) {
			seenExif = true
			orient, orientOK = exifOrientation(b[i+10 : i+2+n])
		}
		if n < 2 {
			return container{}, false
		}
		i += 2 + n
	}
	return container{}, false
}

// readPNG reads IHDR and walks the chunks (their lengths, not their data)
// to IEND.
func readPNG(b []byte) (container, bool) {
	if len(b) < 8+8+13 || string(b[12:16]) != "IHDR" {
		return container{}, false
	}
	c := container{
		format: "png",
		w:      int(binary.BigEndian.Uint32(b[16:])),
		h:      int(binary.BigEndian.Uint32(b[20:])),
		frames: 1,
	}
	for i := 8; ; {
		if i+8 > len(b) {
			c.truncated = true
			return c, true
		}
		n := int64(binary.BigEndian.Uint32(b[i:]))
		if string(b[i+4:i+8]) == "IEND" {
			return c, true
		}
		next := int64(i) + 12 + n // length, type, data, CRC
		if next > int64(len(b)) {
			c.truncated = true
			return c, true
		}
		i = int(next)
	}
}

// readGIF reads the logical screen and counts the image descriptors,
// skipping extensions and image data by their sub-block lengths.
func readGIF(b []byte) (container, bool) {
	if len(b) < 13 {
		return container{}, false
	}
	c := container{
		format: "gif",
		w:      int(binary.LittleEndian.Uint16(b[6:])),
		h:      int(binary.LittleEndian.Uint16(b[8:])),
	}
	i := 13
	if b[10]&0x80 != 0 { // global colour table
		i += 3 << (b[10]&7 + 1)
	}
	// skipBlocks returns the offset after a chain of sub-blocks at j.
	skipBlocks := func(j int) int {
		for j < len(b) {
			n := int(b[j])
			j++
			if n == 0 {
				return j
			}
			j += n
		}
		return len(b) + 1
	}
	for i < len(b) {
		switch b[i] {
		case 0x21: // extension: label, sub-blocks
			i = skipBlocks(i + 2)
		case 0x2c: // image descriptor
			if i+10 > len(b) {
				return c, c.frames > 0
			}
			c.frames++
			flags := b[i+9]
			i += 10
			if flags&0x80 != 0 { // local colour table
				i += 3 << (flags&7 + 1)
			}
			i = skipBlocks(i + 1) // LZW minimum code size, then data
		case 0x3b: // trailer
			return c, true
		default:
			return c, c.frames > 0
		}
	}
	return c, c.frames > 0
}

// cutJPEG reports whether b is a JPEG with no EOI marker after its last
// start of scan: cut before its end. (An EXIF thumbnail has its own SOS
// and EOI, before the image's; stuffing keeps both markers out of the
// entropy-coded data.)
func cutJPEG(b []byte) bool {
	if !bytes.HasPrefix(b, []byte("\xff\xd8")) {
		return false
	}
	return bytes.LastIndex(b, []byte("\xff\xd9")) < bytes.LastIndex(b, []byte("\xff\xda"))
}

// exifOrientation reads the Orientation tag (0x0112) of IFD0 of a TIFF
// structure (an EXIF block after its "Exif\0\0"): 0 when there is none,
// ok false when the block does not parse.
func exifOrientation(t []byte) (int, bool) {
	if len(t) < 8 {
		return 0, false
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0, false
	}
	if bo.Uint16(t[2:]) != 42 {
		return 0, false
	}
	off := int(bo.Uint32(t[4:]))
	if off < 8 || off+2 > len(t) {
		return 0, false
	}
	n := int(bo.Uint16(t[off:]))
	for k := 0; k < n; k++ {
		e := off + 2 + 12*k
		if e+12 > len(t) {
			return 0, false
		}
		if bo.Uint16(t[e:]) != 0x0112 {
			continue
		}
		if bo.Uint16(t[e+2:]) != 3 || bo.Uint32(t[e+4:]) != 1 { // one SHORT
			return 0, false
		}
		v := int(bo.Uint16(t[e+8:]))
		if v < 1 || v > 8 {
			return 0, false
		}
		return v, true
	}
	return 0, true
}
