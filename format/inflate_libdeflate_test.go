//go:build cgo && libdeflate

package format

import (
	"strings"
	"testing"
)

// TestLibdeflateBuiltIn: a build with the libdeflate tag inflates
// authenticated gzip members with libdeflate, and version says so.
func TestLibdeflateBuiltIn(t *testing.T) {
	if cInflate == nil {
		t.Fatal("built with libdeflate, but every gzip member would be inflated in Go")
	}
	if !strings.Contains(GzipDecoders(), "libdeflate") {
		t.Fatalf("GzipDecoders: %q", GzipDecoders())
	}
}
