package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/sinks"
)

// Backup is one complete backup in a storage.
type Backup struct {
	format.Name
	Key         string
	Size        int64 // zero when listed for planning (Observe)
	HasChecksum bool
}

// scanner is implemented by sinks that list objects and leftovers in one
// pass (Local).
type scanner interface {
	Scan(ctx context.Context, prefix string) ([]sinks.Object, []sinks.Leftover, error)
}

// Observe returns the backups of db (newest first) and the unfinished
// writes under its folder, for planning: backup sizes may be left zero.
func Observe(ctx context.Context, s sinks.Sink, db string) ([]Backup, []sinks.Leftover, error) {
	var objs []sinks.Object
	var left []sinks.Leftover
	var err error
	if sc, ok := s.(scanner); ok {
		objs, left, err = sc.Scan(ctx, db+"/")
	} else if objs, err = s.List(ctx, db+"/"); err == nil {
		left, err = s.Leftovers(ctx, db+"/")
	}
	if err != nil {
		return nil, nil, err
	}
	return backupsOf(objs, db), ownLeftovers(left, db), nil
}

// ownLeftovers keeps the unfinished writes of BackupKit's own: those that
// were going to create a backup of db or its sidecar. Anyone else's temp
// files and uploads are foreign, and never cleaned up.
func ownLeftovers(left []sinks.Leftover, db string) []sinks.Leftover {
	var out []sinks.Leftover
	for _, lo := range left {
		key, _ := format.IsSumKey(lo.Final)
		if n, ok := format.ParseKey(key); ok && n.Database == db {
			out = append(out, lo)
		}
	}
	return out
}

// List returns the backups of db in s, newest first. Foreign objects and
// unfinished writes are left out.
func List(ctx context.Context, s sinks.Sink, db string) ([]Backup, error) {
	objs, err := s.List(ctx, db+"/")
	if err != nil {
		return nil, err
	}
	return backupsOf(objs, db), nil
}

func backupsOf(objs []sinks.Object, db string) []Backup {
	sums := map[string]bool{}
	for _, o := range objs {
		if k, ok := format.IsSumKey(o.Key); ok {
			sums[k] = true
		}
	}
	out := make([]Backup, 0, len(objs))
	for _, o := range objs {
		n, ok := format.ParseKey(o.Key)
		if !ok || n.Database != db {
			continue
		}
		out = append(out, Backup{Name: n, Key: o.Key, Size: o.Size, HasChecksum: sums[o.Key]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out
}

// Usable returns the backups that count at now, newest first: a backup
// dated after now (clock skew) is kept but never counts as the newest,
// for schedules, retention or restore.
func Usable(bs []Backup, now time.Time) []Backup {
	out := make([]Backup, 0, len(bs))
	for _, b := range bs {
		if !b.Time.After(now) {
			out = append(out, b)
		}
	}
	return out
}

// Newest answers "the newest usable backup" of a listing (newest first):
// the first not dated after now. ok is false when there is none.
func Newest(bs []Backup, now time.Time) (Backup, bool) {
	for _, b := range bs {
		if !b.Time.After(now) {
			return b, true
		}
	}
	return Backup{}, false
}

// Written is the outcome of writing one backup.
type Written struct {
	Key    string
	Size   int64
	SHA256 string
}

// ErrNoSidecar means the data was written but its checksum sidecar was
// not: the backup exists (like a v0 backup without a checksum).
var ErrNoSidecar = errors.New("backup is complete but its checksum sidecar failed")

// Write streams r to key and then writes the checksum sidecar. The backup
// counts once the data is visible; a failed sidecar returns the Written
// with an error matching ErrNoSidecar.
func Write(ctx context.Context, s sinks.Sink, key string, r io.Reader) (Written, error) {
	h := sha256.New()
	n, err := s.Put(ctx, key, io.TeeReader(r, h))
	if err != nil {
		return Written{}, err
	}
	w := Written{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	if _, err := s.Put(context.WithoutCancel(ctx), format.SumKey(key), strings.NewReader(format.SumLine(w.SHA256, key))); err != nil {
		return w, fmt.Errorf("%w: %s: %w", ErrNoSidecar, key, err)
	}
	return w, nil
}

// ReadChecksum returns the SHA-256 recorded for key, or "" when the
// backup has none (v0).
func ReadChecksum(ctx context.Context, s sinks.Sink, key string) (string, error) {
	rc, err := s.Open(ctx, format.SumKey(key))
	if errors.Is(err, sinks.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1024))
	if err != nil {
		return "", err
	}
	sum, err := format.ParseSum(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return sum, nil
}

// ErrChecksum means stored bytes do not match the recorded SHA-256.
var ErrChecksum = errors.New("checksum mismatch: the stored backup changed since it was written")

// Pinned is one backup fixed to the version stored when it was pinned;
// every reader checks the recorded SHA-256, when there is one, and
// returns ErrChecksum instead of EOF if the bytes do not match.
type Pinned struct {
	sinks.Pinned
	SHA256 string // recorded checksum; "" for a v0 backup without one
}

// Pin pins a backup (see sinks.Pinned) together with its checksum.
func Pin(ctx context.Context, s sinks.Sink, key string) (*Pinned, error) {
	want, err := ReadChecksum(ctx, s, key)
	if err != nil {
		return nil, err
	}
	p, err := s.Pin(ctx, key)
	if err != nil {
		return nil, err
	}
	return &Pinned{Pinned: p, SHA256: want}, nil
}

// Open returns a checking reader of the pinned bytes.
func (p *Pinned) Open(ctx context.Context) (io.ReadCloser, error) {
	rc, err := p.Pinned.Open(ctx)
	if err != nil || p.SHA256 == "" {
		return rc, err
	}
	return &verifyingReader{rc: rc, h: sha256.New(), want: p.SHA256}, nil
}

type verifyingReader struct {
	rc   io.ReadCloser
	h    hash.Hash
	want string
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF && hex.EncodeToString(v.h.Sum(nil)) != v.want {
		return n, ErrChecksum
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.rc.Close() }

// Delete removes backups and their sidecars. Keys that are not backup
// names are refused: foreign files are never touched.
func Delete(ctx context.Context, s sinks.Sink, keys ...string) error {
	var all []string
	for _, k := range keys {
		if _, ok := format.ParseKey(k); !ok {
			return fmt.Errorf("refusing to delete %q: not a backup name", k)
		}
		all = append(all, k, format.SumKey(k))
	}
	return s.Delete(ctx, all...)
}
