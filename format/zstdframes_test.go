package format

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
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

// frameEncoders are the encoders this build has: the Go one, and
// libzstd's where cgo built it in.
func frameEncoders(t *testing.T, level zstd.EncoderLevel) map[string]frameEncoder {
	t.Helper()
	goEnc, err := newGoFrameEncoder(level, zstdFrames)
	if err != nil {
		t.Fatal(err)
	}
	encs := map[string]frameEncoder{"go": goEnc}
	if newCFrameEncoder != nil {
		if c, ok := newCFrameEncoder(level, zstdFrames); ok {
			encs["libzstd"] = c
		}
	}
	return encs
}

// TestZstdFrameEncoders: each encoder, at each level, writes one frame
// per block that carries its content's checksum; the frames decode with
// the Go decoder and with zstd itself, and a changed checksum is caught
// by both.
func TestZstdFrameEncoders(t *testing.T) {
	text := randomText(zstdFrame + 5000)
	zstdCLI, _ := exec.LookPath("zstd")
	for lv := zstd.SpeedFastest; lv <= zstd.SpeedBestCompression; lv++ {
		for name, enc := range frameEncoders(t, lv) {
			for _, n := range []int{0, 1, 4096, zstdFrame} {
				in := text[:n]
				frame, err := enc.encode(make([]byte, 0, 16), in)
				if err != nil {
					t.Fatalf("%s %s, %d bytes: %v", name, lv, n, err)
				}
				if got, err := decodeZstd(frame); err != nil || !bytes.Equal(got, in) {
					t.Fatalf("%s %s, %d bytes: decoded %d bytes (%v)", name, lv, n, len(got), err)
				}
				if n == 0 {
					continue // the Go encoder writes an empty frame without a checksum
				}
				if len(frame) < 9 || binary.LittleEndian.Uint32(frame) != 0xfd2fb528 || frame[4]&4 == 0 {
					t.Fatalf("%s %s, %d bytes: not a frame with a content checksum: % x", name, lv, n, frame[:min(len(frame), 8)])
				}
				bad := bytes.Clone(frame)
				bad[len(bad)-1] ^= 1
				if _, err := decodeZstd(bad); err == nil {
					t.Fatalf("%s %s, %d bytes: a changed checksum decodes", name, lv, n)
				}
				if zstdCLI == "" || n != zstdFrame || lv != zstd.SpeedDefault {
					continue
				}
				for _, c := range []struct {
					frame []byte
					ok    bool
				}{{frame, true}, {bad, false}} {
					cmd := exec.Command(zstdCLI, "-d", "-c")
					cmd.Stdin = bytes.NewReader(c.frame)
					got, err := cmd.Output()
					if ok := err == nil && bytes.Equal(got, in); ok != c.ok {
						t.Fatalf("%s: zstd -d of a frame (its checksum intact: %v) decoded %d bytes: %v", name, c.ok, len(got), err)
					}
				}
			}
			enc.close()
		}
	}
	if zstdCLI == "" {
		t.Log("zstd is not on PATH: frames were not decoded by zstd itself")
	}
}

// TestZstdFrameLevels: the levels trade speed for size as their names
// say (fastest > default > better on table rows), and libzstd's default
// is about the Go encoder's default in size.
func TestZstdFrameLevels(t *testing.T) {
	rows := tableRows(zstdFrame)
	sizes := map[string][]int{}
	for lv := zstd.SpeedFastest; lv <= zstd.SpeedBetterCompression; lv++ {
		for name, enc := range frameEncoders(t, lv) {
			frame, err := enc.encode(nil, rows)
			if err != nil {
				t.Fatal(err)
			}
			enc.close()
			sizes[name] = append(sizes[name], len(frame))
		}
	}
	if c := sizes["libzstd"]; len(c) > 0 {
		sizes["libzstd"] = append(c, sizes["go"][2]) // better is the Go encoder's
	}
	for name, s := range sizes {
		if !(s[0] > s[1] && s[1] > s[2]) {
			t.Errorf("%s: frame sizes at fastest, default, better: %v, want each smaller", name, s)
		}
	}
	if c, ok := sizes["libzstd"]; ok {
		if g := sizes["go"]; float64(c[1]) > 1.03*float64(g[1]) || float64(c[1]) < 0.90*float64(g[1]) {
			t.Errorf("default level: libzstd %d bytes, Go %d", c[1], g[1])
		}
	}
	t.Log(sizes)
}

// tableRows is n bytes of COPY rows, the same every time: sequential
// ids, a few hundred distinct descriptions, dates, prices.
func tableRows(n int) []byte {
	rng := rand.New(rand.NewPCG(3, 4))
	words := []string{"Epic", "Drama", "of", "a", "Feminist", "And", "a", "Mad Scientist", "who", "must", "Battle", "a", "Teacher", "in", "The", "Canadian Rockies", "Astounding", "Reflection"}
	descs := make([]string, 300)
	for i := range descs {
		var d bytes.Buffer
		for range 6 + rng.IntN(6) {
			d.WriteString(words[rng.IntN(len(words))] + " ")
		}
		descs[i] = d.String()
	}
	var b bytes.Buffer
	for id := 1; b.Len() < n; id++ {
		fmt.Fprintf(&b, "%d\t%s\t%d.99\t2026-02-%02d 10:%02d:00+00\n", id, descs[rng.IntN(len(descs))], rng.IntN(5), 1+rng.IntN(28), rng.IntN(60))
	}
	return b.Bytes()[:n]
}

// TestZstdContentChecksumRefusesOtherFrames: only a frame without a
// checksum gets one.
func TestZstdContentChecksumRefusesOtherFrames(t *testing.T) {
	goEnc, _ := newGoFrameEncoder(zstd.SpeedDefault, 1)
	defer goEnc.close()
	withSum, _ := goEnc.encode(nil, []byte("rows"))
	for name, b := range map[string][]byte{"empty": nil, "short": {0x28, 0xb5, 0x2f, 0xfd}, "gzip": {0x1f, 0x8b, 8, 0, 0, 0}, "checksummed": withSum} {
		if _, err := withContentChecksum(bytes.Clone(b), []byte("rows")); err == nil {
			t.Errorf("%s: given a checksum", name)
		}
	}
}

// TestBlockWriterEncodeError: a block that fails to compress fails the
// stream, at the write that finds it or at Close, and nothing after it
// is written.
func TestBlockWriterEncodeError(t *testing.T) {
	boom := errors.New("encoder failed")
	var out bytes.Buffer
	w := &blockWriter{w: &out, size: 4, inflight: 2, compress: func(o, in []byte) ([]byte, error) {
		if bytes.Equal(in, []byte("bbbb")) {
			return nil, boom
		}
		return append(o, in...), nil
	}}
	w.Write([]byte("aaaabbbbccccdddd"))
	if err := w.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close: %v, want the encoder's error", err)
	}
	if out.String() != "aaaa" {
		t.Fatalf("wrote %q, want only the block before the failed one", out.String())
	}
}

func decodeZstd(b []byte) ([]byte, error) {
	r, err := zstd.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
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

// TestZstdEncodersSaysWhich: what version prints names the encoder this
// build has (run with and without cgo by make test).
func TestZstdEncodersSaysWhich(t *testing.T) {
	if got := ZstdEncoders(); (newCFrameEncoder != nil) != strings.Contains(got, "libzstd") {
		t.Fatalf("libzstd built in: %v; ZstdEncoders: %q", newCFrameEncoder != nil, got)
	}
}
