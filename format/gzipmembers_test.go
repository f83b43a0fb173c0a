package format

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os/exec"
	"testing"

	"github.com/klauspost/pgzip"
)

func gunzipMembers(data []byte) ([]byte, error) {
	k, _ := lookup(Gzip)
	r, err := k.reader(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// TestGzipMembers: gzip streams are members of gzipMember bytes of input
// that carry their lengths; they decode, in order, to what was written,
// at every size around a member's, with BackupKit's reader and with any
// gzip reader (Go's, and gunzip itself); a failing destination fails the
// stream.
func TestGzipMembers(t *testing.T) {
	text := randomText(4*gzipMember + 12345)
	for _, n := range []int{0, 1, gzipMember - 1, gzipMember, gzipMember + 1, 3*gzipMember + 7, len(text)} {
		data := compressInPieces(t, Gzip, text[:n])
		members := 0
		for off := 0; off < len(data); members++ {
			if !sizedMembers(data[off:]) {
				t.Fatalf("%d bytes: member %d at %d has no length field", n, members, off)
			}
			off += int(binary.LittleEndian.Uint32(data[off+16:]))
		}
		if want := max(1, (n+gzipMember-1)/gzipMember); members != want {
			t.Fatalf("%d bytes: %d members, want %d", n, members, want)
		}
		got, err := gunzipMembers(data)
		if err != nil || !bytes.Equal(got, text[:n]) {
			t.Fatalf("%d bytes: decoded %d bytes (%v), not what was written", n, len(got), err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, text[:n]) {
			t.Fatalf("%d bytes: Go's gzip reader decoded %d bytes (%v)", n, len(got), err)
		}
		if path, err := exec.LookPath("gunzip"); err == nil {
			c := exec.Command(path, "-c")
			c.Stdin = bytes.NewReader(data)
			if got, err := c.Output(); err != nil || !bytes.Equal(got, text[:n]) {
				t.Fatalf("%d bytes: gunzip decoded %d bytes (%v)", n, len(got), err)
			}
		}
	}
	failingDestinationFails(t, Gzip, text)
}

// Streams written before members carried their lengths (one pgzip
// member) still decode.
func TestGzipOlderStreamsDecode(t *testing.T) {
	text := randomText(3*gzipMember + 99)
	var buf bytes.Buffer
	zw, _ := pgzip.NewWriterLevel(&buf, 6)
	zw.SetConcurrency(gzipBlock, gzipBlocks)
	zw.Write(text)
	zw.Close()
	if sizedMembers(buf.Bytes()) {
		t.Fatal("a pgzip stream taken for sized members")
	}
	if got, err := gunzipMembers(buf.Bytes()); err != nil || !bytes.Equal(got, text) {
		t.Fatalf("decoded %d bytes: %v", len(got), err)
	}
}

// A damaged member stream is refused with ErrCorrupted or ErrTruncated,
// and no byte of a damaged member is returned: what comes out before the
// error is exactly the members before it.
func TestGzipMembersDamage(t *testing.T) {
	text := randomText(3*gzipMember + 5000)
	data := compressInPieces(t, Gzip, text)
	first := int(binary.LittleEndian.Uint32(data[16:]))
	second := first + int(binary.LittleEndian.Uint32(data[first+16:]))
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(data)) }
	setLen := func(b []byte, off, n int) []byte { binary.LittleEndian.PutUint32(b[off+16:], uint32(n)); return b }
	cases := []struct {
		name string
		data []byte
		want error
		good int // bytes of output that may come before the error
	}{
		{"flipped deflate byte", edit(func(b []byte) []byte { b[first+500] ^= 0x10; return b }), ErrCorrupted, gzipMember},
		{"flipped CRC", edit(func(b []byte) []byte { b[second-8] ^= 1; return b }), ErrCorrupted, gzipMember},
		{"length of the output overstated", edit(func(b []byte) []byte { b[second-4]++; return b }), ErrCorrupted, gzipMember},
		{"length of the output understated", edit(func(b []byte) []byte { b[second-4]--; return b }), ErrCorrupted, gzipMember},
		{"member length too long", edit(func(b []byte) []byte { return setLen(b, first, second-first+1) }), ErrCorrupted, gzipMember},
		{"member length too short", edit(func(b []byte) []byte { return setLen(b, first, second-first-1) }), ErrCorrupted, gzipMember},
		{"member length absurd", edit(func(b []byte) []byte { return setLen(b, first, 1<<30) }), ErrCorrupted, gzipMember},
		{"member length below a header", edit(func(b []byte) []byte { return setLen(b, 0, 12) }), ErrCorrupted, 0},
		{"no length field in a later member", edit(func(b []byte) []byte { b[first+12] = 'X'; return b }), ErrCorrupted, gzipMember},
		{"bytes between the deflate data and the trailer", edit(func(b []byte) []byte {
			m := append(bytes.Clone(b[first:second-8]), 0, 0, 0)
			m = append(m, b[second-8:second]...)
			m = setLen(m, 0, len(m))
			return append(append(b[:first:first], m...), b[second:]...)
		}), ErrCorrupted, gzipMember},
		{"cut in a member", data[:second-100], ErrTruncated, gzipMember},
		{"cut in a header", data[:second+10], ErrTruncated, 2 * gzipMember},
		{"garbage after the last member", append(bytes.Clone(data), "trailing"...), ErrCorrupted, len(text)},
		{"empty", nil, ErrTruncated, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := gunzipMembers(c.data)
			if c.name == "empty" {
				// An empty stream is not sniffed as gzip at all; the
				// member reader on its own reports it.
				got, err = io.ReadAll(newMemberReader(bufio.NewReader(bytes.NewReader(nil))))
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if len(got) > c.good || !bytes.Equal(got, text[:len(got)]) {
				t.Fatalf("%d bytes returned before the error (at most %d, and only what was written)", len(got), c.good)
			}
		})
	}
}

func FuzzGzipMembers(f *testing.F) {
	var buf bytes.Buffer
	w, _ := NewCompressor(&buf, Gzip, 0)
	w.Write([]byte("PGDMP and some text to compress, some text to compress"))
	w.Close()
	f.Add(buf.Bytes())
	f.Add(append(bytes.Clone(buf.Bytes()), buf.Bytes()...))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newMemberReader(bufio.NewReader(bytes.NewReader(data)))
		io.Copy(io.Discard, r)
		r.Close()
	})
}
