//go:build linux

package restore

import (
	"errors"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing a range of f to disk,
// without waiting for it.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// punchHole frees the pages and disk blocks of n bytes of f at off (the
// file keeps its size; the range reads as zeros).
func punchHole(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// spliceRange moves n bytes of f at off into pipe with splice(2), waiting
// for room in the pipe as a write would. It returns how many it moved;
// errors.ErrUnsupported when the file system cannot splice (nothing
// moved by that call), syscall.EPIPE when the reader went away.
func spliceRange(f *os.File, off, n int64, pipe syscall.RawConn) (int64, error) {
	src, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var moved int64
	var serr error
	cerr := src.Control(func(rfd uintptr) {
		for moved < n && serr == nil {
			werr := pipe.Write(func(wfd uintptr) bool {
				k, e := unix.Splice(int(rfd), &off, int(wfd), nil, int(n-moved), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				switch {
				case e == unix.EAGAIN:
					return false // the pipe is full: wait until it drains
				case e == unix.EINTR:
					return true
				case e == unix.EINVAL || e == unix.ENOSYS:
					serr = errors.ErrUnsupported
				case e != nil:
					serr = e
				case k == 0:
					serr = io.ErrUnexpectedEOF // the spool is shorter than written
				default:
					moved += k
				}
				return true
			})
			if werr != nil && serr == nil {
				serr = werr
			}
		}
	})
	if cerr != nil {
		return moved, cerr
	}
	return moved, serr
}
