package format_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
)

// pgDump runs the real pg_dump -Fc on db with extra flags.
func pgDump(t *testing.T, p testenv.PG, db string, flags ...string) []byte {
	t.Helper()
	cmd := exec.Command("pg_dump", append([]string{"-Fc", "-h", p.Host, "-p", fmt.Sprint(p.Port), "-U", p.User, "-d", db}, flags...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	return out
}

func archiveDB(t *testing.T) (testenv.PG, string) {
	p := testenv.Postgres(t)
	db := p.NewDB(t, "bk_arch")
	p.Query(t, db, `CREATE TABLE t (a int, b text); INSERT INTO t SELECT g, 'line ' || g || E'\nwith a newline' FROM generate_series(1, 5000) g;
		CREATE TABLE empty (a int); CREATE SCHEMA s; CREATE TABLE s.u AS SELECT g FROM generate_series(1, 777) g;
		CREATE TABLE "odd \. name" AS SELECT E'\\.' AS v FROM generate_series(1, 3);
		SELECT lo_from_bytea(0, decode(repeat('ab', 100000), 'hex'));`)
	return p, db
}

func TestWalkRealArchives(t *testing.T) {
	p, db := archiveDB(t)
	want := map[string]int64{"public.t": 5000, "public.empty": 0, "s.u": 777, `public.odd \. name`: 3}
	for _, flags := range [][]string{{"--compress=0"}, {}} {
		data := pgDump(t, p, db, flags...)
		info, err := format.WalkArchive(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%v: %v", flags, err)
		}
		if got := info.Tables(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%v: rows %v, want %v", flags, got, want)
		}
		if info.Database != db || info.DataBlocks != 5 || !strings.HasPrefix(info.ServerVersion, "1") {
			t.Fatalf("%v: %+v", flags, info)
		}
		// Block sizes: the blocks tile the stream from the first one to
		// the end, and a table's size is its block's.
		first, sum := int64(len(data)), int64(0)
		for _, e := range info.Entries {
			if e.DataAt > 0 {
				first, sum = min(first, e.DataAt), sum+e.Bytes
				if e.Bytes <= 0 || e.DataAt+e.Bytes > int64(len(data)) {
					t.Fatalf("%v: entry %d: block at %d of %d bytes in %d", flags, e.DumpID, e.DataAt, e.Bytes, len(data))
				}
			}
		}
		sizes := info.TableBytes()
		if sum != int64(len(data))-first || len(sizes) != len(want) || sizes["public.t"] <= sizes["s.u"] || sizes["public.empty"] <= 0 {
			t.Fatalf("%v: blocks cover %d of the %d bytes after %d; table sizes %v", flags, sum, int64(len(data))-first, first, sizes)
		}
		// Every cut is noticed, and so is anything appended.
		for _, cut := range []int{0, 5, 11, 100, len(data) / 3, len(data) / 2, len(data) - 100, len(data) - 1} {
			_, err := format.WalkArchive(bytes.NewReader(data[:cut]))
			if !errors.Is(err, format.ErrTruncated) && !errors.Is(err, format.ErrArchive) {
				t.Fatalf("%v: cut at %d of %d: %v", flags, cut, len(data), err)
			}
		}
		if _, err := format.WalkArchive(bytes.NewReader(append(bytes.Clone(data), 9, 9, 9))); err == nil {
			t.Fatalf("%v: bytes after the last block were accepted", flags)
		}
	}
}

// TestPatchedOffsetsRestoreInParallel: a streamed archive has no data
// offsets; once patched, pg_restore --list reads the same TOC and
// pg_restore -j 4 restores it.
func TestPatchedOffsetsRestoreInParallel(t *testing.T) {
	p, db := archiveDB(t)
	data := pgDump(t, p, db, "--compress=0")
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.dump")
	os.WriteFile(orig, data, 0o600)
	f, err := os.Create(filepath.Join(dir, "patched.dump"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	info, err := format.WalkArchive(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := format.PatchOffsets(f, info); err != nil {
		t.Fatal(err)
	}
	f.Close()
	list := func(file string) string {
		out, err := exec.Command("pg_restore", "--list", file).Output()
		if err != nil {
			t.Fatalf("pg_restore --list %s: %v", file, err)
		}
		var keep []string
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(l, ";") { // header comments name the file
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	if a, b := list(orig), list(f.Name()); a != b || !strings.Contains(a, "TABLE DATA public t") {
		t.Fatalf("TOC differs after patching:\n%s\n---\n%s", a, b)
	}
	patched, _ := os.ReadFile(f.Name())
	if bytes.Equal(patched, data) {
		t.Fatal("nothing was patched")
	}
	dst := p.NewDB(t, "bk_arch_j")
	cmd := exec.Command("pg_restore", "-j", "4", "--exit-on-error", "-h", p.Host, "-p", fmt.Sprint(p.Port), "-U", p.User, "-d", dst, f.Name())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_restore -j 4 of the patched archive: %v: %s", err, out)
	}
	if a, b := p.TableChecksums(t, db), p.TableChecksums(t, dst); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("parallel restore of the patched archive differs")
	}
}

func FuzzWalkArchive(f *testing.F) {
	f.Add([]byte("PGDMP\x01\x0e\x00\x04\x08\x01"))
	f.Add([]byte("PGDMP\x01\x10\x00\x04\x08\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		format.WalkArchive(bytes.NewReader(data))
	})
}
