#include "meta.h"

#include <string.h>
#include <libexif/exif-data.h>
#include <libexif/exif-utils.h>

/* Fields of the EXIF thumbnail's IFD (1) and of the GPS IFD (3), as libvips
 * names them: on save, libvips writes every exif-ifdN-* field it finds back
 * into the EXIF block, so they go as well as the tags. */
static void *
qf_collect_private(VipsImage *im, const char *name, GValue *value, void *a)
{
	GSList **names = (GSList **) a;

	if (vips_isprefix("exif-ifd1-", name) || vips_isprefix("exif-ifd3-", name) ||
		strcmp(name, "jpeg-thumbnail-data") == 0)
		*names = g_slist_prepend(*names, g_strdup(name));
	return NULL;
}

static void
qf_clear_ifd(ExifContent *c)
{
	while (c && c->count > 0)
		exif_content_remove_entry(c, c->entries[c->count - 1]);
}

/* qf_drop_private_exif copies in without the EXIF block's embedded
 * thumbnail and GPS position: a derived image must not carry the source's
 * preview (which may show what a crop removed) or where it was taken. The
 * rest of the EXIF block stays. */
int
qf_drop_private_exif(VipsImage *in, VipsImage **out)
{
	const void *data;
	size_t len;
	GSList *names = NULL, *p;

	int orientation = 1;

	if (vips_image_get_typeof(in, VIPS_META_ORIENTATION) &&
		vips_image_get_int(in, VIPS_META_ORIENTATION, &orientation))
		orientation = 1;
	if (orientation < 1 || orientation > 8)
		orientation = 1;
	if (vips_copy(in, out, NULL))
		return -1;
	vips_image_map(*out, qf_collect_private, &names);
	for (p = names; p; p = p->next)
		vips_image_remove(*out, (const char *) p->data);
	g_slist_free_full(names, g_free);

	if (vips_image_get_typeof(*out, VIPS_META_EXIF_NAME) &&
		!vips_image_get_blob(*out, VIPS_META_EXIF_NAME, &data, &len) && len > 0) {
		ExifData *ed = exif_data_new_from_data(data, len);
		unsigned char *buf = NULL;
		unsigned int n = 0;

		if (!ed) {
			vips_image_remove(*out, VIPS_META_EXIF_NAME);
			return 0;
		}
		/* Setting the block makes libvips parse it again into fields, the
		 * orientation among them: the block's tag must say what the
		 * image says now (1 once vips_autorot turned it upright). */
		ExifEntry *e = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
		if (e && e->format == EXIF_FORMAT_SHORT && e->size >= 2)
			exif_set_short(e->data, exif_data_get_byte_order(ed), (ExifShort) orientation);
		qf_clear_ifd(ed->ifd[EXIF_IFD_1]);
		qf_clear_ifd(ed->ifd[EXIF_IFD_GPS]);
		if (ed->data) {
			free(ed->data);
			ed->data = NULL;
			ed->size = 0;
		}
		exif_data_save_data(ed, &buf, &n);
		exif_data_unref(ed);
		if (buf && n > 0)
			vips_image_set_blob_copy(*out, VIPS_META_EXIF_NAME, buf, n);
		else
			vips_image_remove(*out, VIPS_META_EXIF_NAME);
		free(buf);
	}
	return 0;
}
