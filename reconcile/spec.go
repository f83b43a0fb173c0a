package reconcile

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/pg"
	"github.com/backupkit/backupkit/restore"
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
	// Drill, when set, restores its backups into a scratch database on a
	// schedule and checks them.
	Drill *Drill
}

// Drill is how and when a database's backups are drilled.
type Drill struct {
	Schedule    string // cron in the database's Location; "" = on demand
	Server      pg.Conn
	MaxDuration time.Duration
	Probes      []restore.Probe
	// Check is what a backup of the database must look like (password,
	// encryption expected).
	Check restore.CheckOptions
}

// Retention is a restic-style set of keep rules.
type Retention struct {
	KeepLast, KeepHourly, KeepDaily, KeepWeekly, KeepMonthly, KeepYearly int
}

// Dumper writes one backup of a database into w and says what it was:
// pg_dump's bytes and the walk of its archive (nil when not walked).
type Dumper interface {
	Dump(ctx context.Context, db *Database, w io.Writer) (exec.DumpResult, error)
}

// Locker serialises the writers of one database: TryLock does not wait;
// ok is false when another process holds the lock.
type Locker interface {
	TryLock(ctx context.Context, db *Database) (unlock func(), ok bool, err error)
}

// PipelineDumper is the real Dumper: pg_dump → compression → encryption.
type PipelineDumper struct{}

// Dump implements Dumper. A dump with no table data of a database that
// has tables is a failure, not a backup.
func (PipelineDumper) Dump(ctx context.Context, db *Database, w io.Writer) (exec.DumpResult, error) {
	o := db.Backup
	if o.Dump.Tool == "" {
		// The pg_dump of the server's major, else the lowest newer one.
		c, _, err := exec.PickFor(ctx, "pg_dump", o.Dump.BinDir, db.Conn, 0)
		if err != nil {
			return exec.DumpResult{}, err
		}
		o.Dump.Tool = c.Path
	}
	res, err := exec.Backup(ctx, o, w)
	if err != nil || res.Archive == nil || len(res.Archive.Tables()) > 0 {
		return res, err
	}
	n, err := pg.CountTables(ctx, db.Conn)
	if err != nil {
		return res, fmt.Errorf("pg_dump wrote no table data; counting the database's tables failed: %w", err)
	}
	if n > 0 {
		return res, fmt.Errorf("pg_dump wrote no table data, but %s has %d table(s): not a backup of it", db.Conn.Database, n)
	}
	return res, nil
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
