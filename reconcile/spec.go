package reconcile

import (
	"context"
	"io"
	"time"

	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/pg"
)

// Database is what reconcile needs to know of one configured database:
// its desired state and how to back it up.
type Database struct {
	Name     string
	Storages []string
	// Schedule is a 5-field cron expression (or @daily…) evaluated in
	// Location; empty means on demand only.
	Schedule string
	Location *time.Location
	// Retention nil keeps everything.
	Retention *Retention
	// AlertAfter is how long the database may go without a successful
	// backup; zero means twice the schedule interval.
	AlertAfter time.Duration
	// Conn is where the advisory lock is taken.
	Conn pg.Conn
	// Backup is how the default Dumper dumps it.
	Backup exec.BackupOptions
}

// Retention is a restic-style set of keep rules.
type Retention struct {
	KeepLast, KeepHourly, KeepDaily, KeepWeekly, KeepMonthly, KeepYearly int
}

// Dumper writes one backup of a database into w and returns the bytes
// pg_dump produced.
type Dumper interface {
	Dump(ctx context.Context, db *Database, w io.Writer) (int64, error)
}

// Locker serialises the writers of one database: TryLock does not wait;
// ok is false when another process holds the lock.
type Locker interface {
	TryLock(ctx context.Context, db *Database) (unlock func(), ok bool, err error)
}

// PipelineDumper is the real Dumper: pg_dump → compression → encryption.
type PipelineDumper struct{}

// Dump implements Dumper.
func (PipelineDumper) Dump(ctx context.Context, db *Database, w io.Writer) (int64, error) {
	return exec.Backup(ctx, db.Backup, w)
}

// AdvisoryLocker is the real Locker: a PostgreSQL session advisory lock
// on the database itself, keyed by the database's name in the config.
type AdvisoryLocker struct{}

// TryLock implements Locker.
func (AdvisoryLocker) TryLock(ctx context.Context, db *Database) (func(), bool, error) {
	l, ok, err := pg.TryLock(ctx, db.Conn, db.Name)
	if err != nil || !ok {
		return nil, ok, err
	}
	return func() { l.Release(context.WithoutCancel(ctx)) }, true, nil
}
