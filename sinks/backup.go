package sinks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// Backup names follow v0: <db>/<YYYYMMDD_HHMMSS.NNNNNNNNNZ>.dump[.gz|.zst][.enc]
// (UTC). Anything else in a storage is foreign and never touched.
const timeLayout = "20060102_150405.000000000Z"

// SumExt is the suffix of the checksum sidecar written after a backup:
// "<key>.sha256", in sha256sum's format.
const SumExt = ".sha256"

// Key returns the storage key of a backup of db taken at t.
func Key(db string, t time.Time, ext string) string {
	return db + "/" + t.UTC().Format(timeLayout) + ext
}

// ParseKey reports whether key names a backup, and of which database and
// time. It is hand-written: plans parse every key of a storage.
func ParseKey(key string) (db string, t time.Time, ok bool) {
	i := strings.IndexByte(key, '/')
	if i <= 0 || strings.IndexByte(key[i+1:], '/') >= 0 {
		return "", time.Time{}, false
	}
	db, base := key[:i], key[i+1:]
	// YYYYMMDD_HHMMSS.NNNNNNNNNZ = 26 bytes, then ".dump".
	if len(base) < 31 || base[8] != '_' || base[15] != '.' || base[25] != 'Z' || base[26:31] != ".dump" {
		return "", time.Time{}, false
	}
	switch base[31:] {
	case "", ".gz", ".zst", ".enc", ".gz.enc", ".zst.enc":
	default:
		return "", time.Time{}, false
	}
	num := func(s string) (int, bool) {
		n := 0
		for _, c := range []byte(s) {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	var v [7]int
	for k, r := range [7][2]int{{0, 4}, {4, 6}, {6, 8}, {9, 11}, {11, 13}, {13, 15}, {16, 25}} {
		n, ok := num(base[r[0]:r[1]])
		if !ok {
			return "", time.Time{}, false
		}
		v[k] = n
	}
	if v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60 {
		return "", time.Time{}, false
	}
	t = time.Date(v[0], time.Month(v[1]), v[2], v[3], v[4], v[5], v[6], time.UTC)
	if t.Day() != v[2] {
		return "", time.Time{}, false // 20260231
	}
	return db, t, true
}

// Backup is one complete backup in a storage.
type Backup struct {
	Database    string
	Key         string
	Time        time.Time
	Size        int64
	HasChecksum bool
}

// scanner is implemented by sinks that list objects and leftovers in one
// pass (Local).
type scanner interface {
	Scan(ctx context.Context, prefix string) ([]Object, []Leftover, error)
}

// Observe returns the backups of db (newest first) and the unfinished
// writes under its folder, for planning: backup sizes may be left zero.
func Observe(ctx context.Context, s Sink, db string) ([]Backup, []Leftover, error) {
	var objs []Object
	var left []Leftover
	var err error
	if sc, ok := s.(scanner); ok {
		objs, left, err = sc.Scan(ctx, db+"/")
	} else {
		if objs, err = s.List(ctx, db+"/"); err == nil {
			left, err = s.Leftovers(ctx, db+"/")
		}
	}
	if err != nil {
		return nil, nil, err
	}
	return backupsOf(objs, db), left, nil
}

// ListBackups returns the backups of db in s, newest first. Foreign
// objects and unfinished writes are left out.
func ListBackups(ctx context.Context, s Sink, db string) ([]Backup, error) {
	objs, err := s.List(ctx, db+"/")
	if err != nil {
		return nil, err
	}
	return backupsOf(objs, db), nil
}

func backupsOf(objs []Object, db string) []Backup {
	sums := map[string]bool{}
	for _, o := range objs {
		if strings.HasSuffix(o.Key, SumExt) {
			sums[strings.TrimSuffix(o.Key, SumExt)] = true
		}
	}
	out := make([]Backup, 0, len(objs))
	for _, o := range objs {
		d, t, ok := ParseKey(o.Key)
		if !ok || d != db {
			continue
		}
		out = append(out, Backup{Database: db, Key: o.Key, Time: t, Size: o.Size, HasChecksum: sums[o.Key]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out
}

// Written is the outcome of writing one backup.
type Written struct {
	Key    string
	Size   int64
	SHA256 string
}

// WriteBackup streams r to key and then writes the checksum sidecar. The
// backup counts once the data is visible; a failed sidecar is reported
// but the backup stays (it is then like a v0 backup without a checksum).
func WriteBackup(ctx context.Context, s Sink, key string, r io.Reader) (Written, error) {
	h := sha256.New()
	n, err := s.Put(ctx, key, io.TeeReader(r, h))
	if err != nil {
		return Written{}, err
	}
	w := Written{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	line := fmt.Sprintf("%s  %s\n", w.SHA256, path.Base(key))
	if _, err := s.Put(context.WithoutCancel(ctx), key+SumExt, strings.NewReader(line)); err != nil {
		return w, fmt.Errorf("backup %s is complete but its checksum sidecar failed: %w", key, err)
	}
	return w, nil
}

// ReadChecksum returns the SHA-256 recorded for key, or "" when the backup
// has none (v0).
func ReadChecksum(ctx context.Context, s Sink, key string) (string, error) {
	rc, err := s.Open(ctx, key+SumExt)
	if errors.Is(err, ErrNotFound) {
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
	f := strings.Fields(string(b))
	if len(f) == 0 || len(f[0]) != 64 {
		return "", fmt.Errorf("checksum sidecar of %s is malformed", key)
	}
	return strings.ToLower(f[0]), nil
}

// ErrChecksum means stored bytes do not match the recorded SHA-256.
var ErrChecksum = errors.New("checksum mismatch: the stored backup changed since it was written")

// OpenVerified opens a backup; when it has a checksum, the reader returns
// ErrChecksum instead of EOF if the bytes do not match.
func OpenVerified(ctx context.Context, s Sink, key string) (io.ReadCloser, error) {
	want, err := ReadChecksum(ctx, s, key)
	if err != nil {
		return nil, err
	}
	rc, err := s.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	if want == "" {
		return rc, nil
	}
	return &verifyingReader{rc: rc, h: sha256.New(), want: want}, nil
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

// DeleteBackups removes backups and their sidecars. Keys that are not
// backup names are refused: foreign files are never touched.
func DeleteBackups(ctx context.Context, s Sink, keys ...string) error {
	var all []string
	for _, k := range keys {
		if _, _, ok := ParseKey(k); !ok {
			return fmt.Errorf("refusing to delete %q: not a backup name", k)
		}
		all = append(all, k, k+SumExt)
	}
	return s.Delete(ctx, all...)
}

// Target is one storage a fan-out writes to.
type Target struct {
	Sink Sink
	Key  string
}

// Result is one target's outcome.
type Result struct {
	Target
	Written
	Err      error
	Duration time.Duration
}

// FanOut runs produce once and writes what it writes to every target at
// the same time. A target that fails loses only its own copy; the others
// go on. When produce fails, every target is aborted.
func FanOut(ctx context.Context, targets []Target, produce func(w io.Writer) error) ([]Result, error) {
	results := make([]Result, len(targets))
	pipes := make([]*io.PipeWriter, len(targets))
	var wg sync.WaitGroup
	start := time.Now()
	for i, t := range targets {
		pr, pw := io.Pipe()
		pipes[i] = pw
		results[i].Target = t
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := WriteBackup(ctx, t.Sink, t.Key, pr)
			results[i].Written, results[i].Err = w, err
			results[i].Duration = time.Since(start)
			// Unblock the producer if this target stopped early.
			pr.CloseWithError(errTargetGone(err))
		}()
	}
	fw := &fanWriter{pipes: pipes, dead: make([]bool, len(pipes))}
	perr := produce(fw)
	for _, pw := range pipes {
		if perr != nil {
			pw.CloseWithError(perr)
		} else {
			pw.Close()
		}
	}
	wg.Wait()
	if errors.Is(perr, errAllTargetsFailed) {
		// Say why each storage failed, not just that they all did.
		var errs []error
		for _, r := range results {
			if r.Err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.Sink.Name(), r.Err))
			}
		}
		perr = fmt.Errorf("every storage failed: %w", errors.Join(errs...))
	}
	if perr != nil {
		for i := range results {
			if results[i].Err == nil {
				// Cannot happen: a producer error aborts every Put.
				results[i].Err = fmt.Errorf("written although the dump failed: %w", perr)
			}
		}
	}
	return results, perr
}

func errTargetGone(err error) error {
	if err == nil {
		return errors.New("target finished early")
	}
	return err
}

// fanWriter writes each buffer to every live pipe concurrently.
type fanWriter struct {
	pipes []*io.PipeWriter
	dead  []bool
	errs  []error
}

func (f *fanWriter) Write(p []byte) (int, error) {
	live := 0
	if len(f.pipes) == 1 {
		if !f.dead[0] {
			if _, err := f.pipes[0].Write(p); err != nil {
				f.dead[0] = true
			} else {
				live++
			}
		}
	} else {
		var wg sync.WaitGroup
		for i, pw := range f.pipes {
			if f.dead[i] {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := pw.Write(p); err != nil {
					f.dead[i] = true
				}
			}()
		}
		wg.Wait()
		for _, d := range f.dead {
			if !d {
				live++
			}
		}
	}
	if live == 0 {
		return 0, errAllTargetsFailed
	}
	return len(p), nil
}

var errAllTargetsFailed = errors.New("every storage failed")
