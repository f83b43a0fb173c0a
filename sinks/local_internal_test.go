package sinks

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLocalDurabilityOrder observes the durability steps of a write: the
// data is fsynced before the rename makes it visible, and the folder is
// fsynced after it (and a new folder's parent when one is created).
func TestLocalDurabilityOrder(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	l := NewLocal("local", root)
	var steps []string
	l.ops = fileOps{
		syncFile: func(f *os.File) error {
			steps = append(steps, "fsync file "+filepath.Base(f.Name()))
			return realOps.syncFile(f)
		},
		rename: func(from, to string) error {
			steps = append(steps, "rename to "+filepath.Base(to))
			return realOps.rename(from, to)
		},
		syncDir: func(dir string) error {
			rel, _ := filepath.Rel(filepath.Dir(root), dir)
			steps = append(steps, "fsync folder "+rel)
			return realOps.syncDir(dir)
		},
	}
	if _, err := l.Put(context.Background(), "app/x.dump", strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(steps, "\n")
	tmp := strings.TrimPrefix(strings.Split(steps[len(steps)-3], " ")[2], "")
	want := strings.Join([]string{
		"fsync folder .", // store/ created: its parent
		"fsync folder store",
		"fsync file " + tmp,
		"rename to x.dump",
		"fsync folder store/app",
	}, "\n")
	if !isTemp(tmp) || got != want {
		t.Fatalf("durability steps:\n%s\nwant:\n%s", got, want)
	}
	// A second write into the existing folder: no folder is created.
	steps = nil
	if _, err := l.Put(context.Background(), "app/y.dump", strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	if len(steps) != 3 || !strings.HasPrefix(steps[0], "fsync file .y.dump.tmp-") || steps[2] != "fsync folder store/app" {
		t.Fatalf("second write: %v", steps)
	}
}

func TestOnlyOwnTempNamesAreLeftovers(t *testing.T) {
	for name, want := range map[string]bool{
		".20261125_020000.000000000Z.dump.gz.tmp-0123456789ab": true,
		".x.sha256.tmp-abcdefabcdef":                           true,
		".important.tmp-keepme":                                false,
		".x.tmp-0123456789AB":                                  false,
		"x.tmp-0123456789ab":                                   false,
		".x.tmp-0123456789abc":                                 false,
	} {
		if isTemp(name) != want {
			t.Errorf("isTemp(%q) = %v, want %v", name, !want, want)
		}
	}
}
