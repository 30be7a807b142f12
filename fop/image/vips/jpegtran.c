#include "jpegtran.h"

#include <stdio.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>

/* libjpeg reports errors through error_exit, which must not return: jump
 * back to qf_jpeg_recompress with the message. */
typedef struct {
	struct jpeg_error_mgr pub;
	jmp_buf jump;
} qf_jerr;

static void
qf_jerror_exit(j_common_ptr cinfo)
{
	qf_jerr *e = (qf_jerr *) cinfo->err;
	longjmp(e->jump, 1);
}

static void
qf_joutput_message(j_common_ptr cinfo)
{
	(void) cinfo; /* warnings (corrupt data) are not printed */
}

#define ICC_MARKER (JPEG_APP0 + 2)

/* qf_jpeg_recompress rewrites the entropy coding of a JPEG without decoding
 * it to pixels: the DCT coefficients are copied as they are, with
 * optimised Huffman tables (and a progressive scan script when asked).
 * Only the ICC profile (APP2 ICC_PROFILE markers) is copied from the
 * source; app1, when given, is written as the only APP1 (a minimal EXIF
 * holding the orientation). A warning (corrupt data) is an error: such a
 * file is returned as it is by the caller. */
int
qf_jpeg_recompress(const void *in, size_t inlen, int progressive,
	const void *app1, size_t app1len, void **out, unsigned long *outlen, char *err, size_t errlen)
{
	struct jpeg_decompress_struct src;
	struct jpeg_compress_struct dst;
	qf_jerr jsrc, jdst;
	jvirt_barray_ptr *coef;
	jpeg_saved_marker_ptr m;
	unsigned char *buf = NULL;
	unsigned long len = 0;
	volatile int dst_made = 0;

	src.err = jpeg_std_error(&jsrc.pub);
	jsrc.pub.error_exit = qf_jerror_exit;
	jsrc.pub.output_message = qf_joutput_message;
	dst.err = jpeg_std_error(&jdst.pub);
	jdst.pub.error_exit = qf_jerror_exit;
	jdst.pub.output_message = qf_joutput_message;

	if (setjmp(jsrc.jump) || setjmp(jdst.jump)) {
		char msg[JMSG_LENGTH_MAX] = "";
		if (jsrc.pub.msg_code)
			(*jsrc.pub.format_message)((j_common_ptr) &src, msg);
		else
			(*jdst.pub.format_message)((j_common_ptr) &dst, msg);
		snprintf(err, errlen, "%s", msg);
		if (dst_made)
			jpeg_destroy_compress(&dst);
		jpeg_destroy_decompress(&src);
		free(buf);
		return -1;
	}
	jsrc.pub.msg_code = 0;
	jdst.pub.msg_code = 0;

	jpeg_create_decompress(&src);
	jpeg_mem_src(&src, (const unsigned char *) in, inlen);
	jpeg_save_markers(&src, ICC_MARKER, 0xFFFF);
	jpeg_read_header(&src, TRUE);
	coef = jpeg_read_coefficients(&src);
	if (jsrc.pub.num_warnings > 0) {
		snprintf(err, errlen, "%s", "corrupt JPEG data");
		jpeg_destroy_decompress(&src);
		return -1;
	}

	jpeg_create_compress(&dst);
	dst_made = 1;
	jpeg_mem_dest(&dst, &buf, &len);
	jpeg_copy_critical_parameters(&src, &dst);
	dst.optimize_coding = TRUE;
	if (progressive)
		jpeg_simple_progression(&dst);
	jpeg_write_coefficients(&dst, coef);
	if (app1 && app1len > 0)
		jpeg_write_marker(&dst, JPEG_APP0 + 1, (const JOCTET *) app1, (unsigned int) app1len);
	for (m = src.marker_list; m; m = m->next)
		if (m->marker == ICC_MARKER && m->data_length >= 12 &&
			memcmp(m->data, "ICC_PROFILE", 12) == 0)
			jpeg_write_marker(&dst, m->marker, m->data, m->data_length);
	jpeg_finish_compress(&dst);
	jpeg_destroy_compress(&dst);
	jpeg_finish_decompress(&src);
	jpeg_destroy_decompress(&src);
	*out = buf;
	*outlen = len;
	return 0;
}
