package reconcile

import (
	"context"
	"sync"
	"time"

	"github.com/backupkit/backupkit/schema"
	"github.com/backupkit/backupkit/sinks"
)

// Status is one database's health after a tick.
type Status struct {
	Database string
	// LastSuccess is the newest complete backup per storage, derived
	// from storage (so it survives restarts); zero when there is none.
	LastSuccess map[string]time.Time
	// Limit is alert_after, or twice the schedule interval; zero when
	// the database has no schedule.
	Limit   time.Duration
	Overdue bool
	// Failures counts consecutive failed runs; RetryAt is when the
	// daemon tries again after a failure.
	Failures int
	RetryAt  time.Time
}

// Oldest returns the oldest of the per-storage last successes (zero if
// any storage has none).
func (s Status) Oldest() time.Time {
	var oldest time.Time
	first := true
	for _, t := range s.LastSuccess {
		if t.IsZero() {
			return time.Time{}
		}
		if first || t.Before(oldest) {
			oldest, first = t, false
		}
	}
	return oldest
}

// Tick is what one reconcile tick saw and did.
type Tick struct {
	Time       time.Time
	Plan       Plan
	Report     Report
	Unobserved []string
	Statuses   []Status
}

// Daemon runs the reconcile loop.
type Daemon struct {
	Runner   *Runner
	Interval time.Duration
	// MaxBackoff caps the wait before retrying a failing database
	// (default 1h). The wait doubles from Interval with each failure.
	MaxBackoff time.Duration
	// OnTick is called after every tick (health, metrics, overdue).
	OnTick func(ctx context.Context, t Tick)

	mu       sync.Mutex
	started  time.Time
	failures map[string]int
	retryAt  map[string]time.Time
}

// Run ticks until ctx is done. The first tick runs at once.
func (d *Daemon) Run(ctx context.Context) error {
	if d.Interval <= 0 {
		d.Interval = time.Minute
	}
	for {
		d.Tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d.Interval):
		}
	}
}

// Tick observes, plans and applies once.
func (d *Daemon) Tick(ctx context.Context) Tick {
	d.mu.Lock()
	if d.failures == nil {
		d.failures, d.retryAt = map[string]int{}, map[string]time.Time{}
		d.started = d.Runner.now()
	}
	d.mu.Unlock()
	r := d.Runner
	now := r.now()
	obs := Observe(ctx, r.Config, r.Sinks, "")
	skip := map[string]bool{}
	d.mu.Lock()
	for db, at := range d.retryAt {
		if now.Before(at) {
			skip[db] = true
		}
	}
	d.mu.Unlock()
	p := MakePlan(r.Config, obs, now, PlanOptions{RunTimeout: r.RunTimeout, Skip: skip})
	for _, w := range p.Warnings {
		r.Log.Warn(w)
	}
	var rep Report
	if !p.Empty() && ctx.Err() == nil {
		rep = r.Apply(ctx, p)
	}
	t := Tick{Time: now, Plan: p, Report: rep, Unobserved: p.Unobserved}
	t.Statuses = d.statuses(r.Config, obs, rep, r.now())
	if d.OnTick != nil {
		d.OnTick(ctx, t)
	}
	return t
}

func (d *Daemon) statuses(cfg *schema.Config, obs Observation, rep Report, now time.Time) []Status {
	maxBackoff := d.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = time.Hour
	}
	ran := map[string]bool{}
	failed := map[string]bool{}
	succeeded := map[Slot]time.Time{}
	for _, o := range rep.Outcomes {
		if o.Type != ActBackup || o.Skipped != "" {
			continue
		}
		ran[o.Database] = true
		if o.Err != nil {
			failed[o.Database] = true
		} else if _, t, ok := sinks.ParseKey(o.Written); ok {
			succeeded[Slot{o.Database, o.Storage}] = t
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Status
	for i := range cfg.Databases {
		db := &cfg.Databases[i]
		if failed[db.Name] {
			d.failures[db.Name]++
			wait := d.Interval << min(d.failures[db.Name]-1, 20)
			d.retryAt[db.Name] = now.Add(min(wait, maxBackoff))
		} else if ran[db.Name] {
			delete(d.failures, db.Name)
			delete(d.retryAt, db.Name)
		}
		s := Status{Database: db.Name, LastSuccess: map[string]time.Time{}, Failures: d.failures[db.Name], RetryAt: d.retryAt[db.Name]}
		for _, st := range db.Backup.Storage {
			slot := Slot{db.Name, st}
			var last time.Time
			if o := obs[slot]; o != nil && o.Err == nil {
				for _, b := range o.Backups {
					if !b.Time.After(now) {
						last = b.Time
						break
					}
				}
			}
			if t, ok := succeeded[slot]; ok && t.After(last) {
				last = t
			}
			s.LastSuccess[st] = last
		}
		s.Limit = AlertLimit(db, now)
		if s.Limit > 0 {
			// Never backed up: count from the daemon's start.
			oldest := s.Oldest()
			if oldest.IsZero() {
				oldest = d.started
			}
			s.Overdue = now.Sub(oldest) > s.Limit
		}
		out = append(out, s)
	}
	return out
}

// AlertLimit is how long a database may go without a successful backup
// before it is overdue: alert_after, or twice the schedule interval.
func AlertLimit(db *schema.Database, now time.Time) time.Duration {
	if db.Backup.AlertAfter > 0 {
		return db.Backup.AlertAfter
	}
	if iv, ok := Interval(db.Backup.Schedule, db.Backup.Location, now); ok {
		return 2 * iv
	}
	return 0
}
