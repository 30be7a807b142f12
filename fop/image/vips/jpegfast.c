#include "jpegfast.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <jpeglib.h>

/* A JPEG decoder for imageView2's common case: YCbCr or grey without an
 * ICC profile, decoded at the DCT scale the caller chose, in one pass into
 * memory. libvips' loader makes the same libjpeg calls, but around them a
 * region, a line cache, its threadpool and a libexif parse: under
 * callgrind a 1920x1080 photo decoded at 1/8 took 53.2 M instructions that
 * way and 43.3 M this way. Anything else (CMYK, YCCK, an ICC profile, and
 * any libjpeg warning, which is corrupt data) is left to libvips
 * (QF_JPEG_FALLBACK), so that what libvips does with such input stays.
 */

typedef struct {
	struct jpeg_error_mgr pub;
	jmp_buf jmp;
} qf_jpeg_err;

static void
error_exit(j_common_ptr c)
{
	longjmp(((qf_jpeg_err *) c->err)->jmp, 1);
}

static void
emit_message(j_common_ptr c, int level)
{
	/* level -1 is a warning (corrupt data): libvips decides. */
	if (level < 0)
		longjmp(((qf_jpeg_err *) c->err)->jmp, 1);
}

static void
free_pixels(VipsImage *im, void *pixels)
{
	(void) im;
	g_free(pixels);
}

int
qf_jpeg_fast(const void *buf, size_t len, int shrink, size_t max_bytes, VipsImage **out)
{
	struct jpeg_decompress_struct c;
	qf_jpeg_err err;
	unsigned char *volatile pix = NULL, *volatile row = NULL;
	VipsImage *im;
	jpeg_saved_marker_ptr m;
	size_t stride;
	int bands, w, h;

	c.err = jpeg_std_error(&err.pub);
	err.pub.error_exit = error_exit;
	err.pub.emit_message = emit_message;
	if (setjmp(err.jmp)) {
		jpeg_destroy_decompress(&c);
		g_free(pix);
		g_free(row);
		return QF_JPEG_FALLBACK;
	}
	jpeg_create_decompress(&c);
	jpeg_mem_src(&c, (const unsigned char *) buf, len);
	jpeg_save_markers(&c, JPEG_APP0 + 2, 0xffff);
	if (jpeg_read_header(&c, TRUE) != JPEG_HEADER_OK)
		longjmp(err.jmp, 1);
	/* An ICC profile: libvips turns the pixels to sRGB through it. */
	for (m = c.marker_list; m; m = m->next)
		if (m->marker == JPEG_APP0 + 2)
			longjmp(err.jmp, 1);
	if (c.jpeg_color_space == JCS_YCbCr && c.num_components == 3) {
		c.out_color_space = JCS_RGB;
		bands = 3;
	} else if (c.jpeg_color_space == JCS_GRAYSCALE && c.num_components == 1) {
		c.out_color_space = JCS_GRAYSCALE;
		bands = 1;
	} else
		longjmp(err.jmp, 1); /* CMYK, YCCK, RGB, ... */
	c.scale_num = 1;
	c.scale_denom = shrink;
	jpeg_calc_output_dimensions(&c);
	/* libjpeg rounds a scaled size up and may fill the extra column and
	 * row with black; libvips keeps image size / shrink, rounded down. */
	w = c.image_width / shrink;
	h = c.image_height / shrink;
	stride = (size_t) w * bands;
	if (w < 1 || h < 1 || c.output_components != bands ||
		(int) c.output_width < w || (int) c.output_height < h ||
		stride * h > max_bytes)
		longjmp(err.jmp, 1);
	pix = g_malloc(stride * h);
	row = g_malloc((size_t) c.output_width * bands);
	jpeg_start_decompress(&c);
	while ((int) c.output_scanline < h) {
		unsigned char *r = row;
		int y = c.output_scanline;
		jpeg_read_scanlines(&c, &r, 1);
		memcpy(pix + stride * y, row, stride);
	}
	g_free(row);
	row = NULL;

	if (!(im = vips_image_new_from_memory(pix, stride * h, w, h, bands, VIPS_FORMAT_UCHAR)))
		longjmp(err.jmp, 1);
	g_signal_connect(im, "postclose", G_CALLBACK(free_pixels), pix);
	pix = NULL;
	vips_image_set_int(im, VIPS_META_SEQUENTIAL, 1);
	im->Type = bands == 1 ? VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB;
	/* The JFIF density, else 72 dpi. libvips would take a resolution in
	 * the EXIF block instead; imageView2 drops that block, and only the
	 * density field of the result's JFIF header differs. */
	im->Xres = im->Yres = 72.0 / 25.4;
	if (c.saw_JFIF_marker && c.X_density > 0 && c.Y_density > 0) {
		if (c.density_unit == 1) {
			im->Xres = c.X_density / 25.4;
			im->Yres = c.Y_density / 25.4;
		} else if (c.density_unit == 2) {
			im->Xres = c.X_density / 10.0;
			im->Yres = c.Y_density / 10.0;
		}
	}
	jpeg_destroy_decompress(&c);
	*out = im;
	return QF_JPEG_OK;
}
