package format_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"slices"
	"testing"

	"github.com/backupkit/backupkit/format"
)

func coalesced(t *testing.T, data []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(format.Coalesce(bytes.NewReader(data)))
	if err != nil {
		t.Fatalf("coalesce: %v", err)
	}
	return out
}

// chunkLengths lists the chunk lengths of each table's data block in
// an uncompressed archive, found at the offsets the walk reports.
func chunkLengths(t *testing.T, data []byte, info *format.ArchiveInfo) [][]int64 {
	t.Helper()
	var blocks [][]int64
	for _, e := range info.Entries {
		if e.Desc != "TABLE DATA" || e.DataAt == 0 {
			continue
		}
		var out []int64
		p := e.DataAt + 1 + 5 // type, dump id
		for {
			n := int64(data[p+1]) | int64(data[p+2])<<8 | int64(data[p+3])<<16 | int64(data[p+4])<<24
			p += 5
			if n == 0 {
				break
			}
			out = append(out, n)
			p += n
		}
		blocks = append(blocks, out)
	}
	return blocks
}

// pgRestoreScript is what pg_restore makes of an archive read from a
// pipe: the whole SQL script, data included (but for the random key of
// its \restrict lines).
func pgRestoreScript(t *testing.T, data []byte) string {
	t.Helper()
	cmd := exec.Command("pg_restore", "-f", "-")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pg_restore -f -: %v", err)
	}
	return restrictKey.ReplaceAllString(string(out), `\${1}restrict KEY`)
}

// TestCoalesceRealArchive: pg_dump -Z0 writes a chunk per row; joined,
// the chunks are few and at most 64 KiB, and pg_restore makes the very
// same script of the archive (same TOC, same data), and restores it.
func TestCoalesceRealArchive(t *testing.T) {
	p, db := archiveDB(t)
	// A table whose rows make more than one joined chunk, and rows of
	// every width up to one longer than a joined chunk.
	p.Query(t, db, `CREATE TABLE wide AS SELECT g, repeat('x', g * 37) AS v FROM generate_series(1, 2000) g;
		INSERT INTO wide SELECT 0, repeat('y', 200000);`)
	data := pgDump(t, p, db, "--compress=0")
	out := coalesced(t, data)

	orig, err := format.WalkArchive(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	info, err := format.WalkArchive(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("walk of the coalesced archive: %v", err)
	}
	if fmt.Sprint(info.Tables()) != fmt.Sprint(orig.Tables()) || info.DataBlocks != orig.DataBlocks || len(info.Entries) != len(orig.Entries) {
		t.Fatalf("coalesced: %v %d blocks; original: %v %d blocks", info.Tables(), info.DataBlocks, orig.Tables(), orig.DataBlocks)
	}
	// Each block's data in as few chunks as 64 KiB allows: all full
	// but the last.
	before, after := chunkLengths(t, data, orig), chunkLengths(t, out, info)
	var nBefore, nAfter int
	for i := range before {
		var sumBefore, sumAfter int64
		for _, n := range before[i] {
			sumBefore += n
		}
		for j, n := range after[i] {
			sumAfter += n
			if n <= 0 || n > 64<<10 || n < 64<<10 && j < len(after[i])-1 {
				t.Fatalf("block %d: chunk %d of %d has %d bytes", i, j, len(after[i]), n)
			}
		}
		if sumBefore != sumAfter || len(after[i]) != int((sumBefore+64<<10-1)/(64<<10)) {
			t.Fatalf("block %d: %d bytes in %d chunks → %d bytes in %d chunks", i, sumBefore, len(before[i]), sumAfter, len(after[i]))
		}
		nBefore, nAfter = nBefore+len(before[i]), nAfter+len(after[i])
	}
	if nBefore < 7000 || len(data)-len(out) != (nBefore-nAfter)*5 {
		t.Fatalf("%d chunks → %d; archive %d → %d bytes", nBefore, nAfter, len(data), len(out))
	}
	if a, b := pgRestoreScript(t, data), pgRestoreScript(t, out); a != b {
		t.Fatal("pg_restore makes another script of the coalesced archive")
	}
	dst := p.NewDB(t, "bk_arch_joined")
	cmd := exec.Command("pg_restore", "--exit-on-error", "-h", p.Host, "-p", fmt.Sprint(p.Port), "-U", p.User, "-d", dst)
	cmd.Stdin = bytes.NewReader(out)
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_restore of the coalesced archive: %v: %s", err, o)
	}
	if a, b := p.TableChecksums(t, db), p.TableChecksums(t, dst); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("the coalesced archive restores other data")
	}

	// Compressed data blocks, and what is not an archive, pass unchanged.
	gz := pgDump(t, p, db)
	for _, in := range [][]byte{gz, []byte("-- PostgreSQL database dump\nSELECT 1;\n"), data[:3], nil} {
		if got := coalesced(t, in); !bytes.Equal(got, in) {
			t.Fatalf("%d bytes that are not an uncompressed archive came out as %d other bytes", len(in), len(got))
		}
	}
}

// TestCoalesceKeepsDamageVisible: whatever the walk refuses in an
// archive, it refuses in the archive coalesced (cuts anywhere, bytes
// changed anywhere, bytes appended), and what it accepts comes out with
// the same rows.
func TestCoalesceKeepsDamageVisible(t *testing.T) {
	p, db := archiveDB(t)
	data := pgDump(t, p, db, "--compress=0")
	same := func(what string, in []byte) {
		t.Helper()
		want, werr := format.WalkArchive(bytes.NewReader(in))
		got, gerr := format.WalkArchive(format.Coalesce(bytes.NewReader(in)))
		switch {
		case werr != nil && gerr == nil:
			t.Fatalf("%s: refused (%v), but accepted coalesced", what, werr)
		case werr == nil && gerr != nil:
			t.Fatalf("%s: accepted, but refused coalesced: %v", what, gerr)
		case werr != nil && (errors.Is(werr, format.ErrTruncated) != errors.Is(gerr, format.ErrTruncated)):
			t.Fatalf("%s: refused as %v, coalesced as %v", what, werr, gerr)
		case werr == nil && fmt.Sprint(want.Tables()) != fmt.Sprint(got.Tables()):
			t.Fatalf("%s: rows %v, coalesced %v", what, want.Tables(), got.Tables())
		}
	}
	for cut := 0; cut < len(data); cut += 1 + cut/50 {
		same(fmt.Sprintf("cut at %d of %d", cut, len(data)), data[:cut])
	}
	for at := 0; at < len(data); at += 1 + at/40 {
		for _, b := range []byte{0x00, 0x01, 0x80, 0xff} {
			bad := bytes.Clone(data)
			bad[at] = b
			same(fmt.Sprintf("byte %d set to %#x", at, b), bad)
		}
	}
	same("bytes appended", append(bytes.Clone(data), 1, 0, 0, 0, 0))

	// The source's own errors come through as they are: in the header,
	// the table of contents, the data, inside a row's chunk (two bytes
	// into the first table's first chunk) and inside the length of the
	// chunk after it.
	info, err := format.WalkArchive(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	// chunkLengths lists the blocks in the order of the entries, so the
	// first TABLE DATA entry with data is the first block.
	i := slices.IndexFunc(info.Entries, func(e format.ArchiveEntry) bool { return e.Desc == "TABLE DATA" && e.DataAt > 0 })
	blocks := chunkLengths(t, data, info)
	if i < 0 || len(blocks) == 0 || len(blocks[0]) == 0 || blocks[0][0] <= 2 {
		t.Fatal("no table data with a first chunk of more than two bytes in the archive")
	}
	first := int(blocks[0][0])
	start := int(info.Entries[i].DataAt) + 1 + 5 + 5 // type, dump id, chunk length
	inChunk, inLength := start+2, start+first+2
	boom := errors.New("authentication failed")
	for _, at := range []int{3, 2000, len(data) / 2, inChunk, inLength} {
		r := io.MultiReader(bytes.NewReader(data[:at]), &errOnce{err: boom})
		if _, err := io.ReadAll(format.Coalesce(r)); !errors.Is(err, boom) {
			t.Fatalf("source failing after %d bytes: %v", at, err)
		}
	}
}

// errOnce fails once, then ends: an error not passed on is lost.
type errOnce struct {
	err  error
	done bool
}

func (e *errOnce) Read([]byte) (int, error) {
	if e.done {
		return 0, io.EOF
	}
	e.done = true
	return 0, e.err
}

var restrictKey = regexp.MustCompile(`(?m)^\\(un)?restrict \S+`)

func FuzzCoalesce(f *testing.F) {
	f.Add([]byte("PGDMP\x01\x0e\x00\x04\x08\x01"))
	f.Add([]byte("PGDMP\x01\x10\x00\x04\x08\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		want, werr := format.WalkArchive(bytes.NewReader(data))
		got, gerr := format.WalkArchive(format.Coalesce(bytes.NewReader(data)))
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("walk: %v; coalesced: %v", werr, gerr)
		}
		if werr == nil && fmt.Sprint(want.Tables()) != fmt.Sprint(got.Tables()) {
			t.Fatalf("rows %v, coalesced %v", want.Tables(), got.Tables())
		}
	})
}
