package reconcile

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/backupkit/backupkit/internal/populate"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

// ActionType is what an action does.
type ActionType string

// Action types.
const (
	ActBackup  ActionType = "backup"
	ActPrune   ActionType = "prune"
	ActCleanup ActionType = "cleanup"
	ActDrill   ActionType = "drill"
)

// Action is one step of a plan.
type Action struct {
	Type     ActionType
	Database string
	Storage  string
	Key      string // prunes and cleanups
	Reason   string // for people
	// Code is the reason as a stable word for machines: "no_backup",
	// "slot_due", "forced" (backups), "retention" (prunes), "leftover"
	// (cleanups).
	Code     string
	UploadID string // S3 cleanups
	// Forced marks a backup taken on demand (backup, apply --force),
	// not because a slot was due.
	Forced bool
	// Conditional marks a prune that only the planned backup of its
	// database and storage licenses: apply runs it after that backup
	// succeeds, and drops it otherwise.
	Conditional bool
}

// Plan is what apply will do: plain data, made by MakePlan and rendered
// by `plan` as text or JSON.
type Plan struct {
	Now      time.Time
	Actions  []Action
	Warnings []string
	// Unobserved lists "database/storage" pairs whose listing failed:
	// nothing is planned for them.
	Unobserved []string
	// Next says, for each database and storage planned, when its next
	// backup is due (zero: on demand only), so a plan with nothing to do
	// can say when there will be.
	Next []Next

	dbs   []Database     // what the plan was made over (for Apply)
	index map[string]int // dbs by name
}

// Next is when a slot's next backup is due.
type Next struct {
	Slot
	Newest time.Time // newest usable backup (zero: none)
	Due    time.Time // zero: no schedule
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Actions) == 0 }

// Count returns the number of actions of a type.
func (p Plan) Count(t ActionType) int {
	n := 0
	for _, a := range p.Actions {
		if a.Type == t {
			n++
		}
	}
	return n
}

// Summary is the one-line count: "2 to back up, 3 to prune, 0 to clean
// up" (and drills, when any).
func (p Plan) Summary() string {
	s := fmt.Sprintf("%d to back up, %d to prune, %d to clean up", p.Count(ActBackup), p.Count(ActPrune), p.Count(ActCleanup))
	if n := p.Count(ActDrill); n > 0 {
		s += fmt.Sprintf(", %d to drill", n)
	}
	return s
}

// Slot is one (database, storage) pair.
type Slot struct{ Database, Storage string }

func (s Slot) String() string { return s.Database + "/" + s.Storage }

// Observed is what one storage holds for one database.
type Observed struct {
	Backups   []repo.Backup // newest first
	Leftovers []sinks.Leftover
	Err       error // listing failed: the slot is unobserved
}

// Observation is the observed state of every slot.
type Observation map[Slot]*Observed

// Observe lists every storage each selected database writes to, at most
// a few at once. A failed listing marks that slot unobserved.
func Observe(ctx context.Context, dbs []Database, stores map[string]sinks.Sink, only string) Observation {
	obs := Observation{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, db := range dbs {
		if only != "" && db.Name != only {
			continue
		}
		for _, st := range db.Storages {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				o := observeSlot(ctx, stores[st], db.Name)
				mu.Lock()
				obs[Slot{db.Name, st}] = o
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return obs
}

func observeSlot(ctx context.Context, s sinks.Sink, db string) *Observed {
	if s == nil {
		return &Observed{Err: fmt.Errorf("storage is not configured")}
	}
	b, lo, err := repo.Observe(ctx, s, db)
	if err != nil {
		return &Observed{Err: err}
	}
	return &Observed{Backups: b, Leftovers: lo}
}

// PlanOptions narrow or force a plan.
type PlanOptions struct {
	Database   string        // only this database ("" = all)
	Force      bool          // back up even when not due
	RunTimeout time.Duration // leftovers older than this are cleaned up
	// Skip lists databases not to back up now (daemon backoff).
	Skip map[string]bool
}

// DefaultCleanupAge is how old a leftover must be before it is cleaned
// up when no run timeout bounds the writer that left it.
const DefaultCleanupAge = 6 * time.Hour

func cleanupAge(o PlanOptions) time.Duration {
	if o.RunTimeout > 0 {
		return o.RunTimeout
	}
	return DefaultCleanupAge
}

// MakePlan is the pure planning function of (databases, observation, now).
func MakePlan(dbs []Database, obs Observation, now time.Time, o PlanOptions) Plan {
	p := Plan{Now: now.UTC(), Actions: []Action{}}
	cleanupAge := cleanupAge(o)
	p.dbs, p.index = dbs, make(map[string]int, len(dbs))
	for i := range dbs {
		p.index[dbs[i].Name] = i
	}
	var globals []*Database
	for i := range dbs {
		db := &dbs[i]
		if !db.Selected(o.Database) {
			continue
		}
		if db.Role == RoleGlobals {
			globals = append(globals, db) // after its databases: see planGlobals
			continue
		}
		if db.Gone {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s: %s; its backups are kept (the newest forever), none are taken", db.Show(), db.Why))
		}
		var backups, prunes, cleanups, drills []Action
		for _, st := range db.Storages {
			slot := Slot{db.Name, st}
			ob := obs[slot]
			if ob == nil || ob.Err != nil {
				msg := "not observed"
				if ob != nil {
					msg = ob.Err.Error()
				}
				p.Unobserved = append(p.Unobserved, slot.String())
				p.Warnings = append(p.Warnings, fmt.Sprintf("%s: storage not observed, nothing can be decided for it: %s", slot, msg))
				continue
			}
			// Backups from the future (clock skew) are never pruned and
			// do not count for the schedule.
			current := repo.Usable(ob.Backups, now)
			for _, b := range ob.Backups {
				if b.Time.After(now) {
					p.Warnings = append(p.Warnings, fmt.Sprintf("%s: backup %s is dated in the future (clock skew?); it is kept", slot, b.Key))
				}
			}
			var newest time.Time
			if len(current) > 0 {
				newest = current[0].Time
			}
			isDue, reason := due(db.Schedule, db.Location, newest, now)
			next := Next{Slot: slot, Newest: newest}
			if !newest.IsZero() {
				next.Due, _ = nextSlot(db.Schedule, db.Location, newest)
			}
			p.Next = append(p.Next, next)
			if o.Force {
				isDue, reason = true, "forced"
			}
			if o.Skip[db.Name] && !o.Force || db.Gone {
				isDue = false
			}
			if isDue {
				code := "slot_due"
				switch {
				case o.Force:
					code = "forced"
				case newest.IsZero():
					code = "no_backup"
				}
				backups = append(backups, Action{Type: ActBackup, Database: db.Name, Storage: st, Reason: reason, Code: code, Forced: o.Force})
			}
			prunes = planPrunes(prunes, db, st, current, isDue, now)
			if a, ok := planDrill(db, st, current, now); ok && !db.Gone {
				drills = append(drills, a)
			}
			for _, lo := range ob.Leftovers {
				if now.Sub(lo.Started) > cleanupAge {
					cleanups = append(cleanups, Action{Type: ActCleanup, Database: db.Name, Storage: st, Key: lo.Key, UploadID: lo.UploadID, Code: "leftover",
						Reason: fmt.Sprintf("unfinished write from %s, older than %s", fmtTime(lo.Started.UTC()), cleanupAge)})
				}
			}
		}
		if len(p.Actions) == 0 {
			// 100,000 prunes are not copied: the backups go in front of
			// them, in the room planPrunes left.
			p.Actions = slices.Insert(prunes, 0, backups...)
		} else {
			p.Actions = append(p.Actions, backups...)
			p.Actions = append(p.Actions, prunes...)
		}
		p.Actions = append(p.Actions, cleanups...)
		p.Actions = append(p.Actions, drills...)
	}
	for _, g := range globals {
		planGlobals(&p, g, obs, now, o)
	}
	return p
}

// planDrill decides whether a drill of the slot's newest backup is due:
// when the next drill slot after the slot's last drill (of any backup)
// has come, or it was never drilled.
func planDrill(db *Database, st string, current []repo.Backup, now time.Time) (Action, bool) {
	if db.Drill == nil || db.Drill.Schedule == "" || len(current) == 0 {
		return Action{}, false
	}
	var last time.Time
	for _, b := range current {
		if d, ok := b.LastDrill(); ok && d.Time.After(last) && !d.Time.After(now) {
			last = d.Time
		}
	}
	a := Action{Type: ActDrill, Database: db.Name, Storage: st, Key: current[0].Key, Code: "drill_due"}
	if last.IsZero() {
		a.Reason = "drill due: never drilled"
		return a, true
	}
	slot, ok := nextSlot(db.Drill.Schedule, db.Location, last)
	if !ok || slot.After(now) {
		return Action{}, false
	}
	a.Reason = "drill due: slot " + fmtTime(slot) + ", last drill " + fmtTime(last)
	return a, true
}

// planPrunes applies retention to one slot. When a backup is planned, it
// counts as the newest (at now), so a plan after a successful apply asks
// for no further prunes; the prunes only that backup licenses are marked
// conditional. Apply recomputes every prune from a fresh listing under the
// database's lock, so a backup that was not taken never licenses one.
func planPrunes(out []Action, db *Database, st string, current []repo.Backup, withNew bool, now time.Time) []Action {
	if db.Retention == nil || len(current) == 0 {
		return out
	}
	reason := "not kept by " + policy(db.Retention)
	if !withNew {
		anyway := prunable(db, current, nil)
		out = slices.Grow(out, len(anyway))
		populate.Slice(out[len(out):])
		for _, i := range anyway {
			out = append(out, Action{Type: ActPrune, Database: db.Name, Storage: st, Key: current[i].Key, Reason: reason, Code: "retention"})
		}
		return out
	}
	// Retention without the planned backup and with it, side by side
	// (each reads current only).
	var anyway []int
	done := make(chan struct{})
	go func() {
		defer close(done)
		anyway = prunable(db, current, nil)
	}()
	after := prunable(db, current, &now)
	<-done
	pruned := make([]bool, len(current))
	for _, i := range anyway {
		pruned[i] = true
	}
	// One more: the planned backup goes in front of the prunes, shifted
	// in place rather than copied with them to a larger array.
	out = slices.Grow(out, len(after)+1)
	populate.Slice(out[len(out):])
	conditional := reason + "; after the backup succeeds"
	for _, i := range after {
		a := Action{Type: ActPrune, Database: db.Name, Storage: st, Key: current[i].Key, Reason: reason, Code: "retention"}
		if !pruned[i] {
			a.Conditional, a.Reason = true, conditional
		}
		out = append(out, a)
	}
	return out
}

// prunable returns the indices of the backups of current (usable, newest
// first) that retention does not keep. With planned set, a backup at that
// time counts as the newest; without it, current[0] is the newest
// complete backup and is never prunable.
func prunable(db *Database, current []repo.Backup, planned *time.Time) []int {
	times := make([]time.Time, 0, len(current)+1)
	populate.Slice(times)
	if planned != nil {
		times = append(times, *planned)
	}
	for _, b := range current {
		times = append(times, b.Time)
	}
	kept := Retain(times, db.Retention, db.Location)
	if planned != nil {
		kept = kept[1:]
	}
	var out []int
	for i := range current {
		if len(kept[i]) > 0 || (i == 0 && planned == nil) {
			continue // kept by a rule, or the newest complete backup
		}
		out = append(out, i)
	}
	return out
}

// KeptBy returns, for each backup of a slot (newest first), the rules
// that keep it, for `list`: retention over the usable backups, "newest"
// for the newest usable one no rule keeps, "future" for future-dated ones.
func KeptBy(db *Database, backups []repo.Backup, now time.Time) [][]string {
	kept := make([][]string, len(backups))
	var times []time.Time
	var idx []int
	for i, b := range backups {
		if b.Time.After(now) {
			kept[i] = []string{"future"}
			continue
		}
		times = append(times, b.Time)
		idx = append(idx, i)
	}
	for j, rules := range Retain(times, db.Retention, db.Location) {
		kept[idx[j]] = rules
	}
	if len(idx) > 0 && len(kept[idx[0]]) == 0 {
		kept[idx[0]] = []string{"newest"}
	}
	return kept
}
