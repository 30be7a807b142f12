package image

import (
	"strconv"
	"strings"

	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/fop/image/vips"
)

// imageMogr2 size-limit/<n>[k|m][!]: cap the byte size of a JPEG result by
// lowering its quality. Qiniu documents it for JPEG only; other formats are
// encoded as usual (only the '!' rule below applies to them).

// sizeLimit is a parsed size-limit.
type sizeLimit struct {
	bytes int64 // the cap; 0 when not given
	fsize bool  // $(fsize): the cap is the input's size
	orig  bool  // '!': return the original when the cap is not met or the result is not smaller
}

// maxSizeLimit bounds the cap (1 GiB): more than any result can be.
const maxSizeLimit = 1 << 30

func parseSizeLimit(cmd fop.Cmd, v string) (sizeLimit, error) {
	var l sizeLimit
	s, orig := strings.CutSuffix(v, "!")
	l.orig = orig
	if s == "$(fsize)" {
		l.fsize, l.bytes = true, 1
		return l, nil
	}
	unit := int64(1)
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		unit, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "m"), strings.HasSuffix(s, "M"):
		unit, s = 1<<20, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || n > maxSizeLimit/unit {
		return l, cmd.Errorf("size-limit must be <n>[k|m][!] or $(fsize)[!], from 1 byte to 1024m, got %q", v)
	}
	l.bytes = n * unit
	return l, nil
}

// cap is the limit in bytes for an input of inLen bytes.
func (l sizeLimit) cap(inLen int) int {
	if l.fsize {
		return inLen
	}
	return int(l.bytes)
}

// keepOriginal applies '!': the original is returned when the result is
// over the cap, or not smaller than the original (Qiniu: the result only
// when it is smaller than the original).
func (l sizeLimit) keepOriginal(outLen, inLen int) bool {
	return l.orig && (outLen > l.cap(inLen) || outLen >= inLen)
}

// maxLimitEncodes bounds the JPEG encodes of one size-limit: one at the
// quality asked, then a binary search of 1..q-1, at most ceil(log2(100)) = 7
// more. Each costs a full JPEG encode of the result.
const maxLimitEncodes = 8

// fitJPEG encodes im as JPEG at the highest quality up to o.quality whose
// result is at most limit bytes; when none is, it returns the smallest
// result (quality 1). It renders the pipeline once into memory, so the
// encodes do not decode the source again. n is the number of encodes.
func fitJPEG(im *vips.Image, o output, limit int) (b []byte, n int, err error) {
	flat, err := im.FlattenWhite()
	if err != nil {
		return nil, 0, err
	}
	defer flat.Close()
	mem, err := flat.CopyMemory()
	if err != nil {
		return nil, 0, err
	}
	defer mem.Close()
	return searchQuality(o.quality, limit, func(q int) ([]byte, error) {
		o := o
		o.quality = q
		return encode(mem, o)
	})
}

// searchQuality finds the highest quality in 1..q whose encoding is at most
// limit bytes, assuming the size grows with the quality; it calls enc at
// most maxLimitEncodes times.
func searchQuality(q, limit int, enc func(q int) ([]byte, error)) (best []byte, n int, err error) {
	b, err := enc(q)
	n++
	if err != nil || len(b) <= limit {
		return b, n, err
	}
	smallest := b
	lo, hi := 1, q-1
	for lo <= hi && n < maxLimitEncodes {
		mid := (lo + hi + 1) / 2
		b, err := enc(mid)
		n++
		if err != nil {
			return nil, n, err
		}
		if len(b) < len(smallest) {
			smallest = b
		}
		if len(b) <= limit {
			best, lo = b, mid+1
		} else {
			hi = mid - 1
		}
	}
	if best == nil { // nothing fits: the search ended at quality 1
		return smallest, n, nil
	}
	return best, n, nil
}
