package sinks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"

	"github.com/backupkit/backupkit/internal/fault"
	"github.com/backupkit/backupkit/internal/populate"
)

// Local stores objects in a folder: files 0600, folders 0700, each file
// written to a temp name in its final folder, fsynced, renamed, and the
// folder fsynced, so a crash leaves either the whole file or a leftover.
type Local struct {
	name string
	root string
	ops  fileOps
}

// fileOps are the durability steps of a write; tests observe them.
type fileOps struct {
	syncFile func(f *os.File) error
	rename   func(from, to string) error
	syncDir  func(dir string) error
}

var realOps = fileOps{
	syncFile: (*os.File).Sync,
	rename:   os.Rename,
	syncDir: func(dir string) error {
		d, err := os.Open(dir)
		if err != nil {
			return err
		}
		defer d.Close()
		return d.Sync()
	},
}

var _ Sink = (*Local)(nil)

// NewLocal returns a local sink rooted at dir (created on first write).
func NewLocal(name, dir string) *Local {
	return &Local{name: name, root: filepath.Clean(dir), ops: realOps}
}

// Name implements Sink.
func (l *Local) Name() string { return l.name }

// Describe implements Sink.
func (l *Local) Describe() string { return l.root }

// Temp files are named ".<final name>.tmp-<12 hex digits>"; nothing else
// is ever taken for one (a user's ".notes.tmp-keep" is foreign).
const tempMarker = ".tmp-"

var tempName = regexp.MustCompile(`^\..+\.tmp-[0-9a-f]{12}$`)

// isTemp reports whether base is a temp file's name. The cheap test
// first: a plan asks this of every file in the storage.
func isTemp(base string) bool {
	return strings.HasPrefix(base, ".") && strings.Contains(base, tempMarker) && tempName.MatchString(base)
}

func (l *Local) path(key string) (string, error) {
	clean := path.Clean("/" + key)[1:]
	if key == "" || clean != key || strings.HasPrefix(key, "../") {
		return "", fmt.Errorf("invalid key %q", key)
	}
	return filepath.Join(l.root, filepath.FromSlash(key)), nil
}

// Put implements Sink.
func (l *Local) Put(ctx context.Context, key string, r io.Reader) (n int64, err error) {
	final, err := l.path(key)
	if err != nil {
		return 0, err
	}
	dir := filepath.Dir(final)
	if err := l.mkdirs(dir); err != nil {
		return 0, classify(permissionHint(err, dir))
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+filepath.Base(final)+tempMarker+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, classify(permissionHint(err, dir))
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, err = io.CopyBuffer(onlyWriter{f}, ctxReader{ctx, r}, make([]byte, 1<<20))
	if err != nil {
		return n, classify(err)
	}
	if err = l.ops.syncFile(f); err != nil {
		return n, classify(fmt.Errorf("fsync: %w", err))
	}
	if err = f.Close(); err != nil {
		return n, fmt.Errorf("close: %w", err)
	}
	if err = ctx.Err(); err != nil {
		return n, err
	}
	if err = l.ops.rename(tmp, final); err != nil {
		return n, err
	}
	// The rename is durable once the folder is.
	if err := l.ops.syncDir(dir); err != nil {
		return n, fmt.Errorf("fsync folder: %w", err)
	}
	return n, nil
}

// permissionHint says who may write dir when this process may not: a
// bind-mounted host folder owned by root, seen from a non-root container.
func permissionHint(err error, dir string) error {
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if fi, serr := os.Stat(d); serr == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				return fmt.Errorf("%w (BackupKit runs as uid %d; %s belongs to uid %d: give it to uid %d, e.g. chown -R %d %s)",
					err, os.Getuid(), d, st.Uid, os.Getuid(), os.Getuid(), d)
			}
			return err
		}
		if d == filepath.Dir(d) {
			return err
		}
	}
}

// classify marks errors a retry will not fix (a full disk, no
// permission, a read-only filesystem) as permanent.
func classify(err error) error {
	for _, e := range []error{syscall.ENOSPC, syscall.EDQUOT, syscall.EACCES, syscall.EPERM, syscall.EROFS} {
		if errors.Is(err, e) {
			return fault.Mark(fault.Permanent, err)
		}
	}
	return err
}

// mkdirs creates dir and its missing parents (0700), fsyncing the parent
// of each folder it creates so the new folder survives a crash.
func (l *Local) mkdirs(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a folder", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := l.mkdirs(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	return l.ops.syncDir(parent)
}

type onlyWriter struct{ io.Writer }

// ctxReader fails reads once ctx is done, so a cancelled write stops.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// List implements Sink.
func (l *Local) List(ctx context.Context, prefix string) ([]Object, error) {
	objs, _, err := l.scan(prefix, true)
	return objs, err
}

// walk calls fn for every regular file whose key starts with prefix. It
// reads folders unsorted (os.File.ReadDir), which matters at 100,000
// backups.
func (l *Local) walk(prefix string, fn func(key string, d fs.DirEntry) error) error {
	start, rel := l.root, ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		rel = prefix[:i]
		start = filepath.Join(l.root, filepath.FromSlash(rel))
	}
	err := walkDir(start, rel, prefix, fn)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(start); errors.Is(serr, fs.ErrNotExist) {
			return nil // nothing stored yet
		}
	}
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	return nil
}

func walkDir(dir, rel, prefix string, fn func(key string, d fs.DirEntry) error) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	// In batches: a folder of 100,000 backups is never held as
	// 100,000 DirEntries at once.
	for {
		entries, rerr := f.ReadDir(1024)
		if err := walkEntries(entries, dir, rel, prefix, fn); err != nil {
			return err
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func walkEntries(entries []fs.DirEntry, dir, rel, prefix string, fn func(key string, d fs.DirEntry) error) error {
	for _, d := range entries {
		key := d.Name()
		if rel != "" {
			key = rel + "/" + key
		}
		switch {
		case d.IsDir():
			if strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
				if err := walkDir(filepath.Join(dir, d.Name()), key, prefix, fn); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
		case d.Type().IsRegular() && strings.HasPrefix(key, prefix):
			if err := fn(key, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// Scan lists complete objects and leftovers in one pass over the folder,
// for planning: objects come without size or time (no stat per file).
func (l *Local) Scan(ctx context.Context, prefix string) ([]Object, []Leftover, error) {
	return l.scan(prefix, false)
}

func (l *Local) scan(prefix string, stat bool) ([]Object, []Leftover, error) {
	var objs []Object
	var left []Leftover
	err := l.walk(prefix, func(key string, d fs.DirEntry) error {
		if !stat && !isTemp(d.Name()) {
			if len(objs) == cap(objs) {
				// Doubling: append's gentler growth copies a listing
				// of 100,000 keys about four times over.
				objs = slices.Grow(objs, max(len(objs), 256))
				populate.Slice(objs[len(objs):])
			}
			objs = append(objs, Object{Key: key})
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while listing
			}
			return err
		}
		if isTemp(d.Name()) {
			final := path.Join(path.Dir(key), strings.TrimPrefix(d.Name()[:strings.LastIndex(d.Name(), tempMarker)], "."))
			left = append(left, Leftover{Key: key, Final: final, Started: info.ModTime()})
		} else {
			objs = append(objs, Object{Key: key, Size: info.Size()})
		}
		return nil
	})
	return objs, left, err
}

// Open implements Sink.
func (l *Local) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Pin implements Sink: it keeps the file open, so readers see the inode
// that was there, even if the name is replaced meanwhile.
func (l *Local) Pin(ctx context.Context, key string) (Pinned, error) {
	rc, err := l.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	f := rc.(*os.File)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &pinnedFile{f: f, size: fi.Size()}, nil
}

type pinnedFile struct {
	f    *os.File
	size int64
}

func (p *pinnedFile) Open(ctx context.Context) (io.ReadCloser, error) {
	return io.NopCloser(io.NewSectionReader(p.f, 0, p.size)), nil
}
func (p *pinnedFile) Size() int64  { return p.size }
func (p *pinnedFile) Close() error { return p.f.Close() }

// Delete implements Sink.
func (l *Local) Delete(ctx context.Context, keys ...string) error {
	var errs []error
	for _, k := range keys {
		p, err := l.path(k)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Leftovers implements Sink.
func (l *Local) Leftovers(ctx context.Context, prefix string) ([]Leftover, error) {
	_, left, err := l.scan(prefix, false)
	return left, err
}

// Cleanup implements Sink.
func (l *Local) Cleanup(ctx context.Context, lo Leftover) error {
	if !isTemp(path.Base(lo.Key)) {
		return fmt.Errorf("refusing to clean up %q: not a temp file", lo.Key)
	}
	return l.Delete(ctx, lo.Key)
}
