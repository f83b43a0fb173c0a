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
	"github.com/backupkit/backupkit/schema"
	"github.com/backupkit/backupkit/sinks"
)

// Outcome is what happened to one action.
type Outcome struct {
	Action
	Written  string        `json:"written,omitempty"` // backups: the key written
	Bytes    int64         `json:"bytes,omitempty"`
	SHA256   string        `json:"sha256,omitempty"`
	Duration time.Duration `json:"duration"`
	Err      error         `json:"-"`
	Error    string        `json:"error,omitempty"`
	Skipped  string        `json:"skipped,omitempty"` // why it did not run
}

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

// Event is what the runner tells its observer about a database's run;
// the alerting package turns it into notifications.
type Event struct {
	Kind     string // "start", "backup", "prune"
	Database string
	Success  bool
	Bytes    int64
	Dest     []string // storage:key of each copy written
	Duration time.Duration
	Err      error
}

// Observer receives run events. Implementations must not block for long
// and must bound their own delivery time.
type Observer interface {
	Event(ctx context.Context, e Event)
}

// Runner applies plans.
type Runner struct {
	Config     *schema.Config
	Sinks      map[string]sinks.Sink
	Log        *slog.Logger
	Observer   Observer // may be nil
	Parallel   int
	RunTimeout time.Duration
	// Lock takes a PostgreSQL advisory lock per database backup and
	// re-observes storage once it is held, so several daemons over one
	// config never take the same backup twice.
	Lock bool
	// Progress, when set, is told the bytes of a database's backup as
	// they are written, then -1 when it ends (for a progress display).
	Progress func(db string) func(n int)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Apply runs a plan: per database, backups first, then — only if every
// backup of that database succeeded — its prunes, then cleanups. Up to
// Parallel databases run at once, each bounded by RunTimeout.
func (r *Runner) Apply(ctx context.Context, p Plan) Report {
	byDB := map[string][]Action{}
	var order []string
	for _, a := range p.Actions {
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
					results[i] = append(results[i], Outcome{Action: a, Err: ctx.Err(), Error: "cancelled before it started"})
				}
				return
			}
			defer func() { <-sem }()
			results[i] = r.applyDatabase(ctx, db, byDB[db])
		}()
	}
	wg.Wait()
	var rep Report
	for _, res := range results {
		rep.Outcomes = append(rep.Outcomes, res...)
	}
	for i := range rep.Outcomes {
		if rep.Outcomes[i].Err != nil {
			rep.Outcomes[i].Error = rep.Outcomes[i].Err.Error()
		}
	}
	return rep
}

func (r *Runner) applyDatabase(ctx context.Context, name string, acts []Action) []Outcome {
	if r.RunTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, r.RunTimeout, fmt.Errorf("run timeout of %s reached", r.RunTimeout))
		defer cancel()
	}
	db := r.Config.Database(name)
	var backups, prunes, cleanups []Action
	for _, a := range acts {
		switch a.Type {
		case ActBackup:
			backups = append(backups, a)
		case ActPrune:
			prunes = append(prunes, a)
		case ActCleanup:
			cleanups = append(cleanups, a)
		}
	}
	var out []Outcome
	if r.Lock {
		// Backups, prunes and cleanups run under the database's advisory
		// lock, so two writers on one config never act on each other's
		// half-made state.
		lock, ok, err := exec.TryLock(ctx, ConnOf(db), db.Name)
		switch {
		case err != nil:
			err = fmt.Errorf("advisory lock: %w", err)
			if len(backups) > 0 {
				out = append(out, r.failBackups(ctx, db, backups, time.Now(), err)...)
			}
			out = append(out, skipAll(prunes, "skipped: cannot take the database's lock to prune safely")...)
			out = append(out, skipAll(cleanups, "skipped: cannot take the database's lock")...)
			prunes, backups, cleanups = nil, nil, nil
		case !ok:
			// Someone else is on it: not a failure, and its run applies
			// retention itself.
			out = append(out, skipAll(backups, errAlreadyTaken.Error())...)
			out = append(out, skipAll(prunes, "skipped: "+errAlreadyTaken.Error())...)
			out = append(out, skipAll(cleanups, "skipped: "+errAlreadyTaken.Error())...)
			prunes, backups, cleanups = nil, nil, nil
		default:
			defer lock.Release(context.WithoutCancel(ctx))
		}
	}
	failed := false
	if len(backups) > 0 {
		res := r.backup(ctx, db, backups)
		for _, o := range res {
			if o.Err != nil {
				failed = true
			}
		}
		out = append(out, res...)
	}
	out = append(out, r.prune(ctx, db, prunes, failed)...)
	for _, a := range cleanups {
		o := Outcome{Action: a}
		if ctx.Err() != nil {
			o.Err = context.Cause(ctx)
		} else {
			o.Err = r.Sinks[a.Storage].Cleanup(ctx, sinks.Leftover{Key: a.Key, UploadID: a.UploadID})
			if o.Err == nil {
				r.Log.Info("cleaned up leftover", "database", name, "storage", a.Storage, "key", a.Key)
			}
		}
		out = append(out, o)
	}
	return out
}

// errAlreadyTaken means another process took this backup meanwhile.
var errAlreadyTaken = errors.New("another backupkit process is backing up this database")

// backup takes one dump and writes it to every storage of the actions.
func (r *Runner) backup(ctx context.Context, db *schema.Database, acts []Action) []Outcome {
	start := time.Now()
	var skipped []Outcome
	fail := func(err error) []Outcome { return append(skipped, r.failBackups(ctx, db, acts, start, err)...) }
	if r.Lock && acts[0].Reason != "forced" {
		// Re-observe under the lock: another process may have just
		// finished this backup.
		var done []Action
		acts, done = r.stillDue(ctx, db, acts)
		skipped = skipAll(done, "skipped: not due any more (another process just took this backup)")
		if len(acts) == 0 {
			return skipped
		}
	}
	r.event(ctx, Event{Kind: "start", Database: db.Name})
	opts := BackupOptions(db)
	key := sinks.Key(db.Name, r.now(), opts.Ext())
	targets := make([]sinks.Target, len(acts))
	for i, a := range acts {
		targets[i] = sinks.Target{Sink: r.Sinks[a.Storage], Key: key}
	}
	r.Log.Info("backup started", "database", db.Name, "storages", storagesOf(acts), "key", key)
	var dumped int64
	results, err := sinks.FanOut(ctx, targets, func(w io.Writer) error {
		if r.Progress != nil {
			if p := r.Progress(db.Name); p != nil {
				defer p(-1)
				w = progressWriter{w, p}
			}
		}
		n, err := exec.Backup(ctx, opts, w)
		dumped = n
		return err
	})
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !strings.Contains(err.Error(), cause.Error()) {
			err = fmt.Errorf("%w (%w)", err, cause)
		}
		return fail(err)
	}
	out := make([]Outcome, len(acts))
	var dest []string
	var errs []error
	var total int64
	for i, res := range results {
		out[i] = Outcome{Action: acts[i], Written: key, Bytes: res.Size, SHA256: res.SHA256, Duration: res.Duration, Err: res.Err}
		if res.Err != nil && res.Size > 0 {
			// Data written, sidecar failed: the backup exists.
			r.Log.Warn("backup written without checksum sidecar", "database", db.Name, "storage", acts[i].Storage, "err", res.Err)
			out[i].Err = nil
		}
		if out[i].Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", acts[i].Storage, res.Err))
			r.Log.Error("backup copy failed", "database", db.Name, "storage", acts[i].Storage, "err", res.Err)
			continue
		}
		total = res.Size
		dest = append(dest, acts[i].Storage+":"+key)
		r.Log.Info("backup complete", "database", db.Name, "storage", acts[i].Storage, "key", key,
			"bytes", res.Size, "dump_bytes", dumped, "sha256", res.SHA256, "duration", res.Duration.Round(time.Millisecond))
	}
	r.event(ctx, Event{Kind: "backup", Database: db.Name, Success: len(errs) == 0, Bytes: total, Dest: dest,
		Duration: time.Since(start), Err: errors.Join(errs...)})
	return append(skipped, out...)
}

// failBackups reports every backup action of db as failed with err.
func (r *Runner) failBackups(ctx context.Context, db *schema.Database, acts []Action, start time.Time, err error) []Outcome {
	var out []Outcome
	for _, a := range acts {
		out = append(out, Outcome{Action: a, Err: err, Duration: time.Since(start)})
	}
	r.Log.Error("backup failed", "database", db.Name, "err", err)
	r.event(ctx, Event{Kind: "backup", Database: db.Name, Err: err, Duration: time.Since(start)})
	return out
}

// prune runs the planned prunes of db once its backups are done, with the
// lock held. A prune relies only on backups that exist: each storage is
// listed afresh and retention recomputed from that listing; a planned
// prune runs only if the fresh computation still prunes it, so a backup
// that was skipped, failed or cancelled never licenses one, and the newest
// complete backup at delete time is never deleted.
func (r *Runner) prune(ctx context.Context, db *schema.Database, prunes []Action, backupFailed bool) []Outcome {
	if backupFailed {
		return skipAll(prunes, "skipped: a backup of "+db.Name+" failed in this run")
	}
	var out []Outcome
	allowed := map[string]map[string]bool{} // storage → prunable keys now
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
		if ok == nil {
			o.Skipped = "skipped: the storage could not be listed again before deleting"
			out = append(out, o)
			continue
		}
		if !ok[a.Key] {
			o.Skipped = "skipped: no longer prunable by a fresh listing (the backup it relied on was not taken)"
			out = append(out, o)
			continue
		}
		start := time.Now()
		o.Err = sinks.DeleteBackups(ctx, r.Sinks[a.Storage], a.Key)
		o.Duration = time.Since(start)
		if o.Err == nil {
			r.Log.Info("pruned", "database", db.Name, "storage", a.Storage, "key", a.Key, "reason", a.Reason)
		} else {
			r.Log.Error("prune failed", "database", db.Name, "storage", a.Storage, "key", a.Key, "err", o.Err)
			r.event(ctx, Event{Kind: "prune", Database: db.Name, Err: o.Err, Dest: []string{a.Storage + ":" + a.Key}})
		}
		out = append(out, o)
	}
	return out
}

// prunableNow lists one storage of db and returns the keys retention
// prunes given what is there now (nil when the listing failed).
func (r *Runner) prunableNow(ctx context.Context, db *schema.Database, storage string) map[string]bool {
	ob := observeSlot(ctx, r.Sinks[storage], db.Name)
	if ob.Err != nil {
		r.Log.Warn("listing before prune failed; nothing pruned", "database", db.Name, "storage", storage, "err", ob.Err)
		return nil
	}
	keys := map[string]bool{}
	for _, b := range prunable(*db, usable(ob.Backups, r.now()), nil) {
		keys[b.Key] = true
	}
	return keys
}

func skipAll(acts []Action, why string) []Outcome {
	var out []Outcome
	for _, a := range acts {
		out = append(out, Outcome{Action: a, Skipped: why})
	}
	return out
}

// stillDue re-lists the storages of acts and splits them into the ones
// still due and the ones another process has taken meanwhile.
func (r *Runner) stillDue(ctx context.Context, db *schema.Database, acts []Action) (keep, done []Action) {
	for _, a := range acts {
		ob := observeSlot(ctx, r.Sinks[a.Storage], db.Name)
		if ob.Err != nil {
			keep = append(keep, a) // cannot tell: the backup is safe to take
			continue
		}
		var newest time.Time
		now := r.now()
		for _, b := range ob.Backups {
			if !b.Time.After(now) {
				newest = b.Time
				break
			}
		}
		if ok, _ := due(db.Backup.Schedule, db.Backup.Location, newest, now); ok {
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

type progressWriter struct {
	w io.Writer
	f func(int)
}

func (p progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.f(n)
	return n, err
}

// ConnOf returns the pipeline's connection settings for a database.
func ConnOf(db *schema.Database) exec.Conn {
	c := db.Connection
	return exec.Conn{Host: c.Host, Port: c.Port, Database: c.Database, User: c.User, Password: c.Password.Reveal(), SSLMode: c.SSLMode}
}

// BackupOptions returns the pipeline options for a database.
func BackupOptions(db *schema.Database) exec.BackupOptions {
	o := exec.BackupOptions{Conn: ConnOf(db), Compression: exec.Compression(db.Backup.Compression), Level: db.Backup.CompressionLevel}
	if db.Backup.Encrypted() {
		o.Password = db.Backup.Encryption.Password.Reveal()
	}
	return o
}

// Expected returns the layers a backup of db should have by its config.
func Expected(db *schema.Database) exec.Layers {
	c := exec.Compression(db.Backup.Compression)
	if c == "" {
		c = exec.None
	}
	return exec.Layers{Encrypted: db.Backup.Encrypted(), Compression: c, Kind: exec.KindCustom}
}
