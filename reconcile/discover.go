package reconcile

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/pg"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

// Discover says which of a server's databases an entry covers: glob
// patterns (path.Match) on database names; no Include means all.
type Discover struct {
	Include, Exclude []string
}

// Match reports whether the patterns cover the database datname.
func (d *Discover) Match(datname string) bool {
	in := len(d.Include) == 0
	for _, p := range d.Include {
		if ok, _ := path.Match(p, datname); ok {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, p := range d.Exclude {
		if ok, _ := path.Match(p, datname); ok {
			return false
		}
	}
	return true
}

// Discoverer lists a server's databases (pg.Discover in production).
type Discoverer interface {
	Discover(ctx context.Context, c pg.Conn) (pg.Server, error)
}

// ServerDiscoverer is the real Discoverer.
type ServerDiscoverer struct{}

// Discover implements Discoverer.
func (ServerDiscoverer) Discover(ctx context.Context, c pg.Conn) (pg.Server, error) {
	return pg.Discover(ctx, c)
}

// StorageOnly is a Discoverer that contacts no server: a whole-server
// entry's databases are then the folders its storages hold (for list).
type StorageOnly struct{}

var errStorageOnly = errors.New("storage only")

// Discover implements Discoverer.
func (StorageOnly) Discover(context.Context, pg.Conn) (pg.Server, error) {
	return pg.Server{}, errStorageOnly
}

// Survey is one tick's view of the configured entries: the databases to
// reconcile (configured ones as they are; whole-server entries expanded
// into the databases found on the server, the ones only storage still
// knows, and their globals) and what storage holds for each.
type Survey struct {
	Databases []Database
	Obs       Observation
	// Warnings say what discovery could not do, and which databases are
	// gone from their server.
	Warnings []string
	// Failed lists the entries whose discovery failed: nothing is planned
	// or pruned for them.
	Failed []string
}

// Observe surveys the entries selected by only ("" = all; an entry name,
// or one database of it): discovery for whole-server entries (through d,
// nil meaning the real one), then a listing of every storage. A failed
// discovery is like a failed listing: the entry gets no databases.
func (s *Survey) Observe(ctx context.Context, entries []Database, stores map[string]sinks.Sink, d Discoverer, only string) {
	if d == nil {
		d = ServerDiscoverer{}
	}
	var plain []Database
	for i := range entries {
		e := &entries[i]
		if e.Discover == nil {
			if e.Selected(only) {
				plain = append(plain, *e)
			}
			continue
		}
		if only != "" && only != e.Name && !strings.HasPrefix(only, e.Name+".") {
			continue
		}
		dbs, obs, warn, err := expand(ctx, e, stores, d)
		s.Warnings = append(s.Warnings, warn...)
		if err != nil {
			s.Failed = append(s.Failed, e.Name)
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s: discovering the server's databases failed, nothing is planned or pruned for it: %v", e.Name, err))
			continue
		}
		if s.Obs == nil {
			s.Obs = Observation{}
		}
		for _, db := range dbs {
			if db.Selected(only) {
				s.Databases = append(s.Databases, db)
				for _, st := range db.Storages {
					if o := obs[Slot{db.Name, st}]; o != nil {
						s.Obs[Slot{db.Name, st}] = o
					}
				}
			}
		}
	}
	if s.Obs == nil {
		s.Obs = Observation{}
	}
	for k, v := range Observe(ctx, plain, stores, "") {
		s.Obs[k] = v
	}
	s.Databases = append(plain, s.Databases...)
}

// expand turns a whole-server entry into its databases: those on the
// server that the patterns match, those only storage still holds (gone),
// and the globals. Each storage is listed once for the whole entry.
func expand(ctx context.Context, e *Database, stores map[string]sinks.Sink, d Discoverer) ([]Database, Observation, []string, error) {
	srv, err := d.Discover(ctx, e.Conn)
	storageOnly := errors.Is(err, errStorageOnly)
	if err != nil && !storageOnly {
		return nil, nil, nil, err
	}
	prefix := e.Name + "."
	folders := make([]map[string]*repo.Folder, len(e.Storages))
	errs := make([]error, len(e.Storages))
	var wg sync.WaitGroup
	for i, st := range e.Storages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if stores[st] == nil {
				errs[i] = fmt.Errorf("storage is not configured")
				return
			}
			folders[i], errs[i] = repo.ObservePrefix(ctx, stores[st], prefix)
		}()
	}
	wg.Wait()

	var dbs []Database
	var warn []string
	on := map[string]bool{}
	for _, name := range srv.Databases {
		on[name] = true
		if e.Discover.Match(name) {
			dbs = append(dbs, e.member(format.DiscoveredName(e.Name, name), name, srv.Major))
		}
	}
	have := map[string]bool{}
	for _, db := range dbs {
		have[db.Name] = true
	}
	// Databases only storage knows: they keep their backups.
	var gone []string
	seen := map[string]bool{}
	for _, f := range folders {
		for name := range f {
			rest := strings.TrimPrefix(name, prefix)
			if have[name] || seen[name] || rest == format.GlobalsName {
				continue
			}
			if _, ok := format.DecodeDBName(rest); ok {
				seen[name] = true
				gone = append(gone, name)
			}
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		datname, _ := format.DecodeDBName(strings.TrimPrefix(name, prefix))
		db := e.member(name, datname, srv.Major)
		if storageOnly {
			dbs = append(dbs, db)
			continue
		}
		db.Gone, db.Why = true, "database no longer on the server"
		if on[datname] {
			db.Why = "database no longer matched by discover include/exclude"
		}
		db.Drill = nil
		dbs = append(dbs, db)
		warn = append(warn, fmt.Sprintf("%s: %s; its backups are kept (the newest forever), none are taken", format.ShowName(e.Name, name), db.Why))
	}
	if e.Globals {
		g := e.member(prefix+format.GlobalsName, e.Conn.Database, srv.Major)
		g.Role, g.Drill = RoleGlobals, nil
		dbs = append(dbs, g)
	}
	obs := Observation{}
	for _, db := range dbs {
		for i, st := range e.Storages {
			o := &Observed{Err: errs[i]}
			if f := folders[i][db.Name]; f != nil && errs[i] == nil {
				o.Backups, o.Leftovers = f.Backups, f.Leftovers
			}
			obs[Slot{db.Name, st}] = o
		}
	}
	return dbs, obs, warn, nil
}

// member is the entry's settings for one of its databases.
func (e *Database) member(name, datname string, major int) Database {
	db := *e
	db.Name, db.Entry, db.Discover, db.Globals, db.Major, db.Home = name, e.Name, nil, false, major, e.Conn.Database
	db.Conn.Database = datname
	db.Backup.Dump.Conn.Database = datname
	if db.Drill != nil {
		dr := *db.Drill
		db.Drill = &dr
	}
	return db
}
