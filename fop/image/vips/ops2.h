// C shims for the imageMogr2 extras (extent, border, background, sharpen),
// imageslim and palette reduction; see ops2.go and quantise.go.
#ifndef QUFOP_OPS2_H
#define QUFOP_OPS2_H

#include <stdlib.h>
#include <vips/vips.h>

int qf_embed_bg(VipsImage *in, VipsImage **out, int x, int y, int width, int height, double *bg, int nbg);
int qf_flatten_bg(VipsImage *in, VipsImage **out, double *bg, int nbg);
int qf_addalpha(VipsImage *in, VipsImage **out);
int qf_sharpen(VipsImage *in, VipsImage **out, double sigma, double m1, double m2);
int qf_drop_metadata(VipsImage *in, VipsImage **out);
int qf_pngsave_filter(VipsImage *in, void **buf, size_t *len, int compression, int filter, int strip);
int qf_quantise(VipsImage *in, int colours, double dither, unsigned char *index, unsigned char *palette, int *ncolours);
int qf_exact_palette(VipsImage *in, unsigned char *index, unsigned char *palette, int *ncolours);

#endif
