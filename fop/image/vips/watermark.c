// C shims for the watermark command (see watermark.go): text rendering,
// turning an image into an overlay, and compositing one onto a base.
#include "watermark.h"

// qf_wm_text renders text (plain, not Pango markup: it is escaped here, so
// that a user's '<' or '&' is drawn rather than parsed) with the Pango font
// description font at dpi, as a one-band uchar mask (0 none .. 255 full
// ink).
int
qf_wm_text(const char *text, const char *font, int dpi, VipsImage **out)
{
	char *markup = g_markup_escape_text(text, -1);
	int rc = vips_text(out, markup, "font", font, "dpi", dpi, NULL);

	g_free(markup);
	return rc;
}

// qf_wm_mask_overlay turns a text mask into an sRGB uchar overlay: the
// colour r,g,b everywhere, the mask scaled by opacity as alpha. The result
// is rendered into memory, so it depends on nothing upstream.
int
qf_wm_mask_overlay(VipsImage *mask, int r, int g, int b, double opacity, VipsImage **out)
{
	VipsImage *ctx = vips_image_new();
	VipsImage **t = (VipsImage **) vips_object_local_array(VIPS_OBJECT(ctx), 5);
	double ink[3] = {r, g, b};
	int rc = -1;

	if (!(t[0] = vips_image_new_from_image(mask, ink, 3)))
		goto done;
	if (vips_linear1(mask, &t[1], opacity, 0.0, NULL) ||
		vips_cast(t[1], &t[2], VIPS_FORMAT_UCHAR, NULL) ||
		vips_bandjoin2(t[0], t[2], &t[3], NULL) ||
		vips_copy(t[3], &t[4], "interpretation", VIPS_INTERPRETATION_sRGB, NULL))
		goto done;
	if (!(*out = vips_image_copy_memory(t[4])))
		goto done;
	rc = 0;
done:
	g_object_unref(ctx);
	return rc;
}

// qf_wm_image_overlay turns any image into an sRGB uchar overlay with an
// alpha band (added opaque when missing) scaled by opacity, rendered into
// memory: the result no longer reads the encoded input it came from.
int
qf_wm_image_overlay(VipsImage *in, double opacity, VipsImage **out)
{
	VipsImage *ctx = vips_image_new();
	VipsImage **t = (VipsImage **) vips_object_local_array(VIPS_OBJECT(ctx), 8);
	VipsImage *cur;
	int rc = -1;

	if (vips_colourspace(in, &t[0], VIPS_INTERPRETATION_sRGB, NULL) ||
		vips_cast(t[0], &t[1], VIPS_FORMAT_UCHAR, NULL))
		goto done;
	cur = t[1];
	if (!vips_image_hasalpha(cur)) {
		if (vips_addalpha(cur, &t[2], NULL))
			goto done;
		cur = t[2];
	}
	if (opacity < 1.0) {
		if (vips_extract_band(cur, &t[3], 0, "n", 3, NULL) ||
			vips_extract_band(cur, &t[4], 3, NULL) ||
			vips_linear1(t[4], &t[5], opacity, 0.0, NULL) ||
			vips_cast(t[5], &t[6], VIPS_FORMAT_UCHAR, NULL) ||
			vips_bandjoin2(t[3], t[6], &t[7], NULL))
			goto done;
		cur = t[7];
	}
	if (!(*out = vips_image_copy_memory(cur)))
		goto done;
	rc = 0;
done:
	g_object_unref(ctx);
	return rc;
}

// qf_wm_composite draws over onto base with its top-left corner at x, y
// (the "over" blend mode). The result has base's size and an alpha band.
int
qf_wm_composite(VipsImage *base, VipsImage *over, int x, int y, VipsImage **out)
{
	return vips_composite2(base, over, out, VIPS_BLEND_MODE_OVER, "x", x, "y", y, NULL);
}
