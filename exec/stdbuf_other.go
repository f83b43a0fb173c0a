//go:build !linux

package exec

// bufferedStdout is nothing here: libstdbuf is a Linux (glibc or musl)
// preload library.
func bufferedStdout() []string { return nil }
