#include "vips.h"

#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

int
qf_startup(void)
{
#ifdef __GLIBC__
	/* Bound glibc malloc arenas: libvips threads otherwise each grow their
	 * own arena and RSS creeps up (govips#318, imgproxy#116). */
	mallopt(M_ARENA_MAX, 2);
#endif
	if (VIPS_INIT("qufop"))
		return -1;
	vips_concurrency_set(1);
	vips_cache_set_max(0);
	vips_cache_set_max_mem(0);
	vips_cache_set_max_files(0);
	vips_leak_set(FALSE);
	/* svg/pdf/magick and friends are not needed and are not fuzzed for
	 * hostile input. */
	vips_block_untrusted_set(TRUE);
	return 0;
}

void
qf_error(char **msg)
{
	*msg = g_strdup(vips_error_buffer());
	vips_error_clear();
}

void
qf_thread_shutdown(void)
{
	vips_thread_shutdown();
}

size_t
qf_tracked_mem(void)
{
	return vips_tracked_get_mem();
}

size_t
qf_tracked_mem_highwater(void)
{
	return vips_tracked_get_mem_highwater();
}

/* The nickname of the loader for buf ("jpegload_buffer"), or NULL. */
static const char *
qf_loader(const void *buf, size_t len)
{
	const char *l = vips_foreign_find_load_buffer(buf, len);
	if (!l)
		return NULL;
	return vips_nickname_find(g_type_from_name(l));
}

const char *
qf_find_loader(const void *buf, size_t len)
{
	const char *l = qf_loader(buf, len);
	if (!l)
		vips_error_clear();
	return l;
}

void
qf_image_header(VipsImage *im, qf_header *h)
{
	int v;

	h->width = vips_image_get_width(im);
	h->height = vips_image_get_height(im);
	h->bands = vips_image_get_bands(im);
	h->pages = vips_image_get_n_pages(im);
	h->page_height = vips_image_get_page_height(im);
	h->orientation = 0;
	if (vips_image_get_typeof(im, VIPS_META_ORIENTATION) &&
		!vips_image_get_int(im, VIPS_META_ORIENTATION, &v))
		h->orientation = v;
	h->has_alpha = vips_image_hasalpha(im);
	h->interpretation = vips_image_get_interpretation(im);
	h->band_format = vips_image_get_format(im);
	h->palette = vips_image_get_typeof(im, "palette-bit-depth") != 0 ||
		vips_image_get_typeof(im, "gif-palette") != 0;
	h->loader = NULL;
}

int
qf_probe(const void *buf, size_t len, qf_header *h)
{
	const char *loader;
	VipsImage *im;

	if (!(loader = qf_loader(buf, len)))
		return -1;
	im = vips_image_new_from_buffer(buf, len, "",
		"access", VIPS_ACCESS_SEQUENTIAL, NULL);
	if (!im)
		return -1;
	qf_image_header(im, h);
	h->loader = loader;
	g_object_unref(im);
	return 0;
}

static gboolean
qf_multipage(const char *loader)
{
	return loader && (strstr(loader, "gifload") || strstr(loader, "webpload"));
}

int
qf_load(const void *buf, size_t len, int sequential, int all_pages, int fail, int shrink,
	VipsImage **out)
{
	const char *loader;
	VipsAccess access = sequential ? VIPS_ACCESS_SEQUENTIAL : VIPS_ACCESS_RANDOM;
	VipsFailOn fail_on = fail ? VIPS_FAIL_ON_TRUNCATED : VIPS_FAIL_ON_NONE;

	if (!(loader = qf_loader(buf, len)))
		return -1;
	if (shrink > 1 && strstr(loader, "jpegload"))
		*out = vips_image_new_from_buffer(buf, len, "",
			"access", access, "fail_on", fail_on, "shrink", shrink, NULL);
	else if (all_pages && qf_multipage(loader))
		*out = vips_image_new_from_buffer(buf, len, "",
			"access", access, "fail_on", fail_on, "n", -1, NULL);
	else
		*out = vips_image_new_from_buffer(buf, len, "",
			"access", access, "fail_on", fail_on, NULL);
	return *out ? 0 : -1;
}

int
qf_thumbnail(const void *buf, size_t len, int width, int height, int size,
	int crop, int no_rotate, int all_pages, int fail, VipsImage **out)
{
	const char *loader;
	char opts[64];

	if (!(loader = qf_loader(buf, len)))
		return -1;
	g_snprintf(opts, sizeof(opts), "%s%s",
		fail ? "fail_on=truncated" : "",
		all_pages && qf_multipage(loader) ? (fail ? ",n=-1" : "n=-1") : "");
	return vips_thumbnail_buffer((void *) buf, len, out, width,
		"height", height,
		"size", size,
		"crop", crop ? VIPS_INTERESTING_CENTRE : VIPS_INTERESTING_NONE,
		"no_rotate", no_rotate,
		"option_string", opts,
		NULL);
}

int
qf_copy_memory(VipsImage *in, VipsImage **out)
{
	*out = vips_image_copy_memory(in);
	return *out ? 0 : -1;
}

int
qf_autorot(VipsImage *in, VipsImage **out)
{
	return vips_autorot(in, out, NULL);
}

int
qf_rot(VipsImage *in, VipsImage **out, int angle)
{
	return vips_rot(in, out, (VipsAngle) angle, NULL);
}

int
qf_rotate(VipsImage *in, VipsImage **out, double angle, double *bg, int nbg)
{
	VipsArrayDouble *b = vips_array_double_new(bg, nbg);
	int r = vips_rotate(in, out, angle, "background", b, NULL);
	vips_area_unref(VIPS_AREA(b));
	return r;
}

int
qf_extract_area(VipsImage *in, VipsImage **out, int left, int top, int width, int height)
{
	return vips_extract_area(in, out, left, top, width, height, NULL);
}

int
qf_extract_band(VipsImage *in, VipsImage **out, int band, int n)
{
	return vips_extract_band(in, out, band, "n", n, NULL);
}

int
qf_resize(VipsImage *in, VipsImage **out, double hscale, double vscale)
{
	return vips_resize(in, out, hscale, "vscale", vscale, NULL);
}

int
qf_gaussblur(VipsImage *in, VipsImage **out, double sigma)
{
	return vips_gaussblur(in, out, sigma, NULL);
}

int
qf_flatten_white(VipsImage *in, VipsImage **out)
{
	VipsInterpretation i = vips_image_get_interpretation(in);
	double max = (i == VIPS_INTERPRETATION_RGB16 || i == VIPS_INTERPRETATION_GREY16) ? 65535.0 : 255.0;
	double bg[3] = { max, max, max };
	int n = VIPS_CLIP(1, vips_image_get_bands(in) - 1, 3);
	VipsArrayDouble *b = vips_array_double_new(bg, n);
	int r = vips_flatten(in, out, "background", b, "max_alpha", max, NULL);
	vips_area_unref(VIPS_AREA(b));
	return r;
}

int
qf_colourspace_srgb(VipsImage *in, VipsImage **out)
{
	return vips_colourspace(in, out, VIPS_INTERPRETATION_sRGB, NULL);
}

int
qf_cast_uchar(VipsImage *in, VipsImage **out)
{
	return vips_cast(in, out, VIPS_FORMAT_UCHAR, NULL);
}

int
qf_arrayjoin_vertical(VipsImage **in, int n, VipsImage **out)
{
	return vips_arrayjoin(in, out, n, "across", 1, NULL);
}

int
qf_copy_set_page_height(VipsImage *in, VipsImage **out, int page_height)
{
	if (vips_copy(in, out, NULL))
		return -1;
	vips_image_set_int(*out, VIPS_META_PAGE_HEIGHT, page_height);
	return 0;
}

int
qf_copy_remove(VipsImage *in, VipsImage **out, const char *name)
{
	if (vips_copy(in, out, NULL))
		return -1;
	vips_image_remove(*out, name);
	return 0;
}

int
qf_band_means(VipsImage *in, double *out, int n)
{
	VipsImage *st;
	int i;

	if (vips_stats(in, &st, NULL))
		return -1;
	for (i = 0; i < n && i < vips_image_get_bands(in); i++)
		out[i] = *VIPS_MATRIX(st, 4, i + 1);
	g_object_unref(st);
	return 0;
}

int
qf_get_blob(VipsImage *im, const char *name, const void **data, size_t *len)
{
	if (!vips_image_get_typeof(im, name))
		return -1;
	if (vips_image_get_blob(im, name, data, len)) {
		vips_error_clear();
		return -1;
	}
	return 0;
}

int
qf_get_int(VipsImage *im, const char *name, int *out)
{
	if (!vips_image_get_typeof(im, name))
		return -1;
	if (vips_image_get_int(im, name, out)) {
		vips_error_clear();
		return -1;
	}
	return 0;
}

char *
qf_get_as_string(VipsImage *im, const char *name)
{
	char *s = NULL;

	if (!vips_image_get_typeof(im, name))
		return NULL;
	if (vips_image_get_as_string(im, name, &s)) {
		vips_error_clear();
		return NULL;
	}
	return s;
}

int
qf_jpegsave(VipsImage *in, void **buf, size_t *len, int q, int interlace, int strip, int optimize)
{
	return vips_jpegsave_buffer(in, buf, len,
		"Q", q,
		"interlace", interlace,
		"strip", strip,
		"optimize_coding", optimize,
		NULL);
}

int
qf_pngsave(VipsImage *in, void **buf, size_t *len, int interlace, int strip, int compression)
{
	/* Every row filter, each row taking the one that compresses best, as
	 * imgproxy saves: 6 % smaller than libvips' default (none) on a
	 * 200-px photo-like PNG, for a slower encode that matters little at
	 * the sizes derived images have. */
	return vips_pngsave_buffer(in, buf, len,
		"interlace", interlace,
		"strip", strip,
		"compression", compression,
		"filter", VIPS_FOREIGN_PNG_FILTER_ALL,
		NULL);
}

int
qf_webpsave(VipsImage *in, void **buf, size_t *len, int q, int lossless, int strip)
{
	return vips_webpsave_buffer(in, buf, len,
		"Q", q,
		"lossless", lossless,
		"strip", strip,
		NULL);
}

int
qf_gifsave(VipsImage *in, void **buf, size_t *len, int strip)
{
	return vips_gifsave_buffer(in, buf, len, "strip", strip, NULL);
}

int
qf_tiffsave(VipsImage *in, void **buf, size_t *len, int strip)
{
	return vips_tiffsave_buffer(in, buf, len, "strip", strip, NULL);
}
