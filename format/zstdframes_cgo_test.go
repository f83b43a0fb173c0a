//go:build cgo

package format

import (
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestLibzstdBuiltIn: a cgo build compresses zstd with libzstd.
func TestLibzstdBuiltIn(t *testing.T) {
	if newCFrameEncoder == nil {
		t.Fatal("built with cgo, but zstd frames would be compressed by the Go encoder")
	}
}

// TestLibzstdLevels: libzstd compresses the fastest and default levels
// and leaves better and best to the Go encoder, which beats it there.
func TestLibzstdLevels(t *testing.T) {
	for lv, want := range map[zstd.EncoderLevel]bool{zstd.SpeedFastest: true, zstd.SpeedDefault: true, zstd.SpeedBetterCompression: false, zstd.SpeedBestCompression: false} {
		if _, ok := newCFrameEncoder(lv, 1); ok != want {
			t.Errorf("%s: libzstd compresses it: %v, want %v", lv, ok, want)
		}
	}
}
