// Metadata rules of derived images (meta.c).
#ifndef QUFOP_META_H
#define QUFOP_META_H

#include <vips/vips.h>

int qf_drop_private_exif(VipsImage *in, VipsImage **out);

#endif
