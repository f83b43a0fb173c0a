//go:build !linux

package restore

import (
	"errors"
	"os"
	"syscall"
)

func startWriteback(f *os.File, off, n int64) {}

func punchHole(f *os.File, off, n int64) error { return errors.ErrUnsupported }

// spliceRange: no splice(2) here; the caller reads and writes instead.
func spliceRange(f *os.File, off, n int64, pipe syscall.RawConn) (int64, error) {
	return 0, errors.ErrUnsupported
}
