//go:build !linux

package populate

func slice[T any](s []T) bool { return false }
