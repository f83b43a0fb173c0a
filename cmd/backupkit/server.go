package main

// Whole-server entries: names of discovered databases, and the globals
// step of restore --globals.

import (
	"context"
	"fmt"
	"strings"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/reconcile"
	"github.com/backupkit/backupkit/restore"
	"github.com/backupkit/backupkit/schema"
)

// lookup finds the database name means: a configured one (a
// whole-server entry included), or one a whole-server entry discovers,
// "<entry>.<database>" written as shown or as its folder, returned as a
// copy of the entry that names that database. nil when there is none.
func lookup(cfg *schema.Config, name string) *schema.Database {
	if d := cfg.Database(name); d != nil {
		return d
	}
	for i := range cfg.Databases {
		e := &cfg.Databases[i]
		rest, ok := strings.CutPrefix(name, e.Name+".")
		if e.Discover == nil || !ok || rest == "" || rest == format.GlobalsName {
			continue
		}
		datname, ok := format.DecodeDBName(rest)
		if !ok {
			datname = rest // as shown
		}
		d := *e
		d.Name, d.Discover, d.Globals = format.DiscoveredName(e.Name, datname), nil, false
		d.Connection.Database = datname
		return &d
	}
	return nil
}

// selection is --db as plans select: "" (all), an entry's name, or a
// discovered database's folder name.
func (a *app) selection(db string) string {
	if db == "" {
		return ""
	}
	if d := lookup(a.cfg, db); d != nil {
		return d.Name
	}
	return db
}

// survey is what storage holds for the databases --db selects, whole
// servers expanded into the databases they have backed up (no server
// is contacted).
func (a *app) survey(ctx context.Context, db string) reconcile.Survey {
	var s reconcile.Survey
	s.Observe(ctx, a.dbs, a.stores, reconcile.StorageOnly{}, a.selection(db))
	return s
}

// globalsStep finds and checks the globals of the backup src of db (a
// database of a whole-server entry) before anything is touched, and
// returns the step that applies them once the database backup is checked
// too; *res is set when it ran.
func (g *globals) globalsStep(ctx context.Context, db *schema.Database, src restore.Source, check restore.CheckOptions, clean bool, res **restore.GlobalsResult) (func(context.Context) error, error) {
	var entry *schema.Database
	for i := range g.cfg.Databases {
		e := &g.cfg.Databases[i]
		if e.Discover != nil && strings.HasPrefix(db.Name, e.Name+".") {
			entry = e
		}
	}
	if entry == nil || !entry.Globals {
		return nil, usagef("--globals: %s is not a database of a whole-server entry with globals: true, so no roles are stored with it", db.Name)
	}
	gsrc, err := restore.GlobalsFor(ctx, src, entry.Name)
	if err != nil {
		return nil, err
	}
	gl, err := restore.LoadGlobals(ctx, gsrc, check)
	if err != nil {
		return nil, err
	}
	for _, w := range gl.Warnings {
		g.log.Warn(w)
	}
	server := connOf(entry.Connection) // roles are the server's: its own database
	return func(ctx context.Context) error {
		g.log.Info("applying globals", "from", gsrc.Desc)
		r, err := gl.Apply(ctx, server, clean)
		if err != nil {
			return fmt.Errorf("globals from %s: %w; the database was not restored", gsrc.Desc, err)
		}
		*res = &r
		for _, w := range r.Warnings {
			g.log.Warn(w)
		}
		return nil
	}, nil
}

func renderGlobals(g *globals, r *restore.GlobalsResult) {
	list := func(s []string) string {
		if len(s) == 0 {
			return "none"
		}
		return strings.Join(s, ", ")
	}
	fmt.Fprintf(g.stdout, "roles created: %s\n", list(r.Created))
	if len(r.Existing) > 0 {
		fmt.Fprintf(g.stdout, "roles left alone (they exist; --clean alters them to match): %s\n", list(r.Existing))
	}
	if len(r.Altered) > 0 {
		fmt.Fprintf(g.stdout, "roles altered to match the backup: %s\n", list(r.Altered))
	}
	fmt.Fprintf(g.stdout, "memberships granted: %d; tablespaces created: %s\n", r.Memberships, list(r.Tablespaces))
	if len(r.Superusers) > 0 {
		fmt.Fprintf(g.stdout, "superuser roles applied: %s\n", list(r.Superusers))
	}
}
