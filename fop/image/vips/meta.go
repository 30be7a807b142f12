package vips

// #cgo pkg-config: libexif
// #include "meta.h"
import "C"

// DropPrivateExif returns im without the EXIF block's embedded thumbnail
// and GPS position (the rest of the block stays): what a derived image
// that keeps its metadata must still not carry.
func (im *Image) DropPrivateExif() (*Image, error) {
	var out *C.VipsImage
	return im.result("exif", C.qf_drop_private_exif(im.im, &out), out)
}
