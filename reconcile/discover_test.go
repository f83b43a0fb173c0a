package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/pg"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

// fakeServer is a Discoverer with a fixed list of databases.
type fakeServer struct {
	dbs []string
	err error
}

func (f fakeServer) Discover(context.Context, pg.Conn) (pg.Server, error) {
	return pg.Server{Major: 15, Databases: f.dbs}, f.err
}

func TestDiscoverMatch(t *testing.T) {
	d := &Discover{Include: []string{"app_*", "crm"}, Exclude: []string{"*_scratch", "app_tmp?"}}
	for name, want := range map[string]bool{"app_1": true, "crm": true, "crm2": false, "app_x_scratch": false, "app_tmp1": false, "app_tmp12": true, "postgres": false} {
		if got := d.Match(name); got != want {
			t.Errorf("Match(%q) = %v, want %v", name, got, want)
		}
	}
	if !(&Discover{}).Match("anything") {
		t.Error("no include patterns must mean all")
	}
}

// touch writes empty backups of db at the given times.
func touch(t testing.TB, root, db string, times ...time.Time) {
	for _, at := range times {
		k := format.Key(db, at, format.Ext{Compression: format.None})
		p := filepath.Join(root, filepath.FromSlash(k))
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func serverEntry() Database {
	return Database{Name: "prod", Storages: []string{"l"}, Schedule: "0 3 * * *", Location: time.UTC,
		Retention: &Retention{KeepLast: 1}, Discover: &Discover{Exclude: []string{"template*", "postgres"}}, Globals: true,
		Conn: pg.Conn{Database: "postgres"}}
}

func TestSurveyAndPlanWholeServer(t *testing.T) {
	root := t.TempDir()
	now := ts("2026-11-26T12:00:00Z")
	day := func(d int) time.Time { return now.Add(time.Duration(-d) * 24 * time.Hour) }
	touch(t, root, "prod.sales", day(2), day(1))
	touch(t, root, "prod.gone", day(3), day(2))
	touch(t, root, "prod.sales%2Eeu", day(1))
	touch(t, root, "prod._globals", day(3).Add(-time.Minute), day(2).Add(-time.Minute), day(1).Add(-time.Minute))
	touch(t, root, "other", day(1)) // another entry's folder: not ours
	stores := map[string]sinks.Sink{"l": sinks.NewLocal("l", root)}
	entries := []Database{serverEntry()}
	var s Survey
	s.Observe(context.Background(), entries, stores, fakeServer{dbs: []string{"postgres", "sales", "sales.eu", "new", "template_x"}}, "")
	var got []string
	for _, db := range s.Databases {
		got = append(got, fmt.Sprintf("%s gone=%v globals=%v datname=%s", db.Show(), db.Gone, db.Role == RoleGlobals, db.Conn.Database))
	}
	sort.Strings(got)
	want := []string{
		"prod._globals gone=false globals=true datname=postgres",
		"prod.gone gone=true globals=false datname=gone",
		"prod.new gone=false globals=false datname=new",
		"prod.sales gone=false globals=false datname=sales",
		"prod.sales.eu gone=false globals=false datname=sales.eu",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("survey:\n%v\nwant\n%v", got, want)
	}

	p := MakePlan(s.Databases, s.Obs, now, PlanOptions{Force: true})
	var acts []string
	for _, a := range p.Actions {
		acts = append(acts, string(a.Type)+" "+a.Database+" "+a.Key)
	}
	// Forced: every live database and the globals (first); the gone one
	// never. Retention keeps 1: the live databases' backups go (the
	// newest once the new one is taken), and so do the globals no kept
	// database backup belongs to, but never gone's newest.
	wantActs := []string{
		"backup prod._globals ",
		"backup prod.new ",
		"backup prod.sales ",
		"backup prod.sales%2Eeu ",
		"prune prod.gone " + format.Key("prod.gone", day(3), format.Ext{Compression: format.None}),
		"prune prod.sales " + format.Key("prod.sales", day(2), format.Ext{Compression: format.None}),
		"prune prod.sales " + format.Key("prod.sales", day(1), format.Ext{Compression: format.None}),
		"prune prod.sales%2Eeu " + format.Key("prod.sales%2Eeu", day(1), format.Ext{Compression: format.None}),
		"prune prod._globals " + format.Key("prod._globals", day(3).Add(-time.Minute), format.Ext{Compression: format.None}),
	}
	sort.Strings(acts)
	sort.Strings(wantActs)
	if !slices.Equal(acts, wantActs) {
		t.Fatalf("plan:\n%v\nwant\n%v", acts, wantActs)
	}
	if p.Actions[0].Database != "prod._globals" {
		t.Errorf("the globals are not backed up first: %v", p.Actions[0])
	}
	// Next says how old each slot's newest backup is, the globals' too.
	newest := map[string]time.Time{}
	for _, n := range p.Next {
		newest[n.Database] = n.Newest
	}
	for db, want := range map[string]time.Time{"prod._globals": day(1).Add(-time.Minute), "prod.sales": day(1), "prod.new": {}} {
		if got, ok := newest[db]; !ok || !got.Equal(want) {
			t.Errorf("next of %s: newest %v (listed %v), want %v", db, got, ok, want)
		}
	}
	if !slices.ContainsFunc(p.Warnings, func(w string) bool {
		return w == "prod.gone: database no longer on the server; its backups are kept (the newest forever), none are taken"
	}) {
		t.Errorf("no warning for the gone database: %v", p.Warnings)
	}

	// --db prod.sales: that database and its globals only.
	s = Survey{}
	s.Observe(context.Background(), entries, stores, fakeServer{dbs: []string{"sales", "new"}}, "prod.sales")
	p = MakePlan(s.Databases, s.Obs, now, PlanOptions{Database: "prod.sales", Force: true})
	for _, a := range p.Actions {
		if a.Database != "prod.sales" && a.Database != "prod._globals" {
			t.Errorf("--db prod.sales planned %v", a)
		}
	}
	if p.Count(ActBackup) != 2 {
		t.Errorf("--db prod.sales: %d backups, want the database and its globals", p.Count(ActBackup))
	}

	// --db prod, the entry's own name: every database it discovers; --db
	// of anything else: none of them, and the server is not even asked
	// (a server that is down must not fail another database's run).
	for only, want := range map[string]int{"prod": 3, "prod2": 0, "other": 0} {
		s = Survey{}
		s.Observe(context.Background(), entries, stores, fakeServer{dbs: []string{"sales", "new"}}, only)
		p = MakePlan(s.Databases, s.Obs, now, PlanOptions{Database: only, Force: true})
		if n := p.Count(ActBackup); n != want {
			t.Errorf("--db %s: %d backups (%d databases surveyed), want %d", only, n, len(s.Databases), want)
		}
		if want == 0 && len(s.Databases) != 0 {
			t.Errorf("--db %s surveyed the prod entry: %d databases", only, len(s.Databases))
		}
	}
	for _, only := range []string{"other", "prod2"} {
		s = Survey{}
		s.Observe(context.Background(), entries, stores, fakeServer{err: errors.New("connection refused")}, only)
		if len(s.Failed) != 0 || len(s.Warnings) != 0 {
			t.Errorf("--db %s: the prod entry's server was asked: failed %v, warnings %v", only, s.Failed, s.Warnings)
		}
	}
	// A server never backed up: every database and the globals are due,
	// and nothing has a newest backup yet.
	s = Survey{}
	empty := map[string]sinks.Sink{"l": sinks.NewLocal("l", t.TempDir())}
	s.Observe(context.Background(), entries, empty, fakeServer{dbs: []string{"sales"}}, "")
	p = MakePlan(s.Databases, s.Obs, now, PlanOptions{})
	if p.Count(ActBackup) != 2 || p.Count(ActPrune) != 0 {
		t.Errorf("a server never backed up: %+v, want the globals and sales backed up", p.Actions)
	}
	for _, n := range p.Next {
		if !n.Newest.IsZero() {
			t.Errorf("a server never backed up: %s has a newest backup %v", n.Slot, n.Newest)
		}
	}

	s = Survey{}
	s.Observe(context.Background(), entries, stores, fakeServer{err: errors.New("connection refused")}, "prod.sales")
	if !slices.Equal(s.Failed, []string{"prod"}) {
		t.Errorf("--db prod.sales with the server down: failed %v, want [prod]", s.Failed)
	}
}

func TestFailedDiscoveryPlansNothing(t *testing.T) {
	root := t.TempDir()
	now := ts("2026-11-26T12:00:00Z")
	touch(t, root, "prod.sales", now.Add(-72*time.Hour), now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	r := &Runner{Databases: []Database{serverEntry()}, Sinks: map[string]sinks.Sink{"l": sinks.NewLocal("l", root)},
		Discoverer: fakeServer{err: errors.New("connection refused")}}
	p, _ := r.Plan(context.Background(), now, PlanOptions{Force: true})
	if !p.Empty() || len(p.Unobserved) != 1 || len(p.Warnings) != 1 {
		t.Fatalf("a failed discovery planned %v (unobserved %v, warnings %v)", p.Actions, p.Unobserved, p.Warnings)
	}
}

func TestGlobalsPrunable(t *testing.T) {
	at := func(h int) time.Time { return ts("2026-11-26T00:00:00Z").Add(time.Duration(h) * time.Hour) }
	globals := []repo.Backup{{Name: format.Name{Time: at(30)}, Key: "g30"}, {Name: format.Name{Time: at(20)}, Key: "g20"},
		{Name: format.Name{Time: at(10)}, Key: "g10"}, {Name: format.Name{Time: at(0)}, Key: "g0"}}
	for _, c := range []struct {
		name string
		kept []int
		want []string
	}{
		{"no database backups: only the newest", nil, []string{"g20", "g10", "g0"}},
		{"each kept backup keeps the globals at or before it", []int{21, 11}, []string{"g0"}},
		{"a backup at the same instant", []int{10}, []string{"g20", "g0"}},
		{"a backup before every globals keeps none", []int{-1}, []string{"g20", "g10", "g0"}},
		{"every cycle kept", []int{1, 12, 25, 31}, nil},
	} {
		var kept []time.Time
		for _, h := range c.kept {
			kept = append(kept, at(h))
		}
		var got []string
		for _, b := range globalsPrunable(globals, kept) {
			got = append(got, b.Key)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: prunable %v, want %v", c.name, got, c.want)
		}
	}
}

// BenchmarkPlanWholeServer: survey and plan an entry of 1,000 discovered
// databases with 100 backups each (target: under 2 s).
func BenchmarkPlanWholeServer(b *testing.B) {
	root := b.TempDir()
	now := ts("2026-11-26T12:00:00Z")
	var names []string
	for i := 0; i < 1000; i++ {
		name := fmt.Sprintf("db%04d", i)
		names = append(names, name)
		var times []time.Time
		for h := 0; h < 100; h++ {
			times = append(times, now.Add(-time.Duration(h+1)*time.Hour))
		}
		touch(b, root, "prod."+name, times...)
	}
	touch(b, root, "prod._globals", now.Add(-time.Hour))
	e := serverEntry()
	e.Retention = &Retention{KeepDaily: 7, KeepLast: 24}
	r := &Runner{Databases: []Database{e}, Sinks: map[string]sinks.Sink{"l": sinks.NewLocal("l", root)}, Discoverer: fakeServer{dbs: names}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, _ := r.Plan(context.Background(), now, PlanOptions{})
		if p.Count(ActPrune) == 0 {
			b.Fatal("nothing to prune")
		}
	}
}
