package reconcile

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
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

	// Discover, on a configured entry, makes it a whole server: each
	// tick its databases are listed and every match becomes a Database of
	// its own (Survey), named "<entry>.<encoded datname>". Conn then names
	// the database discovery connects to.
	Discover *Discover
	// Globals: every backup cycle of the entry also stores the server's
	// roles and tablespaces (pg_dumpall --globals-only) as
	// "<entry>._globals".
	Globals bool

	// Set by Survey on the databases it makes:
	//
	// Entry is the configured entry a discovered database or the globals
	// belong to ("" for a database configured by name).
	Entry string
	// Role is what the Database is (a database, or an entry's globals).
	Role Role
	// Gone marks a discovered database no longer on the server (or no
	// longer matched): its backups are kept, none are taken; Why says
	// which.
	Gone bool
	Why  string
	// Major is the server's major version, when discovery saw it.
	Major int
	// Home is the entry's own database on the server (where discovery
	// connects, globals are dumped from and the shared locks live).
	Home string
}

// Role is what a Database stands for.
type Role int

// Roles of a Database.
const (
	RoleDatabase Role = iota // one database, dumped with pg_dump
	RoleGlobals              // a server's globals, dumped with pg_dumpall
)

// Selected reports whether the selection only ("" = all; an entry name
// selects all of it) includes db. An entry's globals go with any of its
// databases.
func (db *Database) Selected(only string) bool {
	switch {
	case only == "" || db.Name == only:
		return true
	case db.Entry == "":
		return false
	case db.Entry == only:
		return true
	}
	return db.Role == RoleGlobals && strings.HasPrefix(only, db.Entry+".")
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
	tool := "pg_dump"
	if db.Role == RoleGlobals {
		tool = "pg_dumpall"
		o.Dump.Globals = true
		su, err := pg.Superuser(ctx, db.Conn)
		if err != nil {
			return exec.DumpResult{}, fmt.Errorf("checking the backup role's rights: %w", err)
		}
		// Role passwords are in pg_authid, which only a superuser reads.
		o.Dump.NoRolePasswords = !su
	}
	if o.Dump.Tool == "" {
		// The client of the server's major, else the lowest newer one.
		var c exec.Client
		var err error
		if db.Major > 0 {
			c, err = exec.Pick(exec.Clients(ctx, tool, o.Dump.BinDir), tool, db.Major, 0)
		} else {
			c, _, err = exec.PickFor(ctx, tool, o.Dump.BinDir, db.Conn, 0)
		}
		if err != nil {
			return exec.DumpResult{}, err
		}
		o.Dump.Tool = c.Path
	}
	res, err := exec.Backup(ctx, o, w)
	if err != nil || db.Role == RoleGlobals || res.Archive == nil || len(res.Archive.Tables()) > 0 {
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
// keyed by the database's name in the config. A configured database is
// locked on itself; the databases and globals of a discovered server
// share one session on the entry's database, so a server of 200
// databases is not 200 lock connections. The zero value is ready; Close
// ends the shared sessions.
type AdvisoryLocker struct {
	mu       sync.Mutex
	sessions map[pg.Conn]*pg.Session
}

// TryLock implements Locker.
func (a *AdvisoryLocker) TryLock(ctx context.Context, db *Database) (func(), bool, error) {
	if db.Entry != "" {
		return a.shared(ctx, db)
	}
	l, ok, err := pg.TryLock(ctx, db.Conn, db.Name)
	if err != nil || !ok {
		return nil, ok, err
	}
	return func() { l.Release(context.WithoutCancel(ctx)) }, true, nil
}

func (a *AdvisoryLocker) shared(ctx context.Context, db *Database) (func(), bool, error) {
	at := db.Conn
	at.Database = db.Home
	a.mu.Lock()
	s := a.sessions[at]
	if s == nil || s.Broken() {
		var err error
		if s, err = pg.OpenSession(ctx, at); err != nil {
			a.mu.Unlock()
			return nil, false, err
		}
		if a.sessions == nil {
			a.sessions = map[pg.Conn]*pg.Session{}
		}
		a.sessions[at] = s
	}
	a.mu.Unlock()
	ok, err := s.TryLock(ctx, db.Name)
	if err != nil || !ok {
		return nil, ok, err
	}
	return func() { s.Unlock(context.WithoutCancel(ctx), db.Name) }, true, nil
}

// Close ends the shared lock sessions (releasing what they hold).
func (a *AdvisoryLocker) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, s := range a.sessions {
		s.Close(context.Background())
		delete(a.sessions, k)
	}
}
