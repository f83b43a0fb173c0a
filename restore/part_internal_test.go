package restore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
)

// spoolAsChecked writes archive to a spool the way the check pass does
// (in small pieces, each written before the walk sees it; with lag, all
// of it before the walk starts) while parts read it, and returns what
// each part read. With splice, each part is moved into a pipe as a job's
// input is (and must not fall back to reading), and read from it.
func spoolAsChecked(t *testing.T, archive []byte, wants []map[int]bool, lag, splice bool, sealErr error) ([][]byte, []error, *format.ArchiveInfo) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &spoolWriter{f: f, required: true}
	type got struct {
		b   []byte
		err error
	}
	outs := make([]chan got, len(wants))
	for i, want := range wants {
		outs[i] = make(chan got, 1)
		r := w.part(want).(*part)
		go func() {
			if !splice {
				b, err := io.ReadAll(r)
				outs[i] <- got{b, err}
				return
			}
			b, err := spliceAll(r)
			if err == nil && r.spliced != int64(len(b)) {
				err = fmt.Errorf("%d of %d bytes spliced: the rest was read and written", r.spliced, len(b))
			}
			outs[i] <- got{b, err}
		}()
	}
	pr, pw := io.Pipe()
	walked := make(chan *format.ArchiveInfo, 1)
	go func() {
		info, err := format.WalkArchiveWith(pr, w.hooks())
		if err != nil {
			t.Error(err)
		}
		io.Copy(io.Discard, pr)
		walked <- info
	}()
	write := func(b []byte) {
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if lag {
		// All is written before the walk starts: a part must not take
		// written bytes the walk has not placed yet.
		for rest := archive; len(rest) > 0; rest = rest[min(len(rest), 1000):] {
			write(rest[:min(len(rest), 1000)])
		}
	}
	for rest := archive; len(rest) > 0; rest = rest[min(len(rest), 1000):] {
		if !lag {
			write(rest[:min(len(rest), 1000)])
		}
		pw.Write(rest[:min(len(rest), 1000)])
	}
	pw.Close()
	info := <-walked
	w.seal(sealErr)
	var bs [][]byte
	var errs []error
	for _, o := range outs {
		g := <-o
		bs, errs = append(bs, g.b), append(errs, g.err)
	}
	return bs, errs, info
}

// spliceAll moves a part into a pipe with SpliceTo and returns what came
// out of the pipe.
func spliceAll(r *part) ([]byte, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(pr)
		pr.Close()
		out <- b
	}()
	rc, err := pw.SyscallConn()
	if err == nil {
		_, err = r.SpliceTo(rc)
	}
	pw.Close()
	return <-out, err
}

// rawArchive is pg_dump's uncompressed custom archive of db, as walked,
// and its tables' dump ids by name.
func rawArchive(t *testing.T, p testenv.PG, db string) ([]byte, *format.ArchiveInfo, map[string]int) {
	t.Helper()
	cmd := osexec.Command("pg_dump", "-Fc", "-Z0", "-h", p.Host, "-p", fmt.Sprint(p.Port), "-U", p.User, db)
	archive, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	info, err := format.WalkArchive(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, e := range info.Entries {
		if e.Desc == "TABLE DATA" {
			ids[e.Tag] = e.DumpID
		}
	}
	return archive, info, ids
}

// A part holds the header and table of contents, then exactly the
// blocks of its entries in stream order, and pg_restore restores those
// tables from it as from a stream.
func TestSpoolParts(t *testing.T) {
	p := testenv.Postgres(t)
	db := p.NewDB(t, "bk_parts")
	p.Query(t, db, `CREATE TABLE a AS SELECT g, md5(g::text) AS m FROM generate_series(1, 20000) g;
CREATE TABLE b AS SELECT g, repeat('b', 50) AS x FROM generate_series(1, 30000) g;
CREATE TABLE c AS SELECT g FROM generate_series(1, 5) g;
CREATE SEQUENCE s; SELECT setval('s', 42);`)
	archive, info, ids := rawArchive(t, p, db)
	var starts []int64 // of every block, in stream order
	for _, e := range info.Entries {
		if e.DataAt > 0 {
			starts = append(starts, e.DataAt)
		}
	}
	blockOf := func(id int) []byte {
		for _, e := range info.Entries {
			if e.DumpID == id {
				end := int64(len(archive))
				for _, s := range starts {
					if s > e.DataAt && s < end {
						end = s
					}
				}
				return archive[e.DataAt:end]
			}
		}
		t.Fatalf("no entry %d", id)
		return nil
	}
	tocEnd := slices.Min(starts)
	wants := []map[int]bool{
		{ids["a"]: true, ids["c"]: true},
		{ids["b"]: true},
		{}, // the table of contents only
	}
	parts, errs, _ := spoolAsChecked(t, archive, wants, false, false, nil)
	lagged, lerrs, _ := spoolAsChecked(t, archive, wants, true, false, nil)
	spliced, serrs, _ := spoolAsChecked(t, archive, wants, false, runtime.GOOS == "linux", nil)
	for i, want := range wants {
		if lerrs[i] != nil || !bytes.Equal(lagged[i], parts[i]) {
			t.Fatalf("part %d with the walk behind the spool: %d bytes (%v), without: %d", i, len(lagged[i]), lerrs[i], len(parts[i]))
		}
		if serrs[i] != nil || !bytes.Equal(spliced[i], parts[i]) {
			t.Fatalf("part %d spliced into a pipe: %d bytes (%v), read: %d", i, len(spliced[i]), serrs[i], len(parts[i]))
		}
		if errs[i] != nil {
			t.Fatalf("part %d: %v", i, errs[i])
		}
		exp := bytes.Clone(archive[:tocEnd])
		for _, e := range info.Entries { // stream order of the blocks is the entries' order here
			if want[e.DumpID] {
				exp = append(exp, blockOf(e.DumpID)...)
			}
		}
		if !bytes.Equal(parts[i], exp) {
			t.Fatalf("part %d: %d bytes, want %d (header and its blocks)", i, len(parts[i]), len(exp))
		}
	}
	// pg_restore reads a part as a stream and finds its tables' data.
	for i, tables := range [][]string{{"a", "c"}, {"b"}} {
		var list strings.Builder
		for _, tb := range tables {
			fmt.Fprintf(&list, "%d; 0 0 TABLE DATA public %s %s\n", ids[tb], tb, p.User)
		}
		lf := filepath.Join(t.TempDir(), "list")
		os.WriteFile(lf, []byte(list.String()), 0o600)
		cmd := osexec.Command("pg_restore", "--use-list", lf, "-f", "-")
		cmd.Stdin = bytes.NewReader(parts[i])
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pg_restore of part %d: %v: %s", i, err, out)
		}
		for _, tb := range tables {
			if !strings.Contains(string(out), "COPY public."+tb+" ") {
				t.Fatalf("part %d: no COPY of %s in pg_restore's output", i, tb)
			}
		}
		if strings.Count(string(out), "COPY public.") != len(tables) {
			t.Fatalf("part %d: pg_restore restored other tables too:\n%s", i, out)
		}
	}
	// A check pass that fails ends every part with its error.
	bad := errors.New("chunk 7 failed authentication")
	for _, splice := range []bool{false, true} {
		_, errs, _ = spoolAsChecked(t, archive, wants, false, splice, bad)
		for i, err := range errs {
			if !errors.Is(err, bad) {
				t.Fatalf("part %d after a failed check (splice %v): %v, want the check's error", i, splice, err)
			}
		}
	}
}

// A streamed spool frees each data block's pages once its part has read
// them, and only those: the other parts' blocks and the table of
// contents, read later, are whole.
func TestStreamedSpoolFreesReadBlocks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("hole punching is Linux's")
	}
	p := testenv.Postgres(t)
	db := p.NewDB(t, "bk_release")
	// a and c are far larger than releaseEvery+releaseLag; b sits
	// between them in the stream.
	p.Query(t, db, `CREATE TABLE a AS SELECT g, md5(g::text) || md5((g+1)::text) AS m FROM generate_series(1, 400000) g;
CREATE TABLE b AS SELECT g FROM generate_series(1, 3) g;
CREATE TABLE c AS SELECT g, md5(g::text) || md5((g+2)::text) AS m FROM generate_series(1, 400000) g;`)
	archive, info, ids := rawArchive(t, p, db)
	f, err := os.Create(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &spoolWriter{f: f, required: true, streamed: true}
	wants := []map[int]bool{{ids["a"]: true, ids["c"]: true}, {ids["b"]: true}, {}}
	var parts []*part
	for _, want := range wants {
		parts = append(parts, w.part(want).(*part))
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := format.WalkArchiveWith(pr, w.hooks())
		pr.CloseWithError(err)
	}()
	for rest := archive; len(rest) > 0; rest = rest[min(len(rest), 64<<10):] {
		piece := rest[:min(len(rest), 64<<10)]
		if _, err := w.Write(piece); err != nil {
			t.Fatal(err)
		}
		if _, err := pw.Write(piece); err != nil {
			t.Fatal(err)
		}
	}
	pw.Close()
	w.seal(nil)
	// The big tables' part first, spliced into a pipe as a job's input
	// is: every page it frees must be one nobody reads again.
	var got [][]byte
	for i, r := range parts {
		var b []byte
		var err error
		if i == 0 {
			b, err = spliceAll(r)
		} else {
			b, err = io.ReadAll(r)
		}
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		got = append(got, b)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	size := int64(len(archive))
	if parts[0].released < size/2 {
		t.Fatalf("part 0 freed %d of the spool's %d bytes, want most of its tables' blocks", parts[0].released, size)
	}
	if allocated := st.Blocks * 512; allocated > size-parts[0].released+64<<10 {
		t.Fatalf("spool holds %d bytes on disk after %d were freed of %d", allocated, parts[0].released, size)
	}
	if parts[1].released != 0 || parts[2].released != 0 {
		t.Fatalf("parts of small blocks and of the table of contents freed %d and %d bytes", parts[1].released, parts[2].released)
	}
	// What each part read is the archive's, byte for byte.
	var starts []int64
	for _, e := range info.Entries {
		if e.DataAt > 0 {
			starts = append(starts, e.DataAt)
		}
	}
	slices.Sort(starts)
	for i, want := range wants {
		exp := bytes.Clone(archive[:starts[0]])
		for k, s := range starts {
			end := size
			if k+1 < len(starts) {
				end = starts[k+1]
			}
			for _, e := range info.Entries {
				if e.DataAt == s && want[e.DumpID] {
					exp = append(exp, archive[s:end]...)
				}
			}
		}
		if !bytes.Equal(got[i], exp) {
			t.Fatalf("part %d: %d bytes that differ from the archive's %d", i, len(got[i]), len(exp))
		}
	}
}
