package restore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Spool files are named backupkit-restore-<pid>-<random>.dump, so a
// later restore can tell a dead process's spool from a running one's.
const spoolPrefix = "backupkit-restore-"

// newSpool creates a 0600 spool file in dir (created 0700; "" = the
// system temp folder), after removing spools of processes that are gone.
func newSpool(dir string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--temp-dir %s: %w", dir, err)
	}
	SweepSpools(dir)
	f, err := os.CreateTemp(dir, spoolPrefix+strconv.Itoa(os.Getpid())+"-*.dump")
	if err != nil {
		return nil, fmt.Errorf("spool for --jobs in %s: %w", dir, err)
	}
	return f, nil
}

// SweepSpools removes spool files in dir whose process no longer runs
// (what a killed restore left behind). It returns the files removed.
func SweepSpools(dir string) []string {
	matches, _ := filepath.Glob(filepath.Join(dir, spoolPrefix+"*.dump"))
	var removed []string
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), spoolPrefix)
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			if os.Remove(m) == nil {
				removed = append(removed, m)
			}
		}
	}
	return removed
}
