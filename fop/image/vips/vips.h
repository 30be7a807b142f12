// C shims over libvips for package vips. cgo cannot call variadic functions,
// so every vips_xxx(..., NULL) call we need is wrapped here with fixed
// arguments.
#ifndef QUFOP_VIPS_H
#define QUFOP_VIPS_H

#include <stdlib.h>
#include <vips/vips.h>

typedef struct {
	int width, height, bands, pages, page_height, orientation, has_alpha;
	int interpretation, band_format, palette;
	const char *loader; /* static string owned by libvips */
} qf_header;

int qf_startup(void);
void qf_error(char **msg);
void qf_thread_shutdown(void);
size_t qf_tracked_mem(void);
size_t qf_tracked_mem_highwater(void);

const char *qf_find_loader(const void *buf, size_t len);
int qf_probe(const void *buf, size_t len, qf_header *h);
void qf_image_header(VipsImage *im, qf_header *h);

int qf_load(const void *buf, size_t len, int sequential, int all_pages, int fail, int shrink, VipsImage **out);
int qf_thumbnail(const void *buf, size_t len, int width, int height, int size,
	int crop, int no_rotate, int all_pages, int fail, VipsImage **out);

int qf_copy_memory(VipsImage *in, VipsImage **out);
int qf_autorot(VipsImage *in, VipsImage **out);
int qf_rot(VipsImage *in, VipsImage **out, int angle);
int qf_rotate(VipsImage *in, VipsImage **out, double angle, double *bg, int nbg);
int qf_extract_area(VipsImage *in, VipsImage **out, int left, int top, int width, int height);
int qf_extract_band(VipsImage *in, VipsImage **out, int band, int n);
int qf_resize(VipsImage *in, VipsImage **out, double hscale, double vscale);
int qf_gaussblur(VipsImage *in, VipsImage **out, double sigma);
int qf_flatten_white(VipsImage *in, VipsImage **out);
int qf_colourspace_srgb(VipsImage *in, VipsImage **out);
int qf_cast_uchar(VipsImage *in, VipsImage **out);
int qf_arrayjoin_vertical(VipsImage **in, int n, VipsImage **out);
int qf_copy_set_page_height(VipsImage *in, VipsImage **out, int page_height);
int qf_copy_remove(VipsImage *in, VipsImage **out, const char *name);
int qf_band_means(VipsImage *in, double *out, int n);

int qf_get_blob(VipsImage *im, const char *name, const void **data, size_t *len);
int qf_get_int(VipsImage *im, const char *name, int *out);
char *qf_get_as_string(VipsImage *im, const char *name);

int qf_jpegsave(VipsImage *in, void **buf, size_t *len, int q, int interlace, int strip, int optimize);
int qf_pngsave(VipsImage *in, void **buf, size_t *len, int interlace, int strip, int compression);
int qf_webpsave(VipsImage *in, void **buf, size_t *len, int q, int lossless, int strip);
int qf_gifsave(VipsImage *in, void **buf, size_t *len, int strip);
int qf_tiffsave(VipsImage *in, void **buf, size_t *len, int strip);

#endif
