// Lossless JPEG re-compression (jpegtran -optimize [-progressive]) for
// imageslim; see jpegtran.go.
#ifndef QUFOP_JPEGTRAN_H
#define QUFOP_JPEGTRAN_H

#include <stdlib.h>

int qf_jpeg_recompress(const void *in, size_t inlen, int progressive,
	const void *app1, size_t app1len, void **out, unsigned long *outlen, char *err, size_t errlen);

#endif
