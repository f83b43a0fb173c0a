package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

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
	pw     *io.PipeWriter

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
func (s *stage) begin(ctx context.Context, c *Checked) (io.Writer, error) {
	if s == nil || !c.Layers.Encrypted() || c.Layers.Kind != format.KindCustom {
		return nil, nil
	}
	maint := s.o.Target
	maint.Database = "postgres"
	if dropped, err := SweepScratch(ctx, s.o.Target); err == nil && len(dropped) > 0 {
		s.o.log().Info("dropped staging or scratch databases of killed restores and drills", "databases", dropped)
	}
	s.conn = s.o.Target
	s.conn.Database = StagePrefix + randomHex(6)
	// The lock says this restore is alive: a sweep drops staging
	// databases whose lock nobody holds (a killed restore's).
	lock, ok, err := pg.TryLock(ctx, maint, "stage:"+s.conn.Database)
	if err != nil || !ok {
		return nil, fmt.Errorf("staging database: cannot take its lock: %v", err)
	}
	s.lock = lock
	if err := pg.CreateDatabase(ctx, s.conn); err != nil {
		return nil, fmt.Errorf("create staging database %s: %w", s.conn.Database, err)
	}
	args := exec.RestoreArgs{SingleTransaction: s.o.SingleTransaction, Tool: s.o.Tool}
	if args.Tool == "" {
		args.Tool = c.Tool.Path
	}
	if s.o.Jobs > 1 {
		// The data streams in with one job; the indexes and constraints
		// are built with --jobs from the spool once the check has passed.
		args.Sections = []string{"pre-data", "data"}
	}
	var rctx context.Context
	rctx, s.cancel = context.WithCancel(ctx)
	pr, pw := io.Pipe()
	s.pw, s.exited = pw, make(chan struct{})
	go func() {
		s.err = exec.PgRestore(rctx, s.conn, args, "", pr)
		close(s.exited)
		pr.CloseWithError(errStageExited)
	}()
	s.o.log().Info("restoring while checking, into a staging database", "staging", s.conn.Database, "database", s.o.Target.Database)
	return s, nil
}

var errStageExited = errors.New("pg_restore exited")

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

// started says whether begin made a staging database.
func (s *stage) started() bool { return s != nil && s.lock != nil }

// finish ends the staged restore after the check pass. On success the
// stream's end reaches pg_restore and its result is returned; on failure
// pg_restore is stopped before it sees an end. failed says whether
// pg_restore's own failure is the error (not a refusal of the backup).
func (s *stage) finish(checkErr error) (err error, failed bool) {
	select {
	case <-s.exited:
		if s.err != nil {
			return s.err, true // pg_restore failed first
		}
	default:
	}
	if checkErr != nil {
		s.pw.CloseWithError(checkErr)
		s.cancel()
		<-s.exited
		return checkErr, false
	}
	s.pw.Close()
	<-s.exited
	s.cancel()
	return s.err, s.err != nil
}

// complete builds what the streamed restore left for later (indexes and
// constraints with --jobs, from the spool) and renames the staging
// database to the target.
func (s *stage) complete(ctx context.Context, c Checked, spool *os.File) error {
	if s.o.Jobs > 1 {
		if spool == nil {
			return errors.New("--jobs needs the spool, which is gone")
		}
		args := exec.RestoreArgs{Jobs: s.o.Jobs, Tool: s.o.Tool, Sections: []string{"post-data"}}
		if args.Tool == "" {
			args.Tool = c.Tool.Path
		}
		if err := exec.PgRestore(ctx, s.conn, args, spool.Name(), nil); err != nil {
			return err
		}
	}
	if err := pg.RenameDatabase(ctx, s.conn, s.o.Target.Database); err != nil {
		return fmt.Errorf("rename staging database %s to %s: %w", s.conn.Database, s.o.Target.Database, err)
	}
	s.renamed = true
	return nil
}

// drop removes the staging database (when it was not renamed) and
// releases its lock; later calls do nothing.
func (s *stage) drop(ctx context.Context) error {
	if !s.started() {
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
