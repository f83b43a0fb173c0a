package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/fault"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

// Skip says why an action did not run; the string is a stable code for
// JSON output, Text the human reason.
type Skip string

// Skip reasons.
const (
	SkipLocked       Skip = "locked"        // another process holds the database's lock
	SkipTaken        Skip = "taken"         // another process took this backup meanwhile
	SkipBackupFailed Skip = "backup_failed" // a backup of the database failed in this run
	SkipNoLock       Skip = "lock_failed"   // the lock could not be taken (database unreachable)
	SkipRelist       Skip = "relist_failed" // the storage could not be listed again before deleting
	SkipNotPrunable  Skip = "not_prunable"  // a fresh listing no longer prunes it
)

// Text is the human reason.
func (s Skip) Text() string {
	switch s {
	case SkipLocked:
		return "another backupkit process is working on this database"
	case SkipTaken:
		return "not due any more: another process just took this backup"
	case SkipBackupFailed:
		return "a backup of this database failed in this run"
	case SkipNoLock:
		return "the database's lock could not be taken"
	case SkipRelist:
		return "the storage could not be listed again before deleting"
	case SkipNotPrunable:
		return "no longer prunable by a fresh listing (the backup it relied on was not taken)"
	}
	return string(s)
}

// Outcome is what happened to one action: it succeeded (Err nil, Skip
// empty), failed (Err set) or was skipped (Skip set).
type Outcome struct {
	Action
	Written  string // backups: the key written
	Bytes    int64
	SHA256   string
	Duration time.Duration
	Err      error
	Skip     Skip
	// Tables and Rows are what a backup holds, counted from its stream
	// (drills: what was checked).
	Tables int
	Rows   int64
	// Drill is a drill's result.
	Drill *format.DrillResult
}

// Failed reports whether the action failed.
func (o Outcome) Failed() bool { return o.Err != nil }

// Report is the result of applying a plan.
type Report struct {
	Outcomes []Outcome
}

// Failed returns the failed outcomes.
func (r Report) Failed() []Outcome {
	var out []Outcome
	for _, o := range r.Outcomes {
		if o.Err != nil {
			out = append(out, o)
		}
	}
	return out
}

// EventKind is what an Event reports.
type EventKind string

// Event kinds.
const (
	EventStart  EventKind = "start"
	EventBackup EventKind = "backup"
	EventPrune  EventKind = "prune"
	EventDrill  EventKind = "drill"
)

// Event is what the runner tells its observer about a database's run;
// the alerting package turns it into notifications.
type Event struct {
	Kind     EventKind
	Database string
	Success  bool
	Bytes    int64
	Dest     []string // storage:key of each copy written
	Duration time.Duration
	Err      error
	Tables   int   // backups: tables and rows the backup holds
	Rows     int64 //
	// drills: the storage and key drilled, the check that failed
	Storage, Key, Check string
}

// Observer receives run events. Implementations must not block for long
// and must bound their own delivery time.
type Observer interface {
	Event(ctx context.Context, e Event)
}

// Runner applies plans.
type Runner struct {
	Databases  []Database
	Sinks      map[string]sinks.Sink
	Log        *slog.Logger
	Observer   Observer // may be nil
	Parallel   int
	RunTimeout time.Duration
	// Locker serialises writers of a database (nil: no locking). Under
	// the lock, storage is observed again before a backup and before
	// deleting anything.
	Locker Locker
	// Dumper makes the dumps (nil: PipelineDumper).
	Dumper Dumper
	// Progress, when set, returns a function that is told the bytes
	// pg_dump writes for a database's backup as they come, then -1 when
	// the backup ends (for a progress display or progress logs).
	Progress func(db *Database) func(n int)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Version is BackupKit's, for manifests.
	Version string
	// Discoverer lists the servers of whole-server entries (nil: the
	// real one).
	Discoverer Discoverer

	drills drillServers
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Plan surveys the selected entries (discovery, then storage) and plans
// over what it found. Warnings of the survey come first in the plan; a
// failed discovery is listed as unobserved.
func (r *Runner) Plan(ctx context.Context, now time.Time, o PlanOptions) (Plan, Survey) {
	var s Survey
	s.Observe(ctx, r.Databases, r.Sinks, r.Discoverer, o.Database)
	p := MakePlan(s.Databases, s.Obs, now, o)
	p.Warnings = append(s.Warnings, p.Warnings...)
	for _, e := range s.Failed {
		p.Unobserved = append(p.Unobserved, e+" (discovery)")
	}
	return p, s
}

// Apply runs a plan: per database, under its lock, backups first, then
// its prunes (recomputed from a fresh listing, and only if every backup
// of that database succeeded), then cleanups. Up to Parallel databases
// run at once, each bounded by RunTimeout. A whole-server entry's
// globals are backed up before its databases, and pruned after them.
func (r *Runner) Apply(ctx context.Context, p Plan) Report {
	dbs := map[string]*Database{}
	all := p.dbs
	if all == nil {
		all = r.Databases
	}
	for i := range all {
		dbs[all[i].Name] = &all[i]
	}
	var first, then, last []Action
	var backedUp []*Database
	for _, a := range p.Actions {
		if db := dbs[a.Database]; db != nil && a.Type == ActBackup {
			backedUp = append(backedUp, db)
		}
		switch db := dbs[a.Database]; {
		case db != nil && db.Role == RoleGlobals && a.Type == ActBackup:
			first = append(first, a)
		case db != nil && db.Role == RoleGlobals:
			last = append(last, a)
		default:
			then = append(then, a)
		}
	}
	deriveKeys(ctx, backedUp)
	var rep Report
	for _, acts := range [][]Action{first, then, last} {
		rep.Outcomes = append(rep.Outcomes, r.applyActions(ctx, dbs, acts)...)
	}
	return rep
}

// DeriveKeys derives the password keys of the databases a run will back
// up (all when name is ""), one at a time, before anything else: a run
// known to back up (backup, apply --force) calls it before the plan
// surveys storage, so the KDF's memory is never held beside a storage
// client's. Apply derives the keys its backups need in any case.
func (r *Runner) DeriveKeys(ctx context.Context, name string) {
	var dbs []*Database
	for i := range r.Databases {
		if name == "" || r.Databases[i].Name == name {
			dbs = append(dbs, &r.Databases[i])
		}
	}
	deriveKeys(ctx, dbs)
}

// deriveKeys derives the password key of each database, one at a time,
// before any backup's pipeline starts: peak memory is then one KDF or the
// pipelines, never a KDF beside running pipelines nor two KDFs. format
// keeps the keys for the process (one per password); a failure here shows
// again when the backup asks for its key.
func deriveKeys(ctx context.Context, dbs []*Database) {
	for _, d := range dbs {
		if ctx.Err() != nil {
			return
		}
		if d.Backup.Password != "" && d.Backup.Recipients.Len() == 0 {
			format.NewSealer(d.Backup.Password)
		}
	}
}

func (r *Runner) applyActions(ctx context.Context, dbs map[string]*Database, acts []Action) []Outcome {
	byDB := map[string][]Action{}
	var order []string
	for _, a := range acts {
		if _, ok := byDB[a.Database]; !ok {
			order = append(order, a.Database)
		}
		byDB[a.Database] = append(byDB[a.Database], a)
	}
	par := r.Parallel
	if par <= 0 {
		par = 2
	}
	results := make([][]Outcome, len(order))
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, db := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				for _, a := range byDB[db] {
					results[i] = append(results[i], Outcome{Action: a, Err: fmt.Errorf("cancelled before it started: %w", context.Cause(ctx))})
				}
				return
			}
			defer func() { <-sem }()
			results[i] = r.applyDatabase(ctx, dbs[db], byDB[db])
		}()
	}
	wg.Wait()
	var out []Outcome
	for _, res := range results {
		out = append(out, res...)
	}
	return out
}

func (r *Runner) applyDatabase(ctx context.Context, db *Database, acts []Action) []Outcome {
	if db == nil {
		var out []Outcome
		for _, a := range acts {
			out = append(out, Outcome{Action: a, Err: fmt.Errorf("database %s is not in the plan's databases", a.Database)})
		}
		return out
	}
	if r.RunTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, r.RunTimeout, fmt.Errorf("run timeout of %s reached", r.RunTimeout))
		defer cancel()
	}
	var backups, prunes, cleanups, drills []Action
	for _, a := range acts {
		switch a.Type {
		case ActBackup:
			backups = append(backups, a)
		case ActPrune:
			prunes = append(prunes, a)
		case ActCleanup:
			cleanups = append(cleanups, a)
		case ActDrill:
			drills = append(drills, a)
		}
	}
	out := r.applyLocked(ctx, db, backups, prunes, cleanups)
	// Drills run after the lock is released (they read, and take long),
	// one at a time per drill server.
	for _, a := range drills {
		out = append(out, r.drill(ctx, db, a))
	}
	return out
}

// applyLocked runs a database's backups, prunes and cleanups under its
// lock, so two writers on one config never act on each other's half-made
// state.
func (r *Runner) applyLocked(ctx context.Context, db *Database, backups, prunes, cleanups []Action) []Outcome {
	var out []Outcome
	if len(backups)+len(prunes)+len(cleanups) == 0 {
		return nil
	}
	if r.Locker != nil {
		unlock, ok, err := r.Locker.TryLock(ctx, db)
		switch {
		case err != nil:
			err = fmt.Errorf("database %s unreachable, its lock could not be taken: %w", db.Name, err)
			out = append(out, r.failBackups(ctx, db, backups, time.Now(), fault.Mark(fault.Transient, err))...)
			out = append(out, skipAll(prunes, SkipNoLock)...)
			return append(out, skipAll(cleanups, SkipNoLock)...)
		case !ok:
			// Someone else is on it: not a failure, and its run applies
			// retention itself.
			out = append(out, skipAll(backups, SkipLocked)...)
			out = append(out, skipAll(prunes, SkipLocked)...)
			return append(out, skipAll(cleanups, SkipLocked)...)
		}
		defer unlock()
	}
	failed := false
	if len(backups) > 0 {
		res := r.backup(ctx, db, backups)
		for _, o := range res {
			failed = failed || o.Err != nil
		}
		out = append(out, res...)
	}
	out = append(out, r.prune(ctx, db, prunes, failed)...)
	for _, a := range cleanups {
		o := Outcome{Action: a}
		if ctx.Err() != nil {
			o.Err = context.Cause(ctx)
		} else if o.Err = r.Sinks[a.Storage].Cleanup(ctx, sinks.Leftover{Key: a.Key, UploadID: a.UploadID}); o.Err == nil {
			r.Log.Info("cleaned up leftover", "database", db.Name, "storage", a.Storage, "key", a.Key)
		}
		out = append(out, o)
	}
	return out
}

// backup takes one dump and writes it to every storage of the actions.
func (r *Runner) backup(ctx context.Context, db *Database, acts []Action) []Outcome {
	start := time.Now()
	var skipped []Outcome
	if r.Locker != nil && !acts[0].Forced {
		// Re-observe under the lock: another process may have just
		// finished this backup.
		var done []Action
		acts, done = r.stillDue(ctx, db, acts)
		skipped = skipAll(done, SkipTaken)
		if len(acts) == 0 {
			return skipped
		}
	}
	r.event(ctx, Event{Kind: EventStart, Database: db.Name})
	ext := db.Backup.Ext()
	ext.SQL = db.Role == RoleGlobals
	key := format.Key(db.Name, r.now(), ext)
	targets := make([]repo.Target, len(acts))
	names := make([]string, len(acts))
	for i, a := range acts {
		targets[i] = repo.Target{Sink: r.Sinks[a.Storage], Key: key}
		names[i] = a.Storage
	}
	r.Log.Info("backup started", "database", db.Name, "storages", strings.Join(names, ", "), "key", key)
	dumper := r.Dumper
	if dumper == nil {
		dumper = PipelineDumper{}
	}
	opts := db.Backup
	if opts.Password != "" && opts.Recipients.Len() == 0 {
		// The key was derived before the run's pipelines started (see
		// deriveKeys): this takes it from format's keys.
		s, err := format.NewSealer(opts.Password)
		if err != nil {
			return append(skipped, r.failBackups(ctx, db, acts, start, err)...)
		}
		opts.Sealer = s
	}
	var dumped exec.DumpResult
	results, err := repo.FanOut(ctx, targets, func(w io.Writer) error {
		d := *db
		d.Backup = opts
		if r.Progress != nil {
			if p := r.Progress(db); p != nil {
				defer p(-1)
				d.Backup.Dump.Progress = p
			}
		}
		n, err := dumper.Dump(ctx, &d, w)
		dumped = n
		return err
	})
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) && !strings.Contains(err.Error(), cause.Error()) {
			err = fmt.Errorf("%w (%w)", err, cause)
		}
		return append(skipped, r.failBackups(ctx, db, acts, start, err)...)
	}
	m := r.manifest(db, key, start, dumped)
	if dumped.NoRolePasswords {
		r.Log.Warn("globals dumped without role passwords: the backup role is not a superuser (pg_dumpall --no-role-passwords); restored roles will have no password",
			"database", db.Name, "user", db.Conn.User)
	}
	tables, rows := m.TableRows()
	out := make([]Outcome, len(acts))
	var dest []string
	var errs []error
	var total int64
	for i, res := range results {
		out[i] = Outcome{Action: acts[i], Written: key, Bytes: res.Size, SHA256: res.SHA256, Duration: res.Duration, Err: res.Err,
			Tables: tables, Rows: rows}
		if errors.Is(res.Err, repo.ErrNoSidecar) {
			// Data written, sidecar failed: the backup exists.
			r.Log.Warn("backup written without checksum sidecar", "database", db.Name, "storage", acts[i].Storage, "err", res.Err)
			out[i].Err, out[i].SHA256 = nil, ""
		}
		if out[i].Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", acts[i].Storage, res.Err))
			continue
		}
		mi := *m
		mi.StoredBytes, mi.SHA256 = res.Size, res.SHA256
		if err := repo.WriteManifest(context.WithoutCancel(ctx), r.Sinks[acts[i].Storage], &mi); err != nil {
			r.Log.Warn("backup written without its manifest", "database", db.Name, "storage", acts[i].Storage, "err", err)
		}
		total = res.Size
		dest = append(dest, acts[i].Storage+":"+key)
		r.Log.Info("backup complete", "database", db.Name, "storage", acts[i].Storage, "key", key, "bytes", res.Size,
			"dump_bytes", dumped.Bytes, "tables", tables, "rows", rows, "sha256", res.SHA256, "duration", res.Duration.Round(time.Millisecond))
	}
	r.event(ctx, Event{Kind: EventBackup, Database: db.Name, Success: len(errs) == 0, Bytes: total, Dest: dest,
		Duration: time.Since(start), Err: errors.Join(errs...), Tables: tables, Rows: rows})
	return append(skipped, out...)
}

// manifest describes a backup from its dump; stored bytes and checksum
// are filled in per copy.
func (r *Runner) manifest(db *Database, key string, start time.Time, d exec.DumpResult) *format.Manifest {
	m := &format.Manifest{Version: 1, BackupKit: r.Version, Database: db.Name, DBName: db.Conn.Database, Key: key,
		Started: start.UTC(), Finished: time.Now().UTC(), RawBytes: d.Bytes, Compression: db.Backup.Ext().Compression,
		Tables: map[string]int64{}}
	switch {
	case db.Backup.Recipients.Len() > 0:
		m.Encryption, m.Recipients = "age", db.Backup.Recipients.Fingerprints
	case db.Backup.Password != "":
		m.Encryption = "aes-256-gcm chunked, " + format.DefaultKDF()
	}
	if db.Role == RoleGlobals {
		m.Kind, m.NoRolePasswords, m.DBName = "globals", d.NoRolePasswords, ""
	}
	if a := d.Archive; a != nil {
		m.PgDumpVersion, m.ServerVersion, m.ArchiveVersion, m.Tables, m.TableBytes = a.DumpVersion, a.ServerVersion, a.Version, a.Tables(), a.TableBytes()
	}
	return m
}

// failBackups reports every backup action of db as failed with err.
func (r *Runner) failBackups(ctx context.Context, db *Database, acts []Action, start time.Time, err error) []Outcome {
	if len(acts) == 0 {
		return nil
	}
	var out []Outcome
	for _, a := range acts {
		out = append(out, Outcome{Action: a, Err: err, Duration: time.Since(start)})
	}
	r.event(ctx, Event{Kind: EventBackup, Database: db.Name, Err: err, Duration: time.Since(start)})
	return out
}

// prune runs the planned prunes of db once its backups are done, with the
// lock held. A prune relies only on backups that exist: each storage is
// listed afresh and retention recomputed from that listing; a planned
// prune runs only if the fresh computation still prunes it, so a backup
// that was skipped, failed or cancelled never licenses one, and the newest
// complete backup at delete time is never deleted.
func (r *Runner) prune(ctx context.Context, db *Database, prunes []Action, backupFailed bool) []Outcome {
	if backupFailed {
		return skipAll(prunes, SkipBackupFailed)
	}
	var out []Outcome
	allowed := map[string]map[string]repo.Backup{} // storage → prunable backups now
	for _, a := range prunes {
		o := Outcome{Action: a}
		if ctx.Err() != nil {
			o.Err = context.Cause(ctx)
			out = append(out, o)
			continue
		}
		ok, seen := allowed[a.Storage]
		if !seen {
			ok = r.prunableNow(ctx, db, a.Storage)
			allowed[a.Storage] = ok
		}
		b, prunable := ok[a.Key]
		switch {
		case ok == nil:
			o.Skip = SkipRelist
		case !prunable:
			o.Skip = SkipNotPrunable
		default:
			start := time.Now()
			o.Err = repo.Delete(ctx, r.Sinks[a.Storage], b)
			o.Duration = time.Since(start)
			if o.Err == nil {
				r.Log.Info("pruned", "database", db.Name, "storage", a.Storage, "key", a.Key, "reason", a.Reason)
			} else {
				r.event(ctx, Event{Kind: EventPrune, Database: db.Name, Err: o.Err, Dest: []string{a.Storage + ":" + a.Key}})
			}
		}
		out = append(out, o)
	}
	return out
}

// prunableNow lists one storage of db and returns the backups retention
// prunes given what is there now, by key (nil when the listing failed).
func (r *Runner) prunableNow(ctx context.Context, db *Database, storage string) map[string]repo.Backup {
	if db.Role == RoleGlobals {
		return r.globalsPrunableNow(ctx, db, storage)
	}
	ob := observeSlot(ctx, r.Sinks[storage], db.Name)
	if ob.Err != nil {
		return nil
	}
	out := map[string]repo.Backup{}
	usable := repo.Usable(ob.Backups, r.now())
	for _, i := range prunable(db, usable, nil) {
		out[usable[i].Key] = usable[i]
	}
	return out
}

func skipAll(acts []Action, why Skip) []Outcome {
	var out []Outcome
	for _, a := range acts {
		out = append(out, Outcome{Action: a, Skip: why})
	}
	return out
}

// stillDue re-lists the storages of acts and splits them into the ones
// still due and the ones another process has taken meanwhile.
func (r *Runner) stillDue(ctx context.Context, db *Database, acts []Action) (keep, done []Action) {
	now := r.now()
	for _, a := range acts {
		ob := observeSlot(ctx, r.Sinks[a.Storage], db.Name)
		if ob.Err != nil {
			keep = append(keep, a) // cannot tell: the backup is safe to take
			continue
		}
		var newest time.Time
		if b, ok := repo.Newest(ob.Backups, now); ok {
			newest = b.Time
		}
		if ok, _ := due(db.Schedule, db.Location, newest, now); ok {
			keep = append(keep, a)
		} else {
			done = append(done, a)
		}
	}
	return keep, done
}

func (r *Runner) event(ctx context.Context, e Event) {
	if r.Observer != nil {
		r.Observer.Event(context.WithoutCancel(ctx), e)
	}
}

// parseWritten returns the time of the backup an outcome wrote.
func parseWritten(o Outcome) (time.Time, bool) {
	n, ok := format.ParseKey(o.Written)
	return n.Time, ok
}
