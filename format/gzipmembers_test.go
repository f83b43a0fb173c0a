package format

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"filippo.io/age"

	"github.com/klauspost/pgzip"
)

// gzipDecoders are the member decoders this build has: the Go decoder
// (for bytes as read from storage) and, built with libdeflate, the C one
// (for authenticated bytes).
func gzipDecoders() map[string]bool {
	d := map[string]bool{"go": false}
	if cInflate != nil {
		d["libdeflate"] = true
	}
	return d
}

func gunzipMembers(data []byte, authenticated bool) ([]byte, error) {
	k, _ := lookup(Gzip)
	r, err := k.reader(bufio.NewReader(bytes.NewReader(data)), authenticated)
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
		for name, auth := range gzipDecoders() {
			got, err := gunzipMembers(data, auth)
			if err != nil || !bytes.Equal(got, text[:n]) {
				t.Fatalf("%d bytes, %s decoder: decoded %d bytes (%v), not what was written", n, name, len(got), err)
			}
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
	if got, err := gunzipMembers(buf.Bytes(), true); err != nil || !bytes.Equal(got, text) {
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
	for name, auth := range gzipDecoders() {
		for _, c := range cases {
			t.Run(name+"/"+c.name, func(t *testing.T) {
				got, err := gunzipMembers(c.data, auth)
				if c.name == "empty" {
					// An empty stream is not sniffed as gzip at all; the
					// member reader on its own reports it.
					got, err = io.ReadAll(newMemberReader(bufio.NewReader(bytes.NewReader(nil)), auth))
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
}

func FuzzGzipMembers(f *testing.F) {
	var buf bytes.Buffer
	w, _ := NewCompressor(&buf, Gzip, 0)
	w.Write([]byte("PGDMP and some text to compress, some text to compress"))
	w.Close()
	f.Add(buf.Bytes())
	f.Add(append(bytes.Clone(buf.Bytes()), buf.Bytes()...))
	// Differential: where the build has libdeflate, it and the Go
	// decoder must return the same bytes and agree on whether the stream
	// is whole.
	f.Fuzz(func(t *testing.T, data []byte) {
		var outs [][]byte
		var errs []error
		for _, auth := range []bool{false, true} {
			r := newMemberReader(bufio.NewReader(bytes.NewReader(data)), auth)
			out, err := io.ReadAll(r)
			r.Close()
			outs, errs = append(outs, out), append(errs, err)
		}
		if !bytes.Equal(outs[0], outs[1]) || (errs[0] == nil) != (errs[1] == nil) {
			t.Fatalf("the decoders disagree: Go %d bytes (%v), libdeflate %d bytes (%v)", len(outs[0]), errs[0], len(outs[1]), errs[1])
		}
	})
}

// TestGzipCDecoderOnlyAuthenticated: a member goes to the C decoder only
// when its bytes were authenticated, those of an encrypted backup
// (password or age) after their chunk's tag was checked; a gzip backup
// as stored is decoded in Go. The C decoder here is a stand-in that
// counts its calls, so this runs in every build.
func TestGzipCDecoderOnlyAuthenticated(t *testing.T) {
	var calls atomic.Int64
	saved := cInflate
	t.Cleanup(func() { cInflate = saved })
	cInflate = func(in, out []byte) error { calls.Add(1); return goInflate(in, out) }

	text := append([]byte("PGDMP"), randomText(3*gzipMember)...)
	gz := compressInPieces(t, Gzip, text)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	rcpt, err := ParseRecipients([]string{id.Recipient().String()})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := ParseIdentities([]byte(id.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	var aged bytes.Buffer
	aw, err := NewAgeEncrypter(&aged, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	aw.Write(gz)
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	keys := Keys{Password: "pw", Identities: ids}
	for _, c := range []struct {
		name   string
		stored []byte
		inC    bool
	}{
		{"gzip as stored", gz, false},
		{"password-encrypted", encrypt(t, gz, "pw"), true},
		{"age-encrypted", aged.Bytes(), true},
	} {
		calls.Store(0)
		d, err := Decode(bytes.NewReader(c.stored), keys)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, err := io.ReadAll(d)
		d.Close()
		if err != nil || !bytes.Equal(got, text) {
			t.Fatalf("%s: decoded %d bytes (%v)", c.name, len(got), err)
		}
		if n := calls.Load(); (n > 0) != c.inC {
			t.Errorf("%s: %d members inflated by the C decoder, want it used: %v", c.name, n, c.inC)
		} else if c.inC && n != 4 {
			t.Errorf("%s: %d of its 4 members inflated by the C decoder", c.name, n)
		}
	}
}

// TestGzipDecodersSaysWhich: what version prints names the decoder this
// build has. In CI a cgo build must have libdeflate (.ci/run installs
// it), so the C decoder's tests above run there.
func TestGzipDecodersSaysWhich(t *testing.T) {
	if got := GzipDecoders(); (cInflate != nil) != strings.Contains(got, "libdeflate (cgo)") {
		t.Fatalf("libdeflate built in: %v; GzipDecoders: %q", cInflate != nil, got)
	}
	if os.Getenv("CI") != "" && newCFrameEncoder != nil && cInflate == nil {
		t.Fatal("CI runs a cgo build without libdeflate: make test did not find it (Debian's libdeflate-dev)")
	}
}
