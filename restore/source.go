package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

// Storages are where a database's backups are: its storages in config
// order, by name.
type Storages struct {
	Database string
	Names    []string
	Sinks    map[string]sinks.Sink
}

// Source is a resolved backup: where it is and how to pin it.
type Source struct {
	Desc    string // a path, or storage:key
	Storage string // "" for a file outside any storage
	Key     string
	Name    format.Name // zero when the file name is not a backup name
	sink    sinks.Sink
}

// ErrNoBackup means "latest" found nothing to restore.
var ErrNoBackup = errors.New("no backup found")

// ErrBadSource means --from names nothing BackupKit can read.
var ErrBadSource = errors.New("not a backup source")

// Resolve turns what the user asked for into a Source: "latest" (the
// newest usable backup of the database in any of its storages), a
// STORAGE:KEY of one of its storages, or a file path.
func Resolve(ctx context.Context, st Storages, from string, now time.Time) (Source, error) {
	if from == "latest" {
		return latest(ctx, st, now)
	}
	if name, key, ok := strings.Cut(from, ":"); ok {
		if s := st.Sinks[name]; s != nil {
			n, _ := format.ParseKey(key)
			return Source{Desc: from, Storage: name, Key: key, Name: n, sink: s}, nil
		}
	}
	fi, err := os.Stat(from)
	if err != nil || fi.IsDir() {
		return Source{}, fmt.Errorf("%w: %s is not a file, a STORAGE:KEY of %s's storages (%s), or \"latest\"",
			ErrBadSource, from, st.Database, strings.Join(st.Names, ", "))
	}
	dir, base := filepath.Split(from)
	if dir == "" {
		dir = "."
	}
	n, _ := format.ParseKey(filepath.Base(filepath.Clean(dir)) + "/" + base)
	return Source{Desc: from, Key: base, Name: n, sink: sinks.NewLocal("file", dir)}, nil
}

// latest is the newest usable backup across the storages: in each
// storage the newest not dated in the future, then the newest of those.
func latest(ctx context.Context, st Storages, now time.Time) (Source, error) {
	var best Source
	var errs []error
	for _, name := range st.Names {
		bs, err := repo.List(ctx, st.Sinks[name], st.Database)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if b, ok := repo.Newest(bs, now); ok && (best.sink == nil || b.Time.After(best.Name.Time)) {
			best = Source{Desc: name + ":" + b.Key, Storage: name, Key: b.Key, Name: b.Name, sink: st.Sinks[name]}
		}
	}
	if best.sink == nil {
		if len(errs) > 0 {
			return Source{}, fmt.Errorf("%w for %s: %w", ErrNoBackup, st.Database, errors.Join(errs...))
		}
		return Source{}, fmt.Errorf("%w for %s in %s", ErrNoBackup, st.Database, strings.Join(st.Names, ", "))
	}
	return best, nil
}

// pin fixes the source's bytes for the check pass and the restore.
func (s Source) pin(ctx context.Context) (*repo.Pinned, error) {
	return repo.Pin(ctx, s.sink, s.Key)
}
