package reconcile

import (
	"context"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/backupkit/backupkit/repo"
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

// MaxBackoff caps the wait before a failing database is tried again.
const MaxBackoff = time.Hour

// Daemon runs the reconcile loop.
type Daemon struct {
	Runner   *Runner
	Interval time.Duration
	// Jitter spreads retries of failing databases (a fraction of the
	// wait, default 0.2), so several daemons do not retry in step.
	// Negative means none.
	Jitter float64
	// OnTick is called after every tick (health, metrics, overdue).
	OnTick func(ctx context.Context, t Tick)

	mu      sync.Mutex
	started time.Time
	backoff map[string]*backoff.ExponentialBackOff
	retryAt map[string]time.Time
}

// Run ticks until ctx is done. The first tick runs at once.
func (d *Daemon) Run(ctx context.Context) {
	if d.Interval <= 0 {
		d.Interval = time.Minute
	}
	for {
		d.Tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.Interval):
		}
	}
}

// Tick observes, plans and applies once.
func (d *Daemon) Tick(ctx context.Context) Tick {
	r := d.Runner
	now := r.now()
	d.mu.Lock()
	if d.backoff == nil {
		d.backoff, d.retryAt = map[string]*backoff.ExponentialBackOff{}, map[string]time.Time{}
		d.started = now
	}
	skip := map[string]bool{}
	for db, at := range d.retryAt {
		if now.Before(at) {
			skip[db] = true
		}
	}
	d.mu.Unlock()
	p, survey := r.Plan(ctx, now, PlanOptions{RunTimeout: r.RunTimeout, Skip: skip})
	var rep Report
	if !p.Empty() && ctx.Err() == nil {
		rep = r.Apply(ctx, p)
	}
	t := Tick{Time: now, Plan: p, Report: rep, Unobserved: p.Unobserved}
	t.Statuses = d.statuses(survey.Databases, survey.Obs, rep, r.now())
	if d.OnTick != nil {
		d.OnTick(ctx, t)
	}
	return t
}

// policy is the one backoff policy: doubling from the interval, with
// jitter, at most MaxBackoff.
func (d *Daemon) policy() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = d.Interval
	b.Multiplier = 2
	b.RandomizationFactor = 0.2
	if d.Jitter != 0 {
		b.RandomizationFactor = max(d.Jitter, 0)
	}
	b.MaxInterval = MaxBackoff
	b.MaxElapsedTime = 0 // never give up
	b.Reset()
	return b
}

func (d *Daemon) statuses(dbs []Database, obs Observation, rep Report, now time.Time) []Status {
	ran := map[string]bool{}
	failed := map[string]bool{}
	succeeded := map[Slot]time.Time{}
	for _, o := range rep.Outcomes {
		if o.Type != ActBackup || o.Skip != "" {
			continue
		}
		ran[o.Database] = true
		if o.Err != nil {
			failed[o.Database] = true
		} else if b, ok := parseWritten(o); ok {
			succeeded[Slot{o.Database, o.Storage}] = b
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Status
	for i := range dbs {
		db := &dbs[i]
		if failed[db.Name] {
			b := d.backoff[db.Name]
			if b == nil {
				b = d.policy()
				d.backoff[db.Name] = b
			}
			d.retryAt[db.Name] = now.Add(b.NextBackOff())
		} else if ran[db.Name] {
			delete(d.backoff, db.Name)
			delete(d.retryAt, db.Name)
		}
		s := Status{Database: db.Name, LastSuccess: map[string]time.Time{}}
		for _, st := range db.Storages {
			slot := Slot{db.Name, st}
			var last time.Time
			if o := obs[slot]; o != nil && o.Err == nil {
				if b, ok := repo.Newest(o.Backups, now); ok {
					last = b.Time
				}
			}
			if t, ok := succeeded[slot]; ok && t.After(last) {
				last = t
			}
			s.LastSuccess[st] = last
		}
		if !db.Gone {
			s.Limit = AlertLimit(db, now)
		}
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
func AlertLimit(db *Database, now time.Time) time.Duration {
	if db.AlertAfter > 0 {
		return db.AlertAfter
	}
	if iv, ok := Interval(db.Schedule, db.Location, now); ok {
		return 2 * iv
	}
	return 0
}
