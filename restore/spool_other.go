//go:build !linux

package restore

import "os"

func startWriteback(f *os.File, off, n int64) {}
