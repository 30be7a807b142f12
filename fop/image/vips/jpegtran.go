package vips

/*
#cgo pkg-config: libjpeg
#include "jpegtran.h"
*/
import "C"

import (
	"errors"
	"unsafe"
)

// RecompressJPEG rewrites a JPEG losslessly, as jpegtran -optimize
// [-progressive] -copy icc does: the DCT coefficients are kept, the Huffman
// tables are optimised, every marker but the ICC profile is dropped, and
// app1 (an EXIF block, "Exif\0\0"...) is written when not empty. Pixels
// decode exactly as before. Corrupt input is an error.
func RecompressJPEG(data []byte, progressive bool, app1 []byte) ([]byte, error) {
	if len(data) == 0 {
		return nil, ErrUnsupported
	}
	in := C.CBytes(data)
	defer C.free(in)
	var a1 unsafe.Pointer
	if len(app1) > 0 {
		a1 = C.CBytes(app1)
		defer C.free(a1)
	}
	var out unsafe.Pointer
	var n C.ulong
	var msg [200]C.char
	if C.qf_jpeg_recompress(in, C.size_t(len(data)), cbool(progressive), a1, C.size_t(len(app1)),
		&out, &n, &msg[0], C.size_t(len(msg))) != 0 {
		return nil, errors.New("jpeg recompress: " + C.GoString(&msg[0]))
	}
	defer C.free(out)
	return C.GoBytes(out, C.int(n)), nil
}
