// Package procmem reads a process's own peak and current resident memory
// (VmHWM and VmRSS in /proc/PID/status), for the benchmark and the
// memory tests. The ru_maxrss that wait4 reports cannot serve: Linux
// records the high-water mark of the address space a process replaces
// at exec, and a child started by Go (vfork) replaces its parent's, so a
// child of a large process (a test binary, more so under the race
// detector) reports at least its parent's peak (/bin/true run by a
// process holding 300 MiB: 302 MiB).
package procmem

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// HWM is pid's peak resident memory so far, in KiB (0 when /proc does
// not say: another OS, or the process is gone).
func HWM(pid int) int64 { return status(pid, "VmHWM:") }

// RSS is pid's resident memory now, in KiB (0 when /proc does not say).
func RSS(pid int) int64 { return status(pid, "VmRSS:") }

// status reads one "Name:  N kB" field of /proc/PID/status.
func status(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// Watch polls pid's HWM every interval until stop is called; stop
// returns the highest value seen, in KiB. A peak is a high-water mark, so
// any poll after it sees it: only growth in the process's last interval
// can be missed.
func Watch(pid int, every time.Duration) (stop func() int64) {
	var peak int64 // written by the poller only, read once it has ended
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		for {
			peak = max(peak, HWM(pid))
			select {
			case <-done:
				return
			case <-time.After(every):
			}
		}
	}()
	return func() int64 {
		close(done)
		<-ended
		return peak
	}
}
