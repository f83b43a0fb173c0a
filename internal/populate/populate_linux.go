package populate

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

func slice[T any](s []T) bool {
	s = s[:cap(s)]
	if len(s) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	size := uintptr(len(s)) * unsafe.Sizeof(s[0])
	page := uintptr(os.Getpagesize())
	from, to := (start+page-1)&^(page-1), (start+size)&^(page-1)
	if to <= from {
		return false
	}
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, from, to-from, unix.MADV_POPULATE_WRITE)
	runtime.KeepAlive(s)
	return errno == 0
}
