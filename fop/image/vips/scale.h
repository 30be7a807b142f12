// imageView2's one-call pipeline (scale.c).
#ifndef QUFOP_SCALE_H
#define QUFOP_SCALE_H

#include <vips/vips.h>

int qf_scale(const void *buf, size_t len, int jpeg, int shrink, int fail,
	int w, int h, int orientation, size_t whole_max, VipsImage **out);

#endif
