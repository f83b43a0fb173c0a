package format

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKDFFaultsItsMemoryInOnce: the KDF's memory is faulted in one pass
// before Argon2id's lanes write it (prefault). Faulted in by the lanes at
// once it costs about two faults a page (and three times the CPU).
// Counted in page faults, not timed, in a new process as a restore or a
// backup derives its key: in one whose heap earlier tests have cut up,
// the KDF's allocation may land beside the pages prefault mapped.
func TestKDFFaultsItsMemoryInOnce(t *testing.T) {
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
