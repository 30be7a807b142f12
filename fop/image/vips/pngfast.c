#define _GNU_SOURCE /* mremap */
#include "pngfast.h"

#include <libdeflate.h>
#include <stdint.h>
#include <sys/mman.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

/* A PNG decoder for the common case only: 8-bit grey, grey+alpha, RGB or
 * RGBA, not interlaced, without a palette, transparency chunk, ICC profile
 * or EXIF block. Anything else, and anything this code does not
 * understand, is left to libvips' own loader (QF_PNG_FALLBACK), which then
 * decodes, refuses or warns exactly as before.
 *
 * Why: on imageView2 of a PNG, libvips' loader (libpng over zlib) was about
 * half of the work, and the premultiply and cast around the resize another
 * third. libdeflate inflates the whole image data in one call three times
 * faster than zlib's streaming inflate (6 against 19 ms for the project's
 * 1920x1440 RGBA PNG), the unfiltering is one pass, and the premultiply is
 * done in the same pass from a table. BenchmarkImageView2/png-w200 went from
 * 84 to 43 CPU-ms per request, with byte-identical results
 * (TestScalePNGSameEitherWay). The price is memory: the whole image is
 * decoded at once, so the caller limits this path to images whose pixels
 * fit in a bound (DefaultWholeMax).
 */

static uint32_t
be32(const unsigned char *p)
{
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		((uint32_t) p[2] << 8) | (uint32_t) p[3];
}

static int
chunk_is(const unsigned char *type, const char *name)
{
	return memcmp(type, name, 4) == 0;
}

/* Ancillary chunks libvips' PNG loader reads nothing from that changes the
 * pixels or the metadata a derived image keeps (pHYs is read below). */
static int
chunk_ignorable(const unsigned char *type)
{
	static const char *const names[] = {
		"bKGD", "gAMA", "cHRM", "sRGB", "sBIT", "tEXt", "zTXt", "iTXt",
		"tIME", "hIST", "sPLT", NULL
	};
	for (int i = 0; names[i]; i++)
		if (chunk_is(type, names[i]))
			return 1;
	return 0;
}

static unsigned char
paeth(int a, int b, int c)
{
	int p = a + b - c;
	int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
	if (pa <= pb && pa <= pc)
		return (unsigned char) a;
	return (unsigned char) (pb <= pc ? b : c);
}

#ifdef __SSE2__
static inline __m128i
abs16(__m128i x)
{
	return _mm_max_epi16(x, _mm_sub_epi16(_mm_setzero_si128(), x));
}

/* paeth_pixels unfilters a Paeth row of bpp-byte pixels (3 or 4) a pixel
 * at a time in 16-bit lanes: each pixel depends on the one before it, so
 * the gain is in doing the three distances and the choice for all bands at
 * once. Inlined with a constant bpp, so that the loads and the store are
 * single moves rather than calls. */
static inline __attribute__((always_inline)) void
paeth_pixels(unsigned char *row, const unsigned char *prev, size_t n, const int bpp)
{
	const __m128i zero = _mm_setzero_si128(), low = _mm_set1_epi16(0xff);
	__m128i a = zero, c = zero;

	for (size_t i = 0; i + bpp <= n; i += bpp) {
		uint32_t bv = 0, xv = 0, o;
		__m128i b, x, pa, pb, pc, m, best;

		memcpy(&bv, prev + i, bpp);
		memcpy(&xv, row + i, bpp);
		b = _mm_unpacklo_epi8(_mm_cvtsi32_si128((int) bv), zero);
		x = _mm_unpacklo_epi8(_mm_cvtsi32_si128((int) xv), zero);
		pa = abs16(_mm_sub_epi16(b, c));
		pb = abs16(_mm_sub_epi16(a, c));
		pc = abs16(_mm_add_epi16(_mm_sub_epi16(a, c), _mm_sub_epi16(b, c)));
		/* a unless b is strictly nearer, then c if strictly nearer
		 * still: the PNG specification's order for ties. */
		m = _mm_cmplt_epi16(pb, pa);
		best = _mm_or_si128(_mm_and_si128(m, b), _mm_andnot_si128(m, a));
		m = _mm_cmplt_epi16(pc, _mm_min_epi16(pa, pb));
		best = _mm_or_si128(_mm_and_si128(m, c), _mm_andnot_si128(m, best));
		x = _mm_and_si128(_mm_add_epi16(x, best), low);
		o = (uint32_t) _mm_cvtsi128_si32(_mm_packus_epi16(x, x));
		memcpy(row + i, &o, bpp);
		a = x;
		c = b;
	}
}

static void
paeth_pixels3(unsigned char *row, const unsigned char *prev, size_t n)
{
	paeth_pixels(row, prev, n, 3);
}

static void
paeth_pixels4(unsigned char *row, const unsigned char *prev, size_t n)
{
	paeth_pixels(row, prev, n, 4);
}
#endif

/* unfilter turns row (filtered, n bytes, bpp bytes per pixel) into pixels,
 * given the previous row's pixels (NULL for the first row). */
static int
unfilter(int type, unsigned char *row, const unsigned char *prev, size_t n, int bpp)
{
	size_t i;

	switch (type) {
	case 0:
		return 0;
	case 1:
		for (i = bpp; i < n; i++)
			row[i] += row[i - bpp];
		return 0;
	case 2:
		if (prev)
			for (i = 0; i < n; i++)
				row[i] += prev[i];
		return 0;
	case 3:
		if (prev) {
			for (i = 0; i < (size_t) bpp; i++)
				row[i] += prev[i] >> 1;
			for (; i < n; i++)
				row[i] += (unsigned char) (((int) row[i - bpp] + prev[i]) >> 1);
		} else {
			for (i = bpp; i < n; i++)
				row[i] += row[i - bpp] >> 1;
		}
		return 0;
	case 4:
		if (prev) {
#ifdef __SSE2__
			if (bpp == 4 || bpp == 3) {
				(bpp == 4 ? paeth_pixels4 : paeth_pixels3)(row, prev, n);
				return 0;
			}
#endif
			for (i = 0; i < (size_t) bpp; i++)
				row[i] += prev[i];
			for (; i < n; i++)
				row[i] += paeth(row[i - bpp], prev[i], prev[i - bpp]);
		} else {
			/* With no row above, Paeth predicts the left pixel. */
			for (i = bpp; i < n; i++)
				row[i] += row[i - bpp];
		}
		return 0;
	default:
		return -1;
	}
}

/* premul[a][c] is colour c premultiplied by alpha a exactly as
 * vips_premultiply then vips_cast back to 8 bits compute it (in float,
 * truncated), so that a PNG decoded here resizes to the same bytes as one
 * from libvips' loader. */
static unsigned char premul[256][256];

static gpointer
premul_init(gpointer unused)
{
	(void) unused;
	for (int a = 0; a < 256; a++) {
		float nalpha = (float) a / 255.0;
		for (int c = 0; c < 256; c++)
			premul[a][c] = (unsigned char) (c * nalpha);
	}
	return NULL;
}

/* premultiply_row multiplies the colour of each pixel of row (n bytes of
 * bpp-byte pixels, alpha last) by its alpha. */
static void
premultiply_row(unsigned char *row, size_t n, int bpp)
{
	if (bpp == 4) {
		for (size_t i = 0; i + 4 <= n; i += 4) {
			const unsigned char *t = premul[row[i + 3]];
			row[i] = t[row[i]];
			row[i + 1] = t[row[i + 1]];
			row[i + 2] = t[row[i + 2]];
		}
		return;
	}
	for (size_t i = 0; i + bpp <= n; i += bpp) {
		const unsigned char *t = premul[row[i + bpp - 1]];
		for (int k = 0; k < bpp - 1; k++)
			row[i + k] = t[row[i + k]];
	}
}

/* The image's buffers are mapped, not malloc'd: glibc raises its mmap
 * threshold to the size of a freed mapping, so that the next 11 MB buffer
 * came from an arena and stayed in the process afterwards (peak RSS under
 * bench/compare.sh rose from about 200 to 272 MB). A mapping goes back to
 * the system when it is unmapped. */
static void *
map(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void *
remap(void *p, size_t old, size_t n)
{
	void *q = mremap(p, old, n, MREMAP_MAYMOVE);
	return q == MAP_FAILED ? NULL : q;
}

static void
unmap(void *p, size_t n)
{
	if (p)
		munmap(p, n);
}

typedef struct {
	void *p;
	size_t n;
} mapping;

static void
free_pixels(VipsImage *im, mapping *m)
{
	(void) im;
	unmap(m->p, m->n);
	g_free(m);
}

int
qf_png_fast(const void *buf, size_t len, size_t max_bytes, int keep_w, int keep_h,
	VipsImage **out)
{
	static GOnce once = G_ONCE_INIT;
	static const unsigned char sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	const unsigned char *p = buf, *end = p + len;
	uint32_t w = 0, h = 0;
	int bands = 0, have_ihdr = 0, have_end = 0, premultiply;
	double xres = 0, yres = 0;
	const unsigned char *z = NULL; /* the image data, when in one chunk */
	unsigned char *zcopy = NULL;
	size_t zlen = 0, zcap = 0;
	unsigned char *pix = NULL;
	size_t stride, want = 0, got;
	struct libdeflate_decompressor *d;
	enum libdeflate_result r;
	VipsImage *im;

	if (len < 8 || memcmp(p, sig, 8) != 0)
		return QF_PNG_FALLBACK;
	p += 8;
	while (!have_end) {
		uint32_t n;
		const unsigned char *type, *data;

		if (end - p < 12)
			goto fallback;
		n = be32(p);
		type = p + 4;
		data = p + 8;
		if (n > (size_t) (end - data) - 4)
			goto fallback;
		/* A bad checksum is libpng's to report (or to forgive, for an
		 * ancillary chunk). */
		if (libdeflate_crc32(0, type, 4 + (size_t) n) != be32(data + n))
			goto fallback;
		if (!have_ihdr) {
			if (!chunk_is(type, "IHDR") || n != 13)
				goto fallback;
			w = be32(data);
			h = be32(data + 4);
			/* bit depth 8, no interlace, standard compression and filters */
			if (w == 0 || h == 0 || data[8] != 8 || data[10] != 0 ||
				data[11] != 0 || data[12] != 0)
				goto fallback;
			switch (data[9]) {
			case 0: bands = 1; break;
			case 4: bands = 2; break;
			case 2: bands = 3; break;
			case 6: bands = 4; break;
			default: goto fallback; /* palette, or invalid */
			}
			if ((uint64_t) w * h * bands > max_bytes ||
				w > VIPS_MAX_COORD || h > VIPS_MAX_COORD)
				goto fallback;
			have_ihdr = 1;
		} else if (chunk_is(type, "IDAT")) {
			if (!z && !zcopy) {
				z = data;
				zlen = n;
			} else {
				/* Image data in several chunks: joined, since
				 * libdeflate inflates one buffer. */
				if (!zcopy) {
					zcap = (zlen + n) * 2;
					if (!(zcopy = map(zcap)))
						goto fallback;
					memcpy(zcopy, z, zlen);
					z = NULL;
				} else if (zlen + n > zcap) {
					unsigned char *nz;
					if (!(nz = remap(zcopy, zcap, (zlen + n) * 2)))
						goto fallback;
					zcopy = nz;
					zcap = (zlen + n) * 2;
				}
				memcpy(zcopy + zlen, data, n);
				zlen += n;
			}
		} else if (chunk_is(type, "IEND")) {
			have_end = 1;
		} else if (chunk_is(type, "pHYs")) {
			/* libvips: pixels per metre to its pixels per millimetre;
			 * an unknown unit leaves the default resolution. */
			if (n == 9 && data[8] == 1) {
				xres = be32(data) / 1000.0;
				yres = be32(data + 4) / 1000.0;
			}
		} else if (!chunk_ignorable(type)) {
			/* PLTE, tRNS, iCCP, eXIf, a chunk this code does not know,
			 * or an IHDR twice. */
			goto fallback;
		}
		p = data + n + 4;
	}
	if (!zlen)
		goto fallback;

	stride = (size_t) w * bands;
	want = (stride + 1) * h;
	if (!(pix = map(want)))
		goto fallback;
	if (!(d = libdeflate_alloc_decompressor()))
		goto fallback;
	r = libdeflate_zlib_decompress(d, zcopy ? zcopy : z, zlen, pix, want, &got);
	libdeflate_free_decompressor(d);
	unmap(zcopy, zcap);
	zcopy = NULL;
	/* Short data, extra data or a broken stream: libpng decides. */
	if (r != LIBDEFLATE_SUCCESS || got != want)
		goto fallback;

	/* Unfilter each row where it was inflated, then move its pixels down
	 * over the filter bytes: row y ends up at y * stride, which never
	 * overlaps the rows still to come, so one buffer holds both. */
	premultiply = keep_w > 0 && (bands == 2 || bands == 4) &&
		(w != (uint32_t) keep_w || h != (uint32_t) keep_h);
	if (premultiply)
		g_once(&once, premul_init, NULL);
	for (uint32_t y = 0; y < h; y++) {
		unsigned char *row = pix + y * (stride + 1);
		unsigned char *prev = y ? pix + (y - 1) * stride : NULL;
		if (unfilter(row[0], row + 1, prev, stride, bands))
			goto fallback;
		/* The row above is premultiplied only now: unfiltering this
		 * one needed its stored values. */
		if (premultiply && prev)
			premultiply_row(prev, stride, bands);
		memmove(pix + y * stride, row + 1, stride);
	}
	if (premultiply)
		premultiply_row(pix + (size_t) (h - 1) * stride, stride, bands);

	if (!(im = vips_image_new_from_memory(pix, stride * h, (int) w, (int) h,
			  bands, VIPS_FORMAT_UCHAR))) {
		unmap(pix, want);
		return QF_PNG_ERROR;
	}
	{
		mapping *m = g_new(mapping, 1);
		m->p = pix;
		m->n = want;
		g_signal_connect(im, "postclose", G_CALLBACK(free_pixels), m);
	}
	/* Marked as a sequential loader's output is: vips_shrinkv then puts
	 * a line cache on its output and is asked for whole lines. Without
	 * it, shrinkv is asked for 128-pixel tiles and clears a line buffer
	 * of the whole width for each line of each tile, which cost as much
	 * as the decoding. */
	vips_image_set_int(im, VIPS_META_SEQUENTIAL, 1);
	if (premultiply)
		vips_image_set_int(im, QF_PNG_PREMULTIPLIED, 1);
	im->Type = bands < 3 ? VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB;
	/* What libvips' loader gives a PNG without pHYs: 2834 pixels per
	 * metre, about 72 dpi. */
	im->Xres = im->Yres = 2.834;
	if (xres > 0 && yres > 0) {
		im->Xres = xres;
		im->Yres = yres;
	}
	*out = im;
	return QF_PNG_OK;

fallback:
	unmap(zcopy, zcap);
	unmap(pix, want);
	return QF_PNG_FALLBACK;
}
