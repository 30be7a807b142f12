// C shims for the watermark command; see watermark.c.
#ifndef QUFOP_WATERMARK_H
#define QUFOP_WATERMARK_H

#include <vips/vips.h>

int qf_wm_text(const char *text, const char *font, int dpi, VipsImage **out);
int qf_wm_mask_overlay(VipsImage *mask, int r, int g, int b, double opacity, VipsImage **out);
int qf_wm_image_overlay(VipsImage *in, double opacity, VipsImage **out);
int qf_wm_composite(VipsImage *base, VipsImage *over, int x, int y, VipsImage **out);

#endif
