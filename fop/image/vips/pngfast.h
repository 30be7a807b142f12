#ifndef QF_PNGFAST_H
#define QF_PNGFAST_H

#include <vips/vips.h>

#define QF_PNG_OK 0
#define QF_PNG_FALLBACK 1 /* not a case qf_png_fast decodes: use libvips */
#define QF_PNG_ERROR (-1)

/* The field on an image from qf_png_fast whose colour is premultiplied. */
#define QF_PNG_PREMULTIPLIED "qufop-premultiplied"

/* qf_png_fast decodes buf whole into a memory image, if it is a PNG whose
 * pixels take at most max_bytes and of a kind it handles. Unless keep_w is
 * 0 or the image is keep_w×keep_h (it is not going to be resized), the
 * colour of an image with alpha comes out multiplied by its alpha, as
 * vips_premultiply and a cast back to 8 bits leave it, and the image has
 * the field QF_PNG_PREMULTIPLIED. */
int qf_png_fast(const void *buf, size_t len, size_t max_bytes, int keep_w, int keep_h,
	VipsImage **out);

#endif
