//go:build !linux

package exec

func setPipeSize(fd uintptr, size int) {}
