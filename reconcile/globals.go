package reconcile

import (
	"context"
	"fmt"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/repo"
)

// Show is the database's name as people read it (a discovered
// database's encoded name decoded).
func (db *Database) Show() string {
	if db.Entry == "" {
		return db.Name
	}
	return format.ShowName(db.Entry, db.Name)
}

// planGlobals plans an entry's globals on each storage: a backup
// whenever any database of the entry is backed up there (the roles of
// that cycle), or when there is none yet; and the prunes of globals no
// kept database backup belongs to. The globals of a database backup are
// the newest globals taken at or before it: a cycle takes its globals
// first.
func planGlobals(p *Plan, g *Database, obs Observation, now time.Time, o PlanOptions) {
	member := map[string]bool{}
	for i := range p.dbs {
		if db := &p.dbs[i]; db.Entry == g.Entry && db.Role == RoleDatabase {
			member[db.Name] = true
		}
	}
	for _, st := range g.Storages {
		slot := Slot{g.Name, st}
		ob := obs[slot]
		if ob == nil || ob.Err != nil {
			if ob != nil { // the entry's databases already warned for a failed listing
				p.Unobserved = append(p.Unobserved, slot.String())
			}
			continue
		}
		current := repo.Usable(ob.Backups, now)
		var newest time.Time
		if len(current) > 0 {
			newest = current[0].Time
		}
		p.Next = append(p.Next, Next{Slot: slot, Newest: newest})
		cycle := false
		pruned := map[string]bool{}
		for _, a := range p.Actions {
			if a.Storage != st || !member[a.Database] {
				continue
			}
			switch {
			case a.Type == ActBackup:
				cycle = true
			case a.Type == ActPrune && !a.Conditional:
				pruned[a.Key] = true
			}
		}
		switch {
		case o.Skip[g.Name] && !o.Force:
		case cycle:
			p.Actions = append([]Action{{Type: ActBackup, Database: g.Name, Storage: st, Forced: true, Code: "cycle",
				Reason: "the entry's databases are backed up: their roles and tablespaces with them"}}, p.Actions...)
		case newest.IsZero():
			p.Actions = append([]Action{{Type: ActBackup, Database: g.Name, Storage: st, Forced: true, Code: "no_backup",
				Reason: "due: no backup of the server's roles and tablespaces yet"}}, p.Actions...)
		}
		var kept []time.Time
		for k, ob := range obs {
			if k.Storage != st || ob.Err != nil || !member[k.Database] {
				continue
			}
			for _, b := range ob.Backups {
				if !pruned[b.Key] {
					kept = append(kept, b.Time)
				}
			}
		}
		for _, b := range globalsPrunable(current, kept) {
			p.Actions = append(p.Actions, Action{Type: ActPrune, Database: g.Name, Storage: st, Key: b.Key, Code: "retention",
				Reason: "no kept database backup was taken with these roles"})
		}
		for _, lo := range ob.Leftovers {
			if now.Sub(lo.Started) > cleanupAge(o) {
				p.Actions = append(p.Actions, Action{Type: ActCleanup, Database: g.Name, Storage: st, Key: lo.Key, UploadID: lo.UploadID, Code: "leftover",
					Reason: fmt.Sprintf("unfinished write from %s, older than %s", fmtTime(lo.Started.UTC()), cleanupAge(o))})
			}
		}
	}
}

// globalsPrunable returns the globals backups (usable, newest first) that
// no database backup (at the times kept) belongs to; the newest is never
// prunable.
func globalsPrunable(globals []repo.Backup, kept []time.Time) []repo.Backup {
	if len(globals) == 0 {
		return nil
	}
	keep := map[int]bool{0: true}
	for _, t := range kept {
		// the newest globals at or before t
		for i, g := range globals {
			if !g.Time.After(t) {
				keep[i] = true
				break
			}
		}
	}
	var out []repo.Backup
	for i, g := range globals {
		if !keep[i] {
			out = append(out, g)
		}
	}
	return out
}

// globalsPrunableNow lists the entry's folders on storage afresh and
// returns the globals backups no present database backup belongs to, by
// key (nil when the listing failed). Databases pruned a moment ago in the
// same run are gone from the listing, and take their globals with them.
func (r *Runner) globalsPrunableNow(ctx context.Context, g *Database, storage string) map[string]repo.Backup {
	folders, err := repo.ObservePrefix(ctx, r.Sinks[storage], g.Entry+".")
	if err != nil {
		return nil
	}
	var kept []time.Time
	var globals []repo.Backup
	for name, f := range folders {
		if name == g.Name {
			globals = repo.Usable(f.Backups, r.now())
			continue
		}
		for _, b := range f.Backups {
			kept = append(kept, b.Time)
		}
	}
	out := map[string]repo.Backup{}
	for _, b := range globalsPrunable(globals, kept) {
		out[b.Key] = b
	}
	return out
}

// Show is a planned database's name as people read it.
func (p Plan) Show(name string) string {
	if db := p.database(name); db != nil {
		return db.Show()
	}
	return name
}

// database returns the plan's database of that name.
func (p Plan) database(name string) *Database {
	if i, ok := p.index[name]; ok {
		return &p.dbs[i]
	}
	return nil
}
