package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// ErrNoBackup means nothing matched what --from asked for.
var ErrNoBackup = errors.New("no backup found")

// ErrBadSource means --from names nothing BackupKit can read.
var ErrBadSource = errors.New("not a backup source")

var hexPrefix = regexp.MustCompile(`^[0-9a-f]{4,8}$`)

// Resolve turns what the user asked for into a Source. from may be:
// "latest" (the newest usable backup in any storage); a time (RFC 3339:
// the newest backup at or before it; a bare date YYYY-MM-DD means the end
// of that day, UTC); STORAGE:KEY; a file path; a bare key when exactly one
// storage has it; or a backup ID or unique ID prefix (as `list` shows).
func Resolve(ctx context.Context, st Storages, from string, now time.Time) (Source, error) {
	if from == "latest" {
		return newest(ctx, st, now, "latest")
	}
	if t, ok := parseTime(from); ok {
		if t.After(now) {
			t = now
		}
		return newest(ctx, st, t, "at or before "+t.Format(time.RFC3339))
	}
	if name, key, ok := strings.Cut(from, ":"); ok {
		if s := st.Sinks[name]; s != nil && slices.Contains(st.Names, name) {
			n, _ := format.ParseKey(key)
			return Source{Desc: from, Storage: name, Key: key, Name: n, sink: s}, nil
		}
	}
	if fi, err := os.Stat(from); err == nil && !fi.IsDir() {
		dir, base := filepath.Split(from)
		if dir == "" {
			dir = "."
		}
		n, _ := format.ParseKey(filepath.Base(filepath.Clean(dir)) + "/" + base)
		return Source{Desc: from, Key: base, Name: n, sink: sinks.NewLocal("file", dir)}, nil
	}
	if _, ok := format.ParseKey(from); ok {
		return find(ctx, st, from, func(b repo.Backup) bool { return b.Key == from })
	}
	if hexPrefix.MatchString(from) {
		return find(ctx, st, from, func(b repo.Backup) bool { return strings.HasPrefix(format.ID(b.Key), from) })
	}
	return Source{}, fmt.Errorf("%w: %s is not latest, a time, a file, a STORAGE:KEY or key of %s's storages (%s), or a backup ID",
		ErrBadSource, from, st.Database, strings.Join(st.Names, ", "))
}

func parseTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, true
	}
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		return d.Add(24*time.Hour - time.Nanosecond), true
	}
	return time.Time{}, false
}

// newest is the newest usable backup at or before t across the storages:
// in each storage the newest not dated after t, then the newest of those.
func newest(ctx context.Context, st Storages, t time.Time, what string) (Source, error) {
	var best Source
	var errs []error
	for _, name := range st.Names {
		bs, err := repo.List(ctx, st.Sinks[name], st.Database)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if b, ok := repo.Newest(bs, t); ok && (best.sink == nil || b.Time.After(best.Name.Time)) {
			best = Source{Desc: name + ":" + b.Key, Storage: name, Key: b.Key, Name: b.Name, sink: st.Sinks[name]}
		}
	}
	if best.sink == nil {
		if len(errs) > 0 {
			return Source{}, fmt.Errorf("%w for %s (%s): %w", ErrNoBackup, st.Database, what, errors.Join(errs...))
		}
		return Source{}, fmt.Errorf("%w for %s (%s) in %s", ErrNoBackup, st.Database, what, strings.Join(st.Names, ", "))
	}
	return best, nil
}

// find is the one backup that match selects across the storages; copies
// of one key in several storages are ambiguous, as are several keys.
func find(ctx context.Context, st Storages, from string, match func(repo.Backup) bool) (Source, error) {
	var found []Source
	keys := map[string]bool{}
	for _, name := range st.Names {
		bs, err := repo.List(ctx, st.Sinks[name], st.Database)
		if err != nil {
			return Source{}, fmt.Errorf("%s: %w", name, err)
		}
		for _, b := range bs {
			if match(b) {
				found = append(found, Source{Desc: name + ":" + b.Key, Storage: name, Key: b.Key, Name: b.Name, sink: st.Sinks[name]})
				keys[b.Key] = true
			}
		}
	}
	switch {
	case len(found) == 0:
		return Source{}, fmt.Errorf("%w: nothing of %s in %s matches %s", ErrNoBackup, st.Database, strings.Join(st.Names, ", "), from)
	case len(found) > 1:
		var c []string
		for _, f := range found {
			c = append(c, f.Desc)
		}
		why := "copies in several storages"
		if len(keys) > 1 {
			why = "several backups"
		}
		return Source{}, fmt.Errorf("%w: %s matches %s; name one as STORAGE:KEY: %s", ErrBadSource, from, why, strings.Join(c, ", "))
	}
	return found[0], nil
}

// pin fixes the source's bytes for the check pass and the restore.
func (s Source) pin(ctx context.Context) (*repo.Pinned, error) {
	return repo.Pin(ctx, s.sink, s.Key)
}

// FromStorage is the Source of a key in a named storage.
func FromStorage(name string, s sinks.Sink, key string) Source {
	n, _ := format.ParseKey(key)
	return Source{Desc: name + ":" + key, Storage: name, Key: key, Name: n, sink: s}
}
