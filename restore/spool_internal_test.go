package restore

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A spool that cannot be written is given up (one job: the restore reads
// the backup again) or fails the restore (--jobs), never left half full
// to be restored from.
func TestSpoolOnAFullDisk(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full here")
	}
	defer full.Close()
	w := &spoolWriter{f: full}
	w.written, w.checked = 1, 1 // no free-space check due: the write itself fails
	if n, err := w.Write(make([]byte, 4096)); n != 4096 || err != nil {
		t.Fatalf("optional spool: %d, %v; want the write absorbed", n, err)
	}
	if w.file() != nil {
		t.Fatal("a spool that failed a write is still offered for the restore")
	}
	req := &spoolWriter{f: full, required: true}
	if _, err := req.Write(make([]byte, 4096)); err == nil {
		t.Fatal("a required spool (--jobs) that cannot be written did not fail")
	}
}

// Once every data job has ended, a spool sealed whole is cut back to its
// table of contents (the post-data runs read nothing else); one sealed
// with an error, or not sealed yet, keeps its bytes.
func TestSpoolDropsData(t *testing.T) {
	spool := func() *spoolWriter {
		f, err := os.Create(filepath.Join(t.TempDir(), "spool"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		w := &spoolWriter{f: f, required: true}
		if _, err := w.Write(make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
		w.tocEnd, w.tocKnown = 4096, true
		return w
	}
	size := func(w *spoolWriter) int64 {
		if w.dropped != nil {
			<-w.dropped
		}
		st, err := w.f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	before := spool() // the jobs end before the check pass seals the spool
	before.dropData()
	if got := size(before); got != 1<<20 {
		t.Fatalf("spool cut to %d bytes before the check pass sealed it", got)
	}
	before.seal(nil)
	if got := size(before); got != 4096 {
		t.Fatalf("spool sealed whole after the jobs ended: %d bytes, want its table of contents (4096)", got)
	}
	after := spool() // sealed first
	after.seal(nil)
	if got := size(after); got != 1<<20 {
		t.Fatalf("spool cut to %d bytes while jobs may still read it", got)
	}
	after.dropData()
	if got := size(after); got != 4096 {
		t.Fatalf("spool sealed whole, jobs ended: %d bytes, want 4096", got)
	}
	failed := spool()
	failed.dropData()
	failed.seal(errors.New("chunk 3 failed authentication"))
	if got := size(failed); got != 1<<20 {
		t.Fatalf("spool of a failed check cut to %d bytes", got)
	}
}
