#include "ops2.h"

#include <string.h>
#include <libimagequant.h>

int
qf_embed_bg(VipsImage *in, VipsImage **out, int x, int y, int width, int height, double *bg, int nbg)
{
	VipsArrayDouble *a = vips_array_double_new(bg, nbg);
	int r = vips_embed(in, out, x, y, width, height,
		"extend", VIPS_EXTEND_BACKGROUND,
		"background", a,
		NULL);
	vips_area_unref(VIPS_AREA(a));
	return r;
}

int
qf_flatten_bg(VipsImage *in, VipsImage **out, double *bg, int nbg)
{
	VipsArrayDouble *a = vips_array_double_new(bg, nbg);
	int r = vips_flatten(in, out, "background", a, NULL);
	vips_area_unref(VIPS_AREA(a));
	return r;
}

int
qf_addalpha(VipsImage *in, VipsImage **out)
{
	return vips_addalpha(in, out, NULL);
}

int
qf_sharpen(VipsImage *in, VipsImage **out, double sigma, double m1, double m2)
{
	return vips_sharpen(in, out, "sigma", sigma, "m1", m1, "m2", m2, NULL);
}

/* Metadata that says how to show the pixels stays (orientation, ICC
 * profile, resolution); the rest goes: the EXIF block with its embedded
 * thumbnail and GPS, every exif-* field (libvips would write them back into
 * a new EXIF block), XMP, IPTC, Photoshop data and PNG comments. */
static void *
qf_drop_field(VipsImage *im, const char *name, GValue *value, void *a)
{
	(void) value;
	(void) a;
	if (strncmp(name, "exif-", 5) == 0 ||
		strcmp(name, VIPS_META_XMP_NAME) == 0 ||
		strcmp(name, VIPS_META_IPTC_NAME) == 0 ||
		strcmp(name, VIPS_META_PHOTOSHOP_NAME) == 0 ||
		strncmp(name, "png-comment-", 12) == 0)
		vips_image_remove(im, name);
	return NULL;
}

int
qf_drop_metadata(VipsImage *in, VipsImage **out)
{
	char **fields;
	int i;
	if (vips_copy(in, out, NULL))
		return -1;
	/* vips_image_map cannot remove while iterating: take the names first. */
	fields = vips_image_get_fields(*out);
	for (i = 0; fields[i]; i++)
		qf_drop_field(*out, fields[i], NULL, NULL);
	g_strfreev(fields);
	return 0;
}

int
qf_pngsave_filter(VipsImage *in, void **buf, size_t *len, int compression, int filter, int strip)
{
	return vips_pngsave_buffer(in, buf, len,
		"compression", compression,
		"filter", filter,
		"strip", strip,
		NULL);
}

/* qf_quantise maps an 8-bit RGBA image to at most colours colours with
 * libimagequant (the quantiser libvips itself uses, called directly because
 * libvips 8.14 only offers palettes of 2, 4, 16 or 256 colours). index gets
 * one byte per pixel, palette 4 bytes (RGBA) per colour. */
int
qf_quantise(VipsImage *in, int colours, double dither, unsigned char *index, unsigned char *palette, int *ncolours)
{
	size_t size;
	void *pixels;
	liq_attr *attr;
	liq_image *img;
	liq_result *res = NULL;
	const liq_palette *pal;
	int w = vips_image_get_width(in), h = vips_image_get_height(in);
	unsigned int i;
	int r = -1;

	if (vips_image_get_bands(in) != 4 || vips_image_get_format(in) != VIPS_FORMAT_UCHAR) {
		vips_error("quantise", "%s", "need an 8-bit RGBA image");
		return -1;
	}
	if (!(pixels = vips_image_write_to_memory(in, &size)))
		return -1;
	attr = liq_attr_create();
	liq_set_max_colors(attr, colours);
	img = liq_image_create_rgba(attr, pixels, w, h, 0);
	if (!img) {
		vips_error("quantise", "%s", "liq_image_create_rgba failed");
		goto done;
	}
	if (liq_image_quantize(img, attr, &res) != LIQ_OK) {
		vips_error("quantise", "%s", "quantisation failed");
		goto done;
	}
	liq_set_dithering_level(res, dither);
	if (liq_write_remapped_image(res, img, index, (size_t) w * h) != LIQ_OK) {
		vips_error("quantise", "%s", "remapping failed");
		goto done;
	}
	pal = liq_get_palette(res);
	for (i = 0; i < pal->count; i++) {
		palette[4 * i] = pal->entries[i].r;
		palette[4 * i + 1] = pal->entries[i].g;
		palette[4 * i + 2] = pal->entries[i].b;
		palette[4 * i + 3] = pal->entries[i].a;
	}
	*ncolours = pal->count;
	r = 0;
done:
	if (res)
		liq_result_destroy(res);
	if (img)
		liq_image_destroy(img);
	liq_attr_destroy(attr);
	g_free(pixels);
	return r;
}

/* qf_exact_palette indexes an 8-bit RGBA image by its own colours when it
 * has at most 256 of them: a palette PNG of it is lossless. *ncolours is 0
 * when there are more. There is no libvips operation that counts colours;
 * this is one pass with a small open-addressing table. */
int
qf_exact_palette(VipsImage *in, unsigned char *index, unsigned char *palette, int *ncolours)
{
	size_t size, i, npix;
	unsigned char *pixels;
	guint32 keys[1024];
	int slots[1024];
	int n = 0;

	*ncolours = 0;
	if (vips_image_get_bands(in) != 4 || vips_image_get_format(in) != VIPS_FORMAT_UCHAR) {
		vips_error("palette", "%s", "need an 8-bit RGBA image");
		return -1;
	}
	if (!(pixels = vips_image_write_to_memory(in, &size)))
		return -1;
	memset(slots, 0xff, sizeof(slots));
	npix = size / 4;
	for (i = 0; i < npix; i++) {
		guint32 k;
		unsigned int h;
		memcpy(&k, pixels + 4 * i, 4);
		h = (k * 2654435761u) >> 22; /* 10 bits */
		while (slots[h] >= 0 && keys[h] != k)
			h = (h + 1) & 1023;
		if (slots[h] < 0) {
			if (n == 256) {
				g_free(pixels);
				return 0;
			}
			keys[h] = k;
			slots[h] = n;
			memcpy(palette + 4 * n, &k, 4);
			n++;
		}
		index[i] = (unsigned char) slots[h];
	}
	g_free(pixels);
	*ncolours = n;
	return 0;
}
