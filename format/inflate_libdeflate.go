//go:build cgo && libdeflate

package format

/*
#cgo LDFLAGS: -ldeflate
#include <libdeflate.h>

// inflate decodes in into exactly out_len bytes; it fails unless the
// deflate stream gives that much and ends at the end of in.
static int inflate(const void *in, size_t in_len, void *out, size_t out_len) {
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	if (d == NULL) return -1;
	size_t used = 0;
	enum libdeflate_result r = libdeflate_deflate_decompress_ex(d, in, in_len, out, out_len, &used, NULL);
	libdeflate_free_decompressor(d);
	if (r == LIBDEFLATE_SUCCESS && used != in_len) return -2;
	return (int)r;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// libdeflate inflates an authenticated member in about a third of the Go
// decoder's time; see cInflate for why only those.
func init() { cInflate = libdeflateInflate }

func libdeflateInflate(in, out []byte) error {
	if len(in) == 0 {
		return errors.New("no deflate data")
	}
	var o unsafe.Pointer
	if len(out) > 0 {
		o = unsafe.Pointer(&out[0])
	}
	switch r := C.inflate(unsafe.Pointer(&in[0]), C.size_t(len(in)), o, C.size_t(len(out))); r {
	case C.LIBDEFLATE_SUCCESS:
		return nil
	case C.LIBDEFLATE_SHORT_OUTPUT:
		return fmt.Errorf("less output than its trailer states (%d bytes)", len(out))
	case C.LIBDEFLATE_INSUFFICIENT_SPACE:
		return errors.New("more output than its trailer states")
	case -2:
		return errors.New("bytes after its deflate data")
	case -1:
		return errors.New("libdeflate: out of memory")
	default:
		return fmt.Errorf("its deflate data does not decode (libdeflate: %d)", int(r))
	}
}
