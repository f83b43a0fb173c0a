package main

// Whole servers: one entry covers every matching database of a server,
// including those created later, keeps the backups of those dropped, and
// stores the roles they need, so a restore brings them back.

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

// serverConfig writes a config with one whole-server entry "srv".
func serverConfig(t *testing.T, pg testenv.PG, dir, user, discover, extra string) string {
	body := fmt.Sprintf(`version: 1
storage:
  - name: local
    type: local
    local:
      path: %s
databases:
  - name: srv
    type: postgres
    connection:
      host: %s
      port: %d
      user: %s
    discover:
%s
    globals: true
    backup:
      schedule: "0 3 * * *"
      storage: local
%s`, filepath.Join(dir, "store"), pg.Host, pg.Port, user, discover, extra)
	return writeFile(t, filepath.Join(dir, "config.yaml"), body)
}

// quotedDB creates a database whose name needs quoting, dropped at cleanup.
func quotedDB(t *testing.T, pg testenv.PG, name string) {
	q := `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
	pg.Query(t, "postgres", "CREATE DATABASE "+q)
	pg.Query(t, name, "CREATE TABLE t (a int); INSERT INTO t SELECT generate_series(1, 10)")
	t.Cleanup(func() { pg.Query(t, "postgres", "DROP DATABASE IF EXISTS "+q+" WITH (FORCE)") })
}

// folders lists the backups in storage by database folder.
func folders(t *testing.T, dir string) map[string][]repo.Backup {
	t.Helper()
	fs, err := repo.ObservePrefix(context.Background(), sinks.NewLocal("local", filepath.Join(dir, "store")), "srv.")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]repo.Backup{}
	for name, f := range fs {
		out[name] = f.Backups
	}
	return out
}

func names(m map[string][]repo.Backup) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestWholeServerDiscovery(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	tag := "ws" + testenv.RandHex(3)
	a := testDB(t, pg, tag+"_a")
	b := testDB(t, pg, tag+"_b")
	testDB(t, pg, tag+"_x_scratch")
	dotted := tag + "_c.eu"
	quotedDB(t, pg, dotted)
	cfg := serverConfig(t, pg, dir, pg.User, fmt.Sprintf("      include: [\"%s_*\"]\n      exclude: [\"*_scratch_*\"]", tag),
		"    retention:\n      keep_last: 1\n")

	// plan shows the discovered databases, decoded.
	out := mustCLI(t, 0, "plan", "-c", cfg)
	for _, want := range []string{"backup srv." + a + " ", "backup srv." + b + " ", "backup srv." + dotted + " ", "backup srv._globals "} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "scratch") {
		t.Errorf("an excluded database is planned:\n%s", out)
	}

	mustCLI(t, 0, "apply", "-c", cfg)
	want := []string{"srv." + a, "srv." + b, "srv." + format.EncodeDBName(dotted), "srv._globals"}
	sort.Strings(want)
	if got := names(folders(t, dir)); !slices.Equal(got, want) {
		t.Fatalf("backed up %v, want exactly %v", got, want)
	}
	// The dotted database's backup restores, named either way.
	mustCLI(t, 0, "restore", "-c", cfg, "--db", "srv."+dotted, "--from", "latest", "--to-database", "r"+tag)
	t.Cleanup(func() { pg.DropDB("r" + tag) })
	if n := pg.Query(t, "r"+tag, "SELECT count(*) FROM t"); n != "10" {
		t.Fatalf("restored %s rows of %s, want 10", n, dotted)
	}

	// A database created between two ticks is backed up on the next one;
	// the others are not due.
	d := testDB(t, pg, tag+"_d")
	p := parsePlan(t, mustCLI(t, 0, "plan", "-c", cfg, "-o", "json"))
	var planned []string
	for _, act := range p.Actions {
		if act.Type == "backup" {
			planned = append(planned, act.Database)
		}
	}
	sort.Strings(planned)
	if !slices.Equal(planned, []string{"srv._globals", "srv." + d}) {
		t.Fatalf("after creating %s, planned %v", d, planned)
	}
	mustCLI(t, 0, "apply", "-c", cfg)
	if len(folders(t, dir)["srv."+d]) != 1 {
		t.Fatalf("%s not backed up on the next tick", d)
	}

	// --db selects one database of the entry (with its globals).
	out = mustCLI(t, 0, "backup", "-c", cfg, "--db", "srv."+a, "-o", "json")
	if strings.Contains(out, "srv."+b) || !strings.Contains(out, `"srv.`+a+`"`) || !strings.Contains(out, "srv._globals") {
		t.Fatalf("backup --db srv.%s:\n%s", a, out)
	}

	// A dropped database keeps its newest backup, whatever runs after.
	newestB := folders(t, dir)["srv."+b][0].Key
	pg.DropDB(b)
	for i := 0; i < 3; i++ {
		mustCLI(t, 0, "backup", "-c", cfg)
	}
	fs := folders(t, dir)
	if len(fs["srv."+b]) != 1 || fs["srv."+b][0].Key != newestB {
		t.Fatalf("dropped database's backups: %v, want its newest %s kept", fs["srv."+b], newestB)
	}
	if len(fs["srv."+a]) != 1 {
		t.Errorf("retention keep_last 1 left %d backups of a live database", len(fs["srv."+a]))
	}
	out = mustCLI(t, 0, "plan", "-c", cfg)
	if !strings.Contains(out, "srv."+b+": database no longer on the server") {
		t.Fatalf("plan does not say why the dropped database is kept:\n%s", out)
	}
	l := mustCLI(t, 0, "list", "-c", cfg, "--db", "srv")
	if !strings.Contains(l, "srv."+dotted+" ") || !strings.Contains(l, "srv."+b+" ") {
		t.Fatalf("list --db srv lacks discovered names:\n%s", l)
	}
}

func TestWholeServerDiscoveryFailurePlansNothing(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	tag := "wf" + testenv.RandHex(3)
	testDB(t, pg, tag+"_a")
	cfg := serverConfig(t, pg, dir, pg.User, fmt.Sprintf("      include: [\"%s_*\"]", tag), "    retention:\n      keep_last: 1\n")
	mustCLI(t, 0, "backup", "-c", cfg)
	mustCLI(t, 0, "backup", "-c", cfg)
	before := folders(t, dir)
	// The server is unreachable now: nothing is planned, pruned or taken
	// for gone.
	bad := strings.Replace(readFile(t, cfg), fmt.Sprintf("port: %d", pg.Port), "port: 1", 1)
	writeFile(t, cfg, bad)
	code, out, errs := cli(t, "apply", "-c", cfg, "--force")
	if code != 1 || !strings.Contains(out+errs, "discovering the server's databases failed") {
		t.Fatalf("apply with discovery failing: exit %d\n%s\n%s", code, out, errs)
	}
	after := folders(t, dir)
	for name, bs := range before {
		if len(after[name]) != len(bs) {
			t.Errorf("%s: %d backups before, %d after a failed discovery", name, len(bs), len(after[name]))
		}
	}
}

// roleState is what a restore must bring back: roles, memberships,
// schema ownership and privileges, as \dp and \dn+ show them.
func roleState(t *testing.T, pg testenv.PG, db, tag string) string {
	q := func(sql string) string { return pg.Query(t, db, sql) }
	return strings.Join([]string{
		q(fmt.Sprintf(`SELECT string_agg(format('%%s super=%%s login=%%s createdb=%%s inherit=%%s config=%%s pw=%%s comment=%%s', r.rolname, r.rolsuper, r.rolcanlogin, r.rolcreatedb, r.rolinherit, r.rolconfig, a.rolpassword IS NOT NULL, shobj_description(r.oid, 'pg_authid')), E'\n' ORDER BY r.rolname)
			FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname LIKE '%s%%'`, tag)),
		q(fmt.Sprintf(`SELECT string_agg(r.rolname || ' in ' || g.rolname, ', ' ORDER BY 1) FROM pg_auth_members m
			JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid WHERE r.rolname LIKE '%s%%'`, tag)),
		q(`\dn+ sales`),
		q(`\dp sales.*`),
		q(`SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()`),
	}, "\n")
}

func TestGlobalsRoundTrip(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	tag := "gr" + testenv.RandHex(3)
	owner, reader, app := tag+"_owner", tag+"_reader", tag+"_app"
	dropRoles := func() {
		for _, r := range []string{app, reader, owner} {
			pg.Query(t, "postgres", "DROP ROLE IF EXISTS "+r)
		}
	}
	pg.Query(t, "postgres", fmt.Sprintf(`CREATE ROLE %[1]s LOGIN CREATEDB PASSWORD 'owner-pw';
		CREATE ROLE %[2]s NOLOGIN; CREATE ROLE %[3]s LOGIN PASSWORD 'app-pw' IN ROLE %[2]s;
		ALTER ROLE %[3]s SET search_path TO sales, public; COMMENT ON ROLE %[2]s IS 'reads; only'`, owner, reader, app))
	db := tag + "_shop"
	t.Cleanup(func() { pg.DropDB(db); pg.DropDB(tag + "_again"); dropRoles() })
	pg.Query(t, "postgres", "CREATE DATABASE "+db+" OWNER "+owner)
	pg.Query(t, db, fmt.Sprintf(`CREATE SCHEMA sales AUTHORIZATION %[1]s;
		SET ROLE %[1]s;
		CREATE TABLE sales.orders (id int PRIMARY KEY, total numeric);
		INSERT INTO sales.orders SELECT g, g * 1.5 FROM generate_series(1, 500) g;
		GRANT USAGE ON SCHEMA sales TO %[2]s;
		GRANT SELECT ON sales.orders TO %[2]s;
		GRANT INSERT, UPDATE ON sales.orders TO %[3]s;`, owner, reader, app))
	before := roleState(t, pg, db, tag)
	cfg := serverConfig(t, pg, dir, pg.User, fmt.Sprintf("      include: [\"%s_*\"]", tag), "")
	mustCLI(t, 0, "apply", "-c", cfg)
	// The globals are named as the SQL text they are, the database as
	// the archive it is, and their manifests say which is which.
	store := sinks.NewLocal("local", filepath.Join(dir, "store"))
	for name, want := range map[string][2]string{"srv._globals": {".sql", "globals"}, "srv." + db: {".dump", ""}} {
		var keys []string
		for _, b := range folders(t, dir)[name] {
			keys = append(keys, b.Key)
		}
		if len(keys) != 1 || !strings.Contains(keys[0], want[0]) {
			t.Fatalf("backups of %s: %v, want one named …%s…", name, keys, want[0])
		}
		m, err := repo.ReadManifest(context.Background(), store, keys[0])
		if err != nil || m == nil || m.Kind != want[1] {
			t.Errorf("manifest of %s: %+v (%v), want kind %q", keys[0], m, err, want[1])
		}
	}

	// The database and its roles are lost.
	pg.DropDB(db)
	dropRoles()
	if pg.Query(t, "postgres", fmt.Sprintf("SELECT count(*) FROM pg_roles WHERE rolname LIKE '%s%%'", tag)) != "0" {
		t.Fatal("roles not dropped")
	}
	out := mustCLI(t, 0, "restore", "-c", cfg, "--db", "srv."+db, "--from", "latest", "--globals")
	for _, r := range []string{owner, reader, app} {
		if !strings.Contains(out, r) {
			t.Errorf("restore output does not report role %s:\n%s", r, out)
		}
	}
	if !strings.Contains(out, "roles left alone") || !strings.Contains(out, pg.User) {
		t.Errorf("restore output does not report the existing roles it left alone:\n%s", out)
	}
	if after := roleState(t, pg, db, tag); after != before {
		t.Fatalf("roles, ownership or privileges differ after restore --globals:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// Existing roles are left alone: changed here, they stay changed.
	pg.Query(t, "postgres", "ALTER ROLE "+app+" NOLOGIN")
	out = mustCLI(t, 0, "restore", "-c", cfg, "--db", "srv."+db, "--from", "latest", "--globals", "--to-database", tag+"_again")
	if !strings.Contains(out, "roles created: none") || pg.Query(t, "postgres", "SELECT rolcanlogin FROM pg_roles WHERE rolname = '"+app+"'") != "f" {
		t.Fatalf("restore --globals changed an existing role without --clean:\n%s", out)
	}
	// --clean alters them to match the backup (and drops nothing).
	pg.DropDB(tag + "_again")
	mustCLI(t, 0, "restore", "-c", cfg, "--db", "srv."+db, "--from", "latest", "--globals", "--clean", "--to-database", tag+"_again")
	if pg.Query(t, "postgres", "SELECT rolcanlogin FROM pg_roles WHERE rolname = '"+app+"'") != "t" {
		t.Fatal("restore --globals --clean did not alter the existing role to match the backup")
	}
}

func TestGlobalsWithoutSuperuser(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	tag := "gn" + testenv.RandHex(3)
	bk := tag + "_backup"
	pg.Query(t, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD 'secret-pw'; CREATE ROLE %s LOGIN IN ROLE pg_read_all_data", tag+"_owner", bk))
	t.Cleanup(func() { pg.Query(t, "postgres", "DROP ROLE IF EXISTS "+bk+"; DROP ROLE IF EXISTS "+tag+"_owner") })
	a := testDB(t, pg, tag+"_a")
	cfg := serverConfig(t, pg, dir, bk, fmt.Sprintf("      include: [\"%s_*\"]", tag), "")
	_, out, errs := cli(t, "apply", "-c", cfg)
	if !strings.Contains(out+errs, "without role passwords") {
		t.Fatalf("apply as a non-superuser does not say the globals lack role passwords:\n%s\n%s", out, errs)
	}
	st := sinks.NewLocal("local", filepath.Join(dir, "store"))
	g := folders(t, dir)["srv._globals"]
	if len(g) != 1 || len(folders(t, dir)["srv."+a]) != 1 {
		t.Fatalf("backups: %v", folders(t, dir))
	}
	m, err := repo.ReadManifest(context.Background(), st, g[0].Key)
	if err != nil || !m.NoRolePasswords || m.Kind != "globals" {
		t.Fatalf("globals manifest %+v, %v: want kind globals, no_role_passwords", m, err)
	}
	rc, _ := st.Open(context.Background(), g[0].Key)
	sql := readAll(t, rc)
	if !strings.Contains(sql, "CREATE ROLE "+tag+"_owner;") || strings.Contains(sql, "PASSWORD") {
		t.Fatalf("globals dump as non-superuser:\n%s", sql)
	}
}

// TestWholeServerConnections: a server of many databases is backed up
// with at most --parallel dump sessions at a time. (Only sessions on this
// test's databases are counted: other packages' tests run at the same
// time on the same server, with the same application name.)
func TestWholeServerConnections(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	tag := "wc" + testenv.RandHex(3)
	const n, parallel = 30, 3
	for i := 0; i < n; i++ {
		db := fmt.Sprintf("%s_%02d", tag, i)
		pg.Query(t, "postgres", "CREATE DATABASE "+db)
		t.Cleanup(func() { pg.DropDB(db) })
	}
	cfg := serverConfig(t, pg, dir, pg.User, fmt.Sprintf("      include: [\"%s_*\"]", tag), "")
	ctx, cancel := context.WithCancel(context.Background())
	var peak, last int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			c := pg.Query(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'backupkit' AND datname LIKE '"+tag+"\\_%'")
			var k int
			fmt.Sscan(c, &k)
			// A count seen twice in a row: a backend still listed for
			// the moment after its pg_dump exited is not a session.
			peak, last = max(peak, min(k, last)), k
			time.Sleep(10 * time.Millisecond)
		}
	}()
	mustCLI(t, 0, "apply", "-c", cfg, "--parallel", fmt.Sprint(parallel))
	cancel()
	wg.Wait()
	if got := len(folders(t, dir)); got != n+1 {
		t.Fatalf("%d folders, want %d databases and the globals", got, n)
	}
	if peak > parallel || peak == 0 {
		t.Fatalf("peak of %d backupkit sessions on the server's databases, want 1…%d (--parallel %d)", peak, parallel, parallel)
	}
	t.Logf("peak sessions: %d (parallel %d)", peak, parallel)
}
