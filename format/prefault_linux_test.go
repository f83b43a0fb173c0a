package format

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/backupkit/backupkit/internal/procmem"
)

// TestKDFFaultsItsMemoryInOnce: the KDF's memory is faulted in one pass
// before Argon2id's lanes read and write it (prefault). Faulted in by the
// lanes, a page faults twice (read, then written) and the second fault
// flushes it from every CPU's TLB. Counted in page faults, not timed, in
// a new process as a restore or a backup derives its key (a test
// binary's heap is cut up by the tests before).
func TestKDFFaultsItsMemoryInOnce(t *testing.T) {
	skipUnderRace(t)
	if os.Getenv("BACKUPKIT_KDF_FAULTS_CHILD") != "" {
		var before, after syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		if _, err := passwordKey(fmt.Sprint("faults ", time.Now().UnixNano()), make([]byte, 16), defaultKDF); err != nil {
			t.Fatal(err)
		}
		syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		fmt.Printf("faults=%d\n", after.Minflt-before.Minflt)
		return
	}
	k := defaultKDF
	pages := int64(1) << (k.a + 10) / int64(os.Getpagesize())
	cmd := exec.Command(os.Args[0], "-test.run=^TestKDFFaultsItsMemoryInOnce$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BACKUPKIT_KDF_FAULTS_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	_, rest, ok := strings.Cut(string(out), "faults=")
	if !ok {
		t.Fatalf("child printed no count:\n%s", out)
	}
	faults, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d page faults deriving a key with %d pages of memory", faults, pages)
	if faults > pages*3/2 {
		t.Fatalf("%d page faults for %d pages of KDF memory: the lanes faulted it in (want at most %d)", faults, pages, pages*3/2)
	}
}

// TestPrefaultLeavesNoPagesBehind: when Argon2id's allocation does not
// take the prefaulted pages after all, they are returned before it maps
// fresh ones, so the process never holds both. Built in a new process:
// a fence right above the prefaulted range, half of it taken, then a
// KDF-sized allocation that can only go elsewhere. Without prefault's
// memory limit the free half stays resident beside it.
func TestPrefaultLeavesNoPagesBehind(t *testing.T) {
	skipUnderRace(t)
	const n = 64 << 20
	if os.Getenv("BACKUPKIT_PREFAULT_CHILD") != "" {
		var region uintptr
		var fence []byte
		prefaultHook = func(b []byte) {
			region = uintptr(unsafe.Pointer(&b[0]))
			fence = make([]byte, 1<<20) // the heap's top: right above b
		}
		defer func() { prefaultHook = nil }()
		debug.FreeOSMemory()
		before := procmem.RSS(os.Getpid()) << 10
		done := prefault(n)
		half := make([]byte, n/2) // the lowest free range that fits: b's
		kdf := make([]byte, n)    // does not fit below the fence
		for i := 0; i < n; i += os.Getpagesize() {
			kdf[i] = 1
		}
		grew := procmem.RSS(os.Getpid())<<10 - before
		done()
		in := func(p []byte) bool {
			a := uintptr(unsafe.Pointer(&p[0]))
			return a >= region && a < region+n
		}
		// What matters is that the KDF-sized allocation took fresh pages
		// while the prefaulted ones were free (the fence and the half are
		// how; the heap may put a small span beside either).
		fmt.Printf("built=%v grew=%d\n", !in(kdf), grew)
		runtime.KeepAlive(half)
		runtime.KeepAlive(fence)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPrefaultLeavesNoPagesBehind$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BACKUPKIT_PREFAULT_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var built bool
	var grew int64
	_, result, _ := strings.Cut(string(out), "built=")
	if _, err := fmt.Sscanf(result, "%t grew=%d", &built, &grew); err != nil {
		t.Fatalf("child printed no result (%v):\n%s", err, out)
	}
	if !built {
		t.Fatalf("the KDF-sized allocation took the prefaulted pages, so nothing was tested (Go's allocator changed?):\n%s", out)
	}
	// Resident after: half of the prefaulted pages (taken) and the KDF's
	// own; the other half returned. Both kept: 2n.
	t.Logf("resident memory grew by %d MiB for %d MiB taken", grew>>20, (n+n/2)>>20)
	if limit := int64(n+n/2) + 16<<20; grew > limit {
		t.Fatalf("resident memory grew by %d MiB (want at most %d): the prefaulted pages stayed beside the KDF's", grew>>20, limit>>20)
	}
}

func skipUnderRace(t *testing.T) {
	if raceDetector {
		t.Skip("measures page faults and resident memory, which the race detector's shadow memory swamps (make test runs it)")
	}
}
