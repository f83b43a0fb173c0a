package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/pg"
)

// StagePrefix starts the name of every staging database a restore makes.
const StagePrefix = "backupkit_stage_"

// A stage restores an encrypted archive while the check pass reads it,
// into a staging database that becomes the target only once the check
// has passed: every chunk authenticated, the stream and the archive read
// whole. pg_restore only ever sees authenticated plaintext, and until
// the rename the target does not exist, so a backup refused half-way
// leaves nothing behind. It is used where the target is new (a restore
// never stages over an existing database) and the payload is encrypted
// (an unencrypted one is not authenticated before its end, so it is
// checked whole first).
type stage struct {
	o      Options
	conn   pg.Conn // the staging database
	lock   *pg.Lock
	cancel context.CancelFunc
	pw     *io.PipeWriter   // one job: pg_restore's input
	spool  *spoolWriter     // --jobs: what the jobs read
	sizes  map[string]int64 // schema.table → bytes (or rows), for --jobs

	prepared chan struct{} // closed when prepare ended
	swept    chan struct{} // closed when the sweep ended (see sweep)
	prepErr  error
	begun    bool      // the restore runs into the staging database
	toc      []string  // --jobs: pg_restore --list of the archive
	post     *postData // --jobs: what post-data was built early

	exited  chan struct{}
	err     error // pg_restore's result, once exited is closed
	stopped bool  // pg_restore finished before the stream's end
	renamed bool
}

// stages says whether a restore of a new target can be staged.
func (o Options) stages(exists bool) bool {
	return !exists && !o.NoStage && o.Before == nil && !o.Clean
}

// begin is called by the check pass once the payload's layers and the
// pg_restore are known. It returns where the decoded archive goes as it
// is read, or nil when this payload is not staged.
func (s *stage) begin(ctx context.Context, c *Checked, spool *spoolWriter) (io.Writer, error) {
	if s == nil || !c.Layers.Encrypted() || c.Layers.Kind != format.KindCustom {
		return nil, nil
	}
	if s.prepared == nil {
		s.prepare(ctx)
	}
	if <-s.prepared; s.prepErr != nil {
		return nil, s.prepErr
	}
	s.begun = true
	args := exec.RestoreArgs{SingleTransaction: s.o.SingleTransaction, Tool: s.o.Tool}
	if args.Tool == "" {
		args.Tool = c.Tool.Path
	}
	var rctx context.Context
	rctx, s.cancel = context.WithCancel(ctx)
	s.o.log().Info("restoring while checking, into a staging database", "staging", s.conn.Database, "database", s.o.Target.Database)
	if s.o.Jobs > 1 {
		// The jobs read the spool as the check pass writes it.
		if spool == nil {
			return nil, errors.New("--jobs needs the spool")
		}
		s.spool, s.exited = spool, make(chan struct{})
		spool.streamed = true
		go func() {
			s.err = s.parallel(rctx, args.Tool)
			close(s.exited)
		}()
		s.sweep(ctx)
		return nil, nil
	}
	pr, pw := io.Pipe()
	s.pw, s.exited = pw, make(chan struct{})
	go func() {
		s.err = exec.PgRestore(rctx, s.conn, args, "", pr)
		close(s.exited)
		pr.CloseWithError(errStageExited)
	}()
	s.sweep(ctx)
	return s, nil
}

// prepare starts making the staging database and taking the lock that
// says it is in use. A restore whose backup is named as encrypted calls
// it before the check pass starts, so the database is made while the key
// is derived; one that is not staged after all (the bytes say otherwise,
// or the backup is refused) drops it again.
func (s *stage) prepare(ctx context.Context) {
	s.prepared = make(chan struct{})
	go func() {
		defer close(s.prepared)
		maint := s.o.Target
		maint.Database = "postgres"
		s.conn = s.o.Target
		s.conn.Database = StagePrefix + randomHex(6)
		// The lock says this restore is alive: a sweep drops staging
		// databases whose lock nobody holds (a killed restore's).
		lock, ok, err := pg.TryLock(ctx, maint, "stage:"+s.conn.Database)
		if err != nil || !ok {
			s.prepErr = fmt.Errorf("staging database: cannot take its lock: %v", err)
			return
		}
		s.lock = lock
		if err := lock.CreateDatabase(ctx, s.conn.Database); err != nil {
			s.prepErr = fmt.Errorf("create staging database %s: %w", s.conn.Database, err)
		} else if s.o.onStaging != nil {
			s.o.onStaging(s.conn.Database)
		}
	}()
}

// sweep drops, in the background, the staging databases of killed
// restores (and killed drills' scratch databases): called once
// pg_restore has started, as nothing on the way to it (the key's
// derivation, the staging database) should share the machine with it. It
// cannot take this restore's database, whose lock is held before it
// exists.
func (s *stage) sweep(ctx context.Context) {
	s.swept = make(chan struct{})
	go func() {
		defer close(s.swept)
		if dropped, err := SweepScratch(ctx, s.o.Target); err == nil && len(dropped) > 0 {
			s.o.log().Info("dropped staging or scratch databases of killed restores and drills", "databases", dropped)
		}
	}()
}

// waitPrepared waits for prepare to end, and the sweep, if they were
// started.
func (s *stage) waitPrepared() {
	if s != nil && s.prepared != nil {
		<-s.prepared
	}
	if s != nil && s.swept != nil {
		<-s.swept
	}
}

var errStageExited = errors.New("pg_restore exited")

// errTargetAppeared: the target was created while a staged restore ran.
var errTargetAppeared = errors.New("restore not finished")

// Write hands decoded bytes to pg_restore. After pg_restore has exited
// successfully (it stops reading at the archive's end) the rest is
// dropped; after it failed, the check pass stops with its error.
func (s *stage) Write(p []byte) (int, error) {
	if s.stopped {
		return len(p), nil
	}
	if _, err := s.pw.Write(p); err != nil {
		<-s.exited
		if s.err != nil {
			return 0, fmt.Errorf("pg_restore into the staging database: %w", s.err)
		}
		s.stopped = true
	}
	return len(p), nil
}

// started says whether begin restores into a staging database.
func (s *stage) started() bool { return s != nil && s.begun }

// finish ends the staged restore after the check pass. On success the
// stream's end reaches pg_restore and its result is returned; on failure
// pg_restore is stopped before it sees an end. failed says whether
// pg_restore's own failure is the error (not a refusal of the backup).
func (s *stage) finish(checkErr error) (err error, failed bool) {
	if s.exited == nil {
		return checkErr, false // begin failed before pg_restore started
	}
	select {
	case <-s.exited:
		if s.err != nil {
			return s.err, true // pg_restore failed first
		}
	default:
	}
	if checkErr != nil {
		s.end(checkErr)
		s.cancel()
		<-s.exited
		return checkErr, false
	}
	s.end(nil)
	<-s.exited
	s.cancel()
	return s.err, s.err != nil
}

// end tells pg_restore the input ended: whole (err nil) or not.
func (s *stage) end(err error) {
	s.spool.seal(err)
	switch {
	case s.pw == nil:
	case err != nil:
		s.pw.CloseWithError(err)
	default:
		s.pw.Close()
	}
}

// parallel is a --jobs restore of the pre-data and data sections from
// the spool as it grows: first the definitions, then the table data in
// o.Jobs processes, each with its share of the tables (the largest
// first, by the manifest's sizes), each reading the table of contents
// and its own tables' blocks in stream order. Once a job has ended, the
// indexes and constraints of its tables are built (postData) while
// other jobs still copy, in batches that run side by side, never more
// pg_restores at once than o.Jobs; complete builds what is left.
func (s *stage) parallel(ctx context.Context, tool string) error {
	// pg_restore lists the entries while another creates the
	// definitions: both read only the table of contents.
	type listed struct {
		toc []string
		err error
	}
	list := make(chan listed, 1)
	go func() {
		toc, err := exec.ListTOC(ctx, tool, s.spool.follow())
		list <- listed{toc, err}
	}()
	info, err := format.ReadTOC(s.spool.follow())
	if err == nil {
		err = exec.PgRestore(ctx, s.conn, exec.RestoreArgs{Tool: tool, Sections: []string{"pre-data"}}, "", s.spool.follow())
	}
	l := <-list
	if err != nil {
		return err
	}
	if l.err != nil {
		return l.err
	}
	toc := l.toc
	s.toc = toc
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lists := splitData(toc, s.o.Jobs, s.sizes)
	s.post = newPostData(info, lists)
	type result struct {
		job int
		err error
	}
	results := make(chan result, len(lists))
	running := 0
	var first error
	for i, list := range lists {
		file := fmt.Sprintf("%s.list%d", s.spool.f.Name(), i)
		if err := os.WriteFile(file, []byte(strings.Join(list, "\n")+"\n"), 0o600); err != nil {
			first = err
			break
		}
		defer os.Remove(file)
		// Each job reads only its own tables' blocks: passing over the
		// others' would pipe the whole archive through every job.
		want := map[int]bool{}
		for _, id := range listIDs(list) {
			want[id] = true
		}
		running++
		go func() {
			err := exec.PgRestore(ctx, s.conn, exec.RestoreArgs{Tool: tool, Sections: []string{"data"}, UseList: file}, "", s.spool.part(want))
			results <- result{i, err}
		}()
	}
	ended := map[int]bool{}
	type built struct {
		ids []int
		err error
	}
	builds := make(chan built)
	building, batches := 0, 0 // batches building now, and ever started
	fail := func(err error) {
		if first == nil {
			first = err
			cancel()
		}
	}
	if first != nil {
		cancel()
	}
	for running > 0 || building > 0 {
		select {
		case r := <-results:
			running--
			if r.err != nil {
				fail(r.err)
			}
			ended[r.job] = true
			if running == 0 && first == nil {
				s.spool.dropData() // no job reads a data block again
			}
		case b := <-builds:
			building--
			for _, id := range b.ids {
				delete(s.post.running, id)
			}
			if b.err != nil {
				fail(b.err)
				continue
			}
			for _, id := range b.ids {
				s.post.done[id] = true
			}
		}
		// As many pg_restores at once as --jobs: the data jobs still
		// copying, and batches of what their ended tables need built.
		free := s.o.Jobs - running - building
		if first != nil || free <= 0 {
			continue
		}
		for _, ids := range s.post.split(s.post.ready(ended), free) {
			for _, id := range ids {
				s.post.running[id] = true
			}
			building++
			batches++
			go func(n int, ids []int) { builds <- built{ids, s.postData(ctx, tool, n, ids)} }(batches, ids)
		}
	}
	return first
}

// postData builds the post-data entries ids (batch n) from the spool (their
// definitions are in its table of contents, whole from the start).
func (s *stage) postData(ctx context.Context, tool string, n int, ids []int) error {
	set := map[int]bool{}
	for _, id := range ids {
		set[id] = true
	}
	file := fmt.Sprintf("%s.early%d", s.spool.f.Name(), n)
	if err := os.WriteFile(file, []byte(listOf(s.toc, set)), 0o600); err != nil {
		return err
	}
	defer os.Remove(file)
	// No --section: the list holds post-data entries only (see postData).
	return exec.PgRestore(ctx, s.conn, exec.RestoreArgs{Tool: tool, UseList: file}, s.spool.f.Name(), nil)
}

// splitData splits the entries of a pg_restore --list into at most n
// lists for the data section: the TABLE DATA entries shared out largest
// first (by sizes: bytes, or rows) to the list with the least so far,
// and every other entry (sequence values, large objects) in the first
// list. Each list keeps the archive's order, which a stream can only be
// read in.
func splitData(toc []string, n int, sizes map[string]int64) [][]string {
	type entry struct {
		i    int
		line string
		size int64
	}
	var data []entry
	lists := make([][]entry, n)
	for i, line := range toc {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		_, rest, _ := strings.Cut(line, ";")
		f := strings.Fields(rest)
		if len(f) >= 6 && f[2] == "TABLE" && f[3] == "DATA" {
			data = append(data, entry{i, line, sizes[f[4]+"."+f[5]]})
		} else {
			lists[0] = append(lists[0], entry{i, line, 0})
		}
	}
	sort.SliceStable(data, func(a, b int) bool { return data[a].size > data[b].size })
	load := make([]int64, n)
	for _, d := range data {
		k := 0
		for j := range load {
			if load[j] < load[k] {
				k = j
			}
		}
		lists[k] = append(lists[k], d)
		load[k] += d.size + 1
	}
	var out [][]string
	for _, l := range lists {
		if len(l) == 0 {
			continue
		}
		sort.Slice(l, func(a, b int) bool { return l[a].i < l[b].i })
		lines := make([]string, len(l))
		for j, e := range l {
			lines[j] = e.line
		}
		out = append(out, lines)
	}
	return out
}

// complete builds what the streamed restore left for later (indexes and
// constraints with --jobs, from the spool) and renames the staging
// database to the target.
func (s *stage) complete(ctx context.Context, c Checked, spool *os.File) error {
	s.spool.waitDropped() // long done while indexes were built
	// With --jobs, the post-data entries the batches did not build (none
	// left, no run), listed alone and without --section (see postData).
	if s.o.Jobs > 1 && (s.post == nil || s.post.left()) {
		if spool == nil {
			return errors.New("--jobs needs the spool, which is gone")
		}
		args := exec.RestoreArgs{Jobs: s.o.Jobs, Tool: s.o.Tool, Sections: []string{"post-data"}}
		if args.Tool == "" {
			args.Tool = c.Tool.Path
		}
		if s.post != nil && !s.post.unsectioned {
			args.Sections = nil
			args.UseList = spool.Name() + ".rest"
			if err := os.WriteFile(args.UseList, []byte(listOf(s.toc, s.post.rest())), 0o600); err != nil {
				return err
			}
			defer os.Remove(args.UseList)
		}
		if err := exec.PgRestore(ctx, s.conn, args, spool.Name(), nil); err != nil {
			return err
		}
	}
	if err := s.lock.RenameDatabase(ctx, s.conn.Database, s.o.Target.Database); err != nil {
		if errors.Is(err, pg.ErrDatabaseExists) {
			return fmt.Errorf("%w: database %s was created by someone else while this restore ran; it was left alone", errTargetAppeared, s.o.Target.Database)
		}
		return fmt.Errorf("rename staging database %s to %s: %w", s.conn.Database, s.o.Target.Database, err)
	}
	s.renamed = true
	return nil
}

// drop removes the staging database (when it was not renamed) and
// releases its lock; later calls do nothing.
func (s *stage) drop(ctx context.Context) error {
	s.waitPrepared()
	if s == nil || s.lock == nil {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	defer s.lock.Release(ctx)
	s.lock = nil
	if s.renamed {
		return nil
	}
	return pg.DropDatabase(ctx, s.conn)
}
