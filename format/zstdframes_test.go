package format

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestZstdFrames: the zstd writer's frames decode, in order, to what was
// written, at every size around a frame's, written in any pieces; a
// failing destination fails the stream.
func TestZstdFrames(t *testing.T) {
	text := randomText(5*zstdFrame + 12345)
	for _, n := range []int{0, 1, zstdFrame - 1, zstdFrame, zstdFrame + 1, 2 * zstdFrame, 3*zstdFrame + 7, len(text)} {
		out := bytes.NewBuffer(compressInPieces(t, Zstd, text[:n]))
		frames := bytes.Count(out.Bytes(), []byte{0x28, 0xb5, 0x2f, 0xfd})
		if want := max(1, (n+zstdFrame-1)/zstdFrame); frames < want {
			t.Fatalf("%d bytes: %d frames, want at least %d", n, frames, want)
		}
		r, err := zstd.NewReader(out)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, text[:n]) {
			t.Fatalf("%d bytes: decoded %d bytes (%v), not what was written", n, len(got), err)
		}
	}
	failingDestinationFails(t, Zstd, text)
}

// randomText is n bytes of compressible text, the same every time.
func randomText(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	text := make([]byte, n)
	for i := range text {
		text[i] = "abcdefgh \n"[rng.IntN(10)]
	}
	return text
}

// compressInPieces compresses plain with c at its default level, written
// in random pieces of up to 3 MiB.
func compressInPieces(t *testing.T, c Compression, plain []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := NewCompressor(&out, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for p := plain; len(p) > 0; {
		k := min(len(p), 1+rng.IntN(3<<20))
		if n, err := w.Write(p[:k]); err != nil || n != k {
			t.Fatalf("wrote %d of %d bytes: %v", n, k, err)
		}
		p = p[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// failingDestinationFails: a compressor whose destination fails reports
// that failure at Close.
func failingDestinationFails(t *testing.T, c Compression, text []byte) {
	t.Helper()
	boom := errors.New("disk full")
	w, _ := NewCompressor(failWriter{boom}, c, 0)
	w.Write(text)
	if err := w.Close(); !errors.Is(err, boom) {
		t.Fatalf("%s to a failing destination: %v", c, err)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }
