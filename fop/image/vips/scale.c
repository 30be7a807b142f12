#include "scale.h"
#include "pngfast.h"
#include "jpegfast.h"

/* qf_scale is imageView2's pipeline in one call, as imgproxy builds its own
 * instead of vips_thumbnail: the input is opened once (a JPEG at the DCT
 * scale the caller chose, so it is decoded small), reduced with lanczos3 to
 * exactly w×h (sizes of the stored, not yet oriented image), with alpha
 * premultiplied around the resize, then turned upright and brought to sRGB.
 * vips_thumbnail opens its input twice and parses the header (and a camera's
 * EXIF block) each time; the caller here already knows the size from its own
 * header read.
 */
int
qf_scale(const void *buf, size_t len, int jpeg, int shrink, int fail,
	int w, int h, int orientation, size_t whole_max, VipsImage **out)
{
	VipsImage *base = vips_image_new();
	VipsImage **t = (VipsImage **) vips_object_local_array(VIPS_OBJECT(base), 10);
	VipsImage *in;
	VipsFailOn fail_on = fail ? VIPS_FAIL_ON_TRUNCATED : VIPS_FAIL_ON_NONE;
	VipsBandFormat format;
	int premultiplied = 0;

	if (jpeg && whole_max > 0 &&
		qf_jpeg_fast(buf, len, shrink, whole_max, &t[0]) == QF_JPEG_OK) {
		/* Decoded whole by libjpeg, without libvips' loader, which
		 * would have read the orientation vips_autorot turns by. */
		if (orientation > 1 && orientation <= 8)
			vips_image_set_int(t[0], VIPS_META_ORIENTATION, orientation);
	}
	else if (jpeg && shrink > 1)
		(void) vips_jpegload_buffer((void *) buf, len, &t[0],
			"shrink", shrink,
			"access", VIPS_ACCESS_SEQUENTIAL,
			"fail_on", fail_on,
			NULL);
	else if (whole_max > 0 &&
		qf_png_fast(buf, len, whole_max, w, h, &t[0]) == QF_PNG_OK)
		; /* decoded whole, without libpng */
	else
		t[0] = vips_image_new_from_buffer(buf, len, "",
			"access", VIPS_ACCESS_SEQUENTIAL,
			"fail_on", fail_on,
			NULL);
	if (!t[0])
		goto fail;
	in = t[0];
	format = in->BandFmt;

	if (in->Xsize != w || in->Ysize != h) {
		if (vips_image_get_typeof(in, QF_PNG_PREMULTIPLIED))
			/* The PNG decoder premultiplied as it went, as below. */
			premultiplied = 1;
		else if (vips_image_hasalpha(in)) {
			/* Premultiplied, then back to the input's format: the
			 * resize runs on 8-bit bands (libvips' vector paths), not on
			 * floats, at the cost of rounding the premultiplied colour
			 * (imgproxy does the same). */
			if (vips_premultiply(in, &t[9], NULL) ||
				vips_cast(t[9], &t[1], format, NULL))
				goto fail;
			in = t[1];
			premultiplied = 1;
		}
		if (vips_resize(in, &t[2], (double) w / in->Xsize,
				"vscale", (double) h / in->Ysize,
				"kernel", VIPS_KERNEL_LANCZOS3,
				NULL))
			goto fail;
		in = t[2];
		if (premultiplied) {
			if (vips_unpremultiply(in, &t[3], NULL) ||
				vips_cast(t[3], &t[4], format, NULL))
				goto fail;
			in = t[4];
		}
	}

	/* Upright after the resize, on the small image. vips_rot needs random
	 * access: the result of a sequential load is copied to memory first
	 * (it is the output's size). */
	if (orientation > 1 && orientation <= 8) {
		if (!(t[5] = vips_image_copy_memory(in)))
			goto fail;
		if (vips_autorot(t[5], &t[6], NULL))
			goto fail;
		in = t[6];
	}

	/* sRGB out, whatever came in: an embedded profile is applied (then
	 * dropped by the caller's strip), CMYK and other spaces converted. */
	if (vips_image_get_typeof(in, VIPS_META_ICC_NAME)) {
		if (vips_icc_transform(in, &t[7], "srgb",
				"embedded", TRUE,
				"intent", VIPS_INTENT_RELATIVE,
				NULL)) {
			/* A broken profile: fall back to the pixels as they are. */
			vips_error_clear();
		} else
			in = t[7];
	}
	switch (vips_image_get_interpretation(in)) {
	case VIPS_INTERPRETATION_sRGB:
	case VIPS_INTERPRETATION_B_W:
	case VIPS_INTERPRETATION_RGB16:
	case VIPS_INTERPRETATION_GREY16:
		break;
	default:
		if (vips_colourspace(in, &t[8], VIPS_INTERPRETATION_sRGB, NULL))
			goto fail;
		in = t[8];
	}

	g_object_ref(in);
	*out = in;
	g_object_unref(base);
	return 0;

fail:
	g_object_unref(base);
	return -1;
}
