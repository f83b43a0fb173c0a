package populate

import (
	"bytes"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/backupkit/backupkit/internal/testenv"
)

// cannot: Slice reported it did nothing. Kernels before 5.14 cannot
// populate (callers then fault pages in as they write); CI's can.
func cannot(t *testing.T) {
	t.Helper()
	testenv.Missing(t, "this kernel cannot populate memory (MADV_POPULATE_WRITE needs Linux 5.14)")
}

// resident reports, page by page, whether b's pages are mapped.
func resident(t *testing.T, b []byte) []bool {
	t.Helper()
	vec := make([]byte, (len(b)+os.Getpagesize()-1)/os.Getpagesize())
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		t.Fatal("mincore:", errno)
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 == 1
	}
	return out
}

// fresh is anonymous memory nothing has touched: no page is mapped yet.
func fresh(t *testing.T, pages int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, pages*os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	for i, r := range resident(t, b) {
		if r {
			t.Fatalf("page %d of fresh memory is mapped before anything touched it", i)
		}
	}
	return b
}

func TestSliceMapsEveryPage(t *testing.T) {
	b := fresh(t, 64)
	if !Slice(b) {
		cannot(t)
	}
	for i, r := range resident(t, b) {
		if !r {
			t.Fatalf("page %d of 64 not mapped after Slice", i)
		}
	}
	if !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatal("populated memory is not zero")
	}
}

// TestSliceKeepsContents: populating memory already written changes
// nothing in it.
func TestSliceKeepsContents(t *testing.T) {
	b := fresh(t, 8)
	page := os.Getpagesize()
	copy(b[page*3:], "written before")
	if !Slice(b) {
		cannot(t)
	}
	if got := string(b[page*3 : page*3+14]); got != "written before" {
		t.Fatalf("page 3 holds %q after Slice", got)
	}
}

// TestSliceOnlyWholePagesOfTheSlice: a slice that starts and ends inside
// pages maps the pages it wholly covers, and none beyond its capacity.
func TestSliceOnlyWholePagesOfTheSlice(t *testing.T) {
	b := fresh(t, 8)
	page := os.Getpagesize()
	type row struct{ a, b int64 } // 16 bytes: capacity counts in elements
	rows := unsafeRows[row](b[page+100 : page+100+16*(3*page/16)])
	if !Slice(rows[:0]) { // length 0: the capacity is what counts
		cannot(t)
	}
	got := resident(t, b)
	want := []bool{false, false, true, true, false, false, false, false}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pages mapped %v, want %v (pages 2 and 3 are the only whole ones in the slice)", got, want)
		}
	}
}

func TestSliceEmpty(t *testing.T) {
	if Slice([]int(nil)) || Slice(make([]byte, 10)) {
		t.Fatal("Slice reported populating less than a page")
	}
}

// unsafeRows views b as a slice of T with length 0 and as many elements
// as fit: a typed slice whose memory the test controls.
func unsafeRows[T any](b []byte) []T {
	var zero T
	n := len(b) / int(unsafe.Sizeof(zero))
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n)[:0]
}
