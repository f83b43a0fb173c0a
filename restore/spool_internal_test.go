package restore

import (
	"os"
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
