package format

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestKDFFaultsItsMemoryInOnce: the KDF's memory is faulted in one pass
// before Argon2id's lanes write it (prefault). Faulted in by the lanes at
// once it costs about two faults a page (and three times the CPU).
// Counted in page faults, not timed.
func TestKDFFaultsItsMemoryInOnce(t *testing.T) {
	k := defaultKDF
	pages := int64(1) << (k.a + 10) / int64(os.Getpagesize())
	password := fmt.Sprint("faults ", time.Now().UnixNano())
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	if _, err := passwordKey(password, make([]byte, 16), k); err != nil {
		t.Fatal(err)
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	faults := after.Minflt - before.Minflt
	t.Logf("%d page faults deriving a key with %d pages of memory", faults, pages)
	if faults > pages*3/2 {
		t.Fatalf("%d page faults for %d pages of KDF memory: the lanes faulted it in (want at most %d)", faults, pages, pages*3/2)
	}
}
