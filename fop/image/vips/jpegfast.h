#ifndef QF_JPEGFAST_H
#define QF_JPEGFAST_H

#include <vips/vips.h>

#define QF_JPEG_OK 0
#define QF_JPEG_FALLBACK 1 /* not a case qf_jpeg_fast decodes: use libvips */

/* qf_jpeg_fast decodes buf whole at 1/shrink of its size into a memory
 * image, as libvips' loader would (the same size, pixels and resolution),
 * if it is a JPEG of a kind it handles whose decoded pixels take at most
 * max_bytes. */
int qf_jpeg_fast(const void *buf, size_t len, int shrink, size_t max_bytes, VipsImage **out);

#endif
