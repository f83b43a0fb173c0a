package format

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"

	"github.com/backupkit/backupkit/internal/populate"
)

// prefault maps n bytes of heap and frees them, still mapped, for
// Argon2id's allocation to take; done ends what it set up. It maps them
// in one system call (populate), or a page at a time where the kernel
// cannot: on the sixth benchmark machine the derivation then took
// 218-248 ms in a new process against 320-333 ms touching each page.
//
// Why: Argon2id (version 1.3) reads each block before it writes it, so
// on fresh memory every page faults twice, first mapping the shared
// zero page, then replacing it, which flushes the page from the TLB of
// every CPU the process runs on, an interrupt to each (a VM exit under
// virtualisation). On the 2-core benchmark machine the key derivation
// (64 MiB) took 214-221 ms in a new process, 0.28 s of CPU in the kernel,
// and 108-120 ms, 0.03 s, after this pass.
//
// The heap gives a large allocation the lowest free range that fits,
// which after the collection below is usually these pages, but not
// always: without the limit below, backup --parallel 3 with three
// passwords held both, 151 MiB, in 2 of 30 runs under load. So until
// done, the process runs under a memory limit just above what it has
// mapped: a runtime about to map fresh pages beyond it first returns
// free ones to the OS, these, and the peak stays one KDF's memory
// either way (TestPrefaultLeavesNoPagesBehind; the three-passwords backup
// peaked at 91-92 MiB in 30 of 30 runs with it). A lower limit the user
// set (GOMEMLIMIT) is kept.
func prefault(n int) (done func()) {
	b := make([]byte, n)
	if prefaultHook != nil {
		prefaultHook(b)
	}
	if !populate.Slice(b) { // one system call rather than a fault a page
		for i := 0; i < n; i += os.Getpagesize() {
			b[i] = 1
		}
	}
	runtime.KeepAlive(b)
	runtime.GC() // b is garbage: its pages go back to the heap, mapped
	limit := readyBytes() + prefaultSlack
	old := debug.SetMemoryLimit(-1) // -1 reads it
	if old <= limit {
		return func() {}
	}
	debug.SetMemoryLimit(limit)
	return func() { debug.SetMemoryLimit(old) }
}

// prefaultSlack is the memory limit's margin over what is mapped, for
// what other goroutines allocate meanwhile: the peak is at most this
// much above one KDF's memory.
const prefaultSlack = 4 << 20

// prefaultHook, when set (tests), sees the prefault's buffer before it
// is faulted in and freed.
var prefaultHook func(b []byte)

// readyBytes is the memory the Go runtime has mapped and not returned to
// the OS: what a memory limit is measured against.
func readyBytes() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
}
