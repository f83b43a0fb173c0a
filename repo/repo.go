package repo

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/populate"
	"github.com/backupkit/backupkit/sinks"
)

// Backup is one complete backup in a storage.
type Backup struct {
	format.Name
	Key         string
	Size        int64 // zero when listed for planning (Observe)
	HasChecksum bool
	HasManifest bool
	// Drills are the results of restore drills of this backup, as their
	// keys tell, newest first.
	Drills []format.DrillMark
}

// LastDrill is the newest drill of b (ok is false when never drilled).
func (b Backup) LastDrill() (format.DrillMark, bool) {
	if len(b.Drills) == 0 {
		return format.DrillMark{}, false
	}
	return b.Drills[0], true
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

// Folder is what one database folder holds.
type Folder struct {
	Backups   []Backup // newest first
	Leftovers []sinks.Leftover
}

// ObservePrefix observes, in one listing, every database folder whose
// name starts with prefix (the databases an entry discovered: "prod."),
// by database name. Only folders holding a backup or an own leftover
// are returned.
func ObservePrefix(ctx context.Context, s sinks.Sink, prefix string) (map[string]*Folder, error) {
	var objs []sinks.Object
	var left []sinks.Leftover
	var err error
	if sc, ok := s.(scanner); ok {
		objs, left, err = sc.Scan(ctx, prefix)
	} else if objs, err = s.List(ctx, prefix); err == nil {
		left, err = s.Leftovers(ctx, prefix)
	}
	if err != nil {
		return nil, err
	}
	byDB := map[string][]sinks.Object{}
	for _, o := range objs {
		if i := strings.IndexByte(o.Key, '/'); i > 0 {
			byDB[o.Key[:i]] = append(byDB[o.Key[:i]], o)
		}
	}
	out := map[string]*Folder{}
	for db, os := range byDB {
		if b := backupsOf(os, db); len(b) > 0 {
			out[db] = &Folder{Backups: b}
		}
	}
	for _, lo := range left {
		key, _ := format.IsSumKey(lo.Final)
		n, ok := format.ParseKey(key)
		if !ok || !strings.HasPrefix(n.Database, prefix) {
			continue
		}
		f := out[n.Database]
		if f == nil {
			f = &Folder{}
			out[n.Database] = f
		}
		f.Leftovers = append(f.Leftovers, lo)
	}
	return out, nil
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
	manifests := map[string]bool{}
	drills := map[string][]format.DrillMark{}
	for _, o := range objs {
		if k, ok := format.IsSumKey(o.Key); ok {
			sums[k] = true
		} else if k, ok := strings.CutSuffix(o.Key, format.ManifestExt); ok {
			manifests[k] = true
		} else if k, m, ok := format.ParseDrillKey(o.Key); ok {
			drills[k] = append(drills[k], m)
		}
	}
	out := make([]Backup, 0, len(objs))
	populate.Slice(out) // 13 MiB at 100,000 backups
	for _, o := range objs {
		n, ok := format.ParseKey(o.Key)
		if !ok || n.Database != db {
			continue
		}
		d := drills[o.Key]
		slices.SortFunc(d, func(a, b format.DrillMark) int { return b.Time.Compare(a.Time) })
		out = append(out, Backup{Name: n, Key: o.Key, Size: o.Size, HasChecksum: sums[o.Key], HasManifest: manifests[o.Key], Drills: d})
	}
	sortNewestFirst(out)
	return out
}

// sortNewestFirst sorts bs by time, newest first (equal times in listing
// order). It sorts small integer keys and then moves each backup once:
// sorting the backups themselves moves 130-byte values around twenty
// times each at 100,000 backups, and comparing time.Time values costs
// more than comparing two integers.
func sortNewestFirst(bs []Backup) {
	// A key sorts ascending as newest first: seconds negated, then the
	// nanoseconds complemented above the listing index (a key time has a
	// four-digit year, so the seconds never overflow; a listing never
	// holds 2³² backups).
	type at struct {
		sec  int64
		rest uint64
	}
	order := make([]at, len(bs))
	populate.Slice(order)
	for i := range bs {
		t := bs[i].Time
		order[i] = at{-t.Unix(), uint64(999_999_999-t.Nanosecond())<<32 | uint64(i)}
	}
	slices.SortFunc(order, func(a, b at) int {
		if a.sec != b.sec {
			return cmp.Compare(a.sec, b.sec)
		}
		return cmp.Compare(a.rest, b.rest)
	})
	from := func(j int) int { return int(uint32(order[j].rest)) }
	// Apply the permutation in place, cycle by cycle: position j gets the
	// backup that was at order[j].i.
	done := make([]bool, len(bs))
	for j := range bs {
		if done[j] || from(j) == j {
			continue
		}
		first := bs[j]
		k := j
		for from(k) != j {
			bs[k] = bs[from(k)]
			done[k] = true
			k = from(k)
		}
		bs[k] = first
		done[k] = true
	}
}

// Usable returns the backups that count at now, newest first: a backup
// dated after now (clock skew) is kept but never counts as the newest,
// for schedules, retention or restore.
func Usable(bs []Backup, now time.Time) []Backup {
	// Without future-dated ones, bs is the answer (shared, not copied:
	// callers do not modify it).
	if !slices.ContainsFunc(bs, func(b Backup) bool { return b.Time.After(now) }) {
		return bs
	}
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

// Write streams r to key, confirms what is stored is what was written
// (Confirm), then writes the checksum sidecar. The backup counts once the
// data is visible; a failed sidecar returns the Written with an error
// matching ErrNoSidecar.
func Write(ctx context.Context, s sinks.Sink, key string, r io.Reader) (Written, error) {
	h := sha256.New()
	n, err := s.Put(ctx, key, io.TeeReader(r, h))
	if err != nil {
		return Written{}, err
	}
	w := Written{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	if err := Confirm(ctx, s, w); err != nil {
		s.Delete(context.WithoutCancel(ctx), key) // what is stored is not what was written
		return Written{}, err
	}
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

// Delete removes backups with their checksum, manifest and drill
// results. A key that is not a backup name is refused: foreign files are
// never touched.
func Delete(ctx context.Context, s sinks.Sink, bs ...Backup) error {
	var all []string
	for _, b := range bs {
		if _, ok := format.ParseKey(b.Key); !ok {
			return fmt.Errorf("refusing to delete %q: not a backup name", b.Key)
		}
		all = append(all, b.Key, format.SumKey(b.Key), format.ManifestKey(b.Key))
		for _, d := range b.Drills {
			all = append(all, d.Key)
		}
	}
	return s.Delete(ctx, all...)
}

// WriteManifest stores a backup's manifest beside it.
func WriteManifest(ctx context.Context, s sinks.Sink, m *format.Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	_, err = s.Put(ctx, format.ManifestKey(m.Key), bytes.NewReader(b))
	return err
}

// ReadManifest returns key's manifest, or nil when it has none (v0
// backups, or one whose manifest write failed).
func ReadManifest(ctx context.Context, s sinks.Sink, key string) (*format.Manifest, error) {
	rc, err := s.Open(ctx, format.ManifestKey(key))
	if errors.Is(err, sinks.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, format.MaxManifest))
	if err != nil {
		return nil, err
	}
	return format.ParseManifest(b)
}

// WriteDrill stores a drill result beside its backup and removes the
// older results of that backup (keeping the newest of each outcome is
// not needed: the newest tells when it was last drilled and how).
func WriteDrill(ctx context.Context, s sinks.Sink, b Backup, r format.DrillResult) error {
	body, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if _, err := s.Put(ctx, format.DrillKey(b.Key, r.Time, r.OK), bytes.NewReader(body)); err != nil {
		return err
	}
	var old []string
	for _, d := range b.Drills {
		old = append(old, d.Key)
	}
	if len(old) > 0 {
		return s.Delete(ctx, old...)
	}
	return nil
}

// Confirm checks, after a write, that the stored object is what was
// sent: its size, and for a local file its SHA-256 read back from the
// renamed file (an S3 object's checksum is checked against its ETag by
// the upload itself).
func Confirm(ctx context.Context, s sinks.Sink, w Written) error {
	p, err := s.Pin(ctx, w.Key)
	if err != nil {
		return fmt.Errorf("confirm %s: %w", w.Key, err)
	}
	defer p.Close()
	if p.Size() != w.Size {
		return fmt.Errorf("confirm %s: %d bytes stored, %d written", w.Key, p.Size(), w.Size)
	}
	if _, local := s.(*sinks.Local); !local {
		return nil
	}
	rc, err := p.Open(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, rc, make([]byte, 1<<20)); err != nil {
		return fmt.Errorf("confirm %s: %w", w.Key, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != w.SHA256 {
		return fmt.Errorf("confirm %s: %w (read back %s, wrote %s)", w.Key, ErrChecksum, got, w.SHA256)
	}
	return nil
}

// ReadDrill reads a drill result named by a listing.
func ReadDrill(ctx context.Context, s sinks.Sink, m format.DrillMark) (*format.DrillResult, error) {
	rc, err := s.Open(ctx, m.Key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var r format.DrillResult
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&r); err != nil {
		return nil, fmt.Errorf("drill result %s: %w", m.Key, err)
	}
	return &r, nil
}
