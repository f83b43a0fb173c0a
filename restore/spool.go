package restore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/backupkit/backupkit/format"
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
		return nil, fmt.Errorf("spool in %s: %w", dir, err)
	}
	return f, nil
}

// spoolWriter writes the decoded archive to a spool file during the check
// pass, so the restore reads the very bytes the check authenticated and
// nothing is decoded twice. An optional spool (one job) is given up, not
// failed, when the file system would keep less than a reserve free: the
// restore then reads the backup again instead. A required one (--jobs)
// fails the restore.
type spoolWriter struct {
	f        *os.File
	required bool
	written  int64
	checked  int64 // written when free space was last checked
	flushed  int64 // written when write-back was last started
	gaveUp   bool
	// streamed: the jobs of a staged restore read the spool while it is
	// written. Its pages are left to the kernel, not written out, and a
	// data block's pages are freed as its job reads it (part.release),
	// so the spool holds only what the jobs have yet to read, not the
	// whole archive: on disk and in the page cache, where it would push
	// out the server's own pages.
	streamed bool

	// Followers (a staged --jobs restore) read the spool as it grows.
	mu      sync.Mutex
	grown   *sync.Cond
	sealed  bool // the check pass ended: with sealErr, or whole
	sealErr error

	// The walk's map of what is written, so a job is handed only its
	// own tables' blocks: where the table of contents ends (once
	// tocKnown), where each data block starts, and how far the walk got.
	tocEnd   int64
	tocKnown bool
	blocks   []spoolBlock
	walked   int64

	// dropSealed: the data jobs have ended, so once sealed whole the
	// spool keeps only its table of contents (truncated in the
	// background, done closed when it is).
	dropSealed bool
	dropped    chan struct{}
}

type spoolBlock struct {
	id    int
	start int64
}

// spoolFlushEvery is how much is written before its write-back starts.
const spoolFlushEvery = 8 << 20

// spoolCheckEvery is how often free space is checked while spooling.
const spoolCheckEvery = 64 << 20

func (w *spoolWriter) Write(p []byte) (int, error) {
	if w.gaveUp {
		return len(p), nil
	}
	if !w.required && (w.written == 0 || w.written-w.checked >= spoolCheckEvery) {
		w.checked = w.written
		if !roomFor(w.f.Name(), spoolCheckEvery) {
			w.giveUp()
			return len(p), nil
		}
	}
	n, err := w.f.Write(p)
	w.mu.Lock() // followers read written; only this goroutine changes it
	w.written += int64(n)
	if w.grown != nil {
		w.grown.Broadcast()
	}
	w.mu.Unlock()
	if w.written-w.flushed >= spoolFlushEvery && !w.streamed {
		// Start writing the spool out now, while the check pass keeps
		// the CPU busy: dirty pages left for later would be written back
		// while the restore runs, competing with the server's own I/O.
		startWriteback(w.f, w.flushed, w.written-w.flushed)
		w.flushed = w.written
	}
	if err != nil {
		if !w.required {
			w.giveUp()
			return len(p), nil
		}
		return n, fmt.Errorf("spool for --jobs: %w", err)
	}
	return n, nil
}

// follow returns a reader of the spool from its start that waits for
// the check pass to write more, and ends when the check pass has: at the
// spool's end when it passed, with its error when it failed. Followers
// may be made at any time.
func (w *spoolWriter) follow() io.Reader {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.grown == nil {
		w.grown = sync.NewCond(&w.mu)
	}
	return &follower{w: w}
}

// seal tells followers the check pass ended (err nil: the spool is whole).
func (w *spoolWriter) seal(err error) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sealed, w.sealErr = true, err
	if w.grown != nil {
		w.grown.Broadcast()
	}
	if w.dropSealed {
		w.truncateData()
	}
}

// dropData frees the spool's data blocks once the check pass has sealed
// it whole (at once if it has): called when every data job has ended,
// after which only the table of contents is read again (by the post-data
// runs). Freeing a spool of many gigabytes takes a while: done in the
// background while indexes are built, it is not left for the restore's
// end.
func (w *spoolWriter) dropData() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dropSealed = true
	if w.sealed {
		w.truncateData()
	}
}

// waitDropped waits for dropData's truncation, if one was started.
func (w *spoolWriter) waitDropped() {
	if w == nil {
		return
	}
	w.mu.Lock()
	done := w.dropped
	w.mu.Unlock()
	if done != nil {
		<-done
	}
}

// truncateData cuts a spool sealed whole back to its table of contents,
// in the background. Called with w.mu held.
func (w *spoolWriter) truncateData() {
	if w.sealErr != nil || !w.tocKnown || w.dropped != nil {
		return
	}
	w.dropped = make(chan struct{})
	go func(end int64) {
		defer close(w.dropped)
		w.f.Truncate(end)
	}(w.tocEnd)
}

type follower struct {
	w   *spoolWriter
	off int64
}

func (f *follower) Read(p []byte) (int, error) {
	w := f.w
	w.mu.Lock()
	for f.off >= w.written && !w.sealed {
		w.grown.Wait()
	}
	avail, sealErr := w.written-f.off, w.sealErr
	w.mu.Unlock()
	if sealErr != nil {
		return 0, sealErr
	}
	if avail <= 0 {
		return 0, io.EOF
	}
	n, err := w.f.ReadAt(p[:min(int64(len(p)), avail)], f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// hooks map the archive for parts as the check pass walks it.
func (w *spoolWriter) hooks() format.WalkHooks {
	if !w.needed() {
		return format.WalkHooks{}
	}
	update := func(f func()) {
		w.mu.Lock()
		f()
		if w.grown != nil {
			w.grown.Broadcast()
		}
		w.mu.Unlock()
	}
	return format.WalkHooks{
		TOC:   func(pos int64) { update(func() { w.tocEnd, w.tocKnown = pos, true }) },
		Block: func(id int, start int64) { update(func() { w.blocks = append(w.blocks, spoolBlock{id, start}) }) },
		At:    func(pos int64) { update(func() { w.walked = pos }) },
	}
}

// part returns a follower that reads only the header and table of
// contents, then the data blocks of the entries in want, in stream
// order: the archive a pg_restore --use-list of those entries reads
// from a stream, without the other jobs' tables to pass over. Like a
// follower it ends at the spool's end when the check pass passed, with
// its error when it failed.
func (w *spoolWriter) part(want map[int]bool) io.Reader {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.grown == nil {
		w.grown = sync.NewCond(&w.mu)
	}
	return &part{w: w, want: want, cur: -1, inBlock: true}
}

type part struct {
	w       *spoolWriter
	want    map[int]bool
	off     int64
	cur     int   // the block being read (-1: the table of contents)
	inBlock bool  // cur is not read to its end yet
	scan    int   // the next block to consider
	spliced int64 // bytes moved by splice rather than read (for tests)

	freed     int64 // how far cur's pages are freed (streamed spools)
	noRelease bool  // freeing failed once: the spool keeps its pages
	released  int64 // bytes freed (for tests)
}

func (f *part) Read(p []byte) (int, error) {
	n, err := f.next(int64(len(p)))
	if err != nil {
		return 0, err
	}
	k, err := f.w.f.ReadAt(p[:n], f.off)
	f.off += int64(k)
	if err == io.EOF && k > 0 {
		err = nil
	}
	f.release()
	return k, err
}

// Pages of a streamed spool are freed in steps of releaseEvery bytes,
// releaseLag behind what a part has handed on: bytes spliced into a
// job's pipe (at most its size, a megabyte) are page references that
// must keep their content until the job reads them.
const (
	releaseEvery = 8 << 20
	releaseLag   = 4 << 20
	pageSize     = 4 << 10
)

// release frees the pages of the current block that this part handed
// on long enough ago. Each data block is read by one part only and the
// table of contents is all that is read again (by the post-data runs),
// so nobody needs them. The range freed never leaves the block: it
// starts at or after the block's start (rounded up to a page, so a page
// shared with the block before keeps its bytes) and ends releaseLag
// behind what was handed on; the block's last releaseLag bytes are left
// for the spool's truncation (dropData).
func (f *part) release() {
	if !f.w.streamed || f.noRelease || f.cur < 0 {
		return
	}
	from := (f.freed + pageSize - 1) &^ (pageSize - 1)
	to := (f.off - releaseLag) &^ (pageSize - 1)
	if to-from < releaseEvery {
		return
	}
	if err := punchHole(f.w.f, from, to-from); err != nil {
		f.noRelease = true
		return
	}
	f.freed = to
	f.released += to - from
}

// SpliceTo moves the part into a pipe (a job's stdin) as Read would read
// it, without copying it through this process: splice(2) hands the
// spool's pages to the pipe. Where splice is unsupported it returns
// errors.ErrUnsupported having moved nothing, and the caller reads.
func (f *part) SpliceTo(pipe syscall.RawConn) (int64, error) {
	var total int64
	for {
		n, err := f.next(spliceMax)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		k, err := spliceRange(f.w.f, f.off, n, pipe)
		f.off += k
		total += k
		f.spliced += k
		f.release()
		if errors.Is(err, errors.ErrUnsupported) && total > 0 {
			err = fmt.Errorf("splice from the spool stopped half-way: %w", syscall.EINVAL)
		}
		if err != nil {
			return total, err
		}
	}
}

// spliceMax is the most one splice call moves: the jobs' pipes are grown
// to a megabyte.
const spliceMax = 1 << 20

// next waits until bytes of the part are written at f.off and returns
// how many may be read there now (at most max); io.EOF at the part's
// end, the check pass's error when it failed.
func (f *part) next(max int64) (int64, error) {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if w.sealErr != nil {
			return 0, w.sealErr
		}
		if f.inBlock {
			end, final := f.end()
			if f.off < end {
				return min(max, end-f.off), nil
			}
			if final {
				f.inBlock = false
				continue
			}
		} else if f.scan < len(w.blocks) {
			b := w.blocks[f.scan]
			f.scan++
			if f.want[b.id] {
				f.cur, f.inBlock, f.off, f.freed = f.scan-1, true, b.start, b.start
			}
			continue
		} else if w.sealed {
			return 0, io.EOF
		}
		w.grown.Wait()
	}
}

// end is how far the current block may be read now, and whether that
// is its end. Called with w.mu held.
func (f *part) end() (int64, bool) {
	w := f.w
	switch {
	case f.cur < 0:
		return w.tocEnd, w.tocKnown
	case f.cur+1 < len(w.blocks):
		return w.blocks[f.cur+1].start, true
	case w.sealed:
		return w.written, true // the last block ends with the stream
	default:
		// The walk's position is inside this block (the next one has
		// not started), and all of it is written.
		return max(w.walked, w.blocks[f.cur].start), false
	}
}

// needed says whether the spool must hold the whole archive (--jobs).
func (w *spoolWriter) needed() bool { return w != nil && w.required }

func (w *spoolWriter) giveUp() {
	if w == nil {
		return
	}
	w.gaveUp = true
	w.f.Truncate(0)
}

// file is the spool, when it holds the whole archive.
func (w *spoolWriter) file() *os.File {
	if w == nil || w.gaveUp {
		return nil
	}
	return w.f
}

// roomFor reports whether the file system of path has n bytes free and
// still keeps a reserve (5% of it, at least 256 MiB) for everyone else.
func roomFor(path string, n int64) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		return false
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	reserve := max(256<<20, int64(st.Blocks)*int64(st.Bsize)/20)
	return free-n >= reserve
}

// SweepSpools removes spool files in dir whose process no longer runs
// (what a killed restore left behind). It returns the files removed.
func SweepSpools(dir string) []string {
	matches, _ := filepath.Glob(filepath.Join(dir, spoolPrefix+"*"))
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
