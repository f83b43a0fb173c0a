package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bkexec "github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/pg"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/restore"
	"github.com/backupkit/backupkit/sinks"
)

// watchStaging records, while a restore runs, every staging database it
// sees and the most tables one of them held: proof that the restore
// really ran into a staging database during the check.
type watchStaging struct {
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	tables map[string]int // staging database → most tables seen in it
}

func startWatch(t *testing.T, p testenv.PG) *watchStaging {
	w := &watchStaging{stop: make(chan struct{}), done: make(chan struct{}), tables: map[string]int{}}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			names, err := pg.DatabasesLike(context.Background(), connFor(p, "postgres"), `backupkit\_stage\_%`)
			if err != nil {
				continue
			}
			for _, n := range names {
				k, _ := pg.CountTables(context.Background(), connFor(p, n))
				w.mu.Lock()
				w.tables[n] = max(w.tables[n], k)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// sawTablesOf says whether the staging database the restore logging to
// logs made held a table yet (other packages' tests, running beside this
// one, stage restores of their own).
func (w *watchStaging) sawTablesOf(logs fmt.Stringer) bool {
	name, ok := stagingIn(logs.String())
	w.mu.Lock()
	defer w.mu.Unlock()
	return ok && w.tables[name] > 0
}

// gatedSink holds reads of its objects at byte at until open() says so
// (or 30 s passed): the check pass cannot reach a bad chunk before the
// staged restore got going, whatever the machine's speed.
type gatedSink struct {
	sinks.Sink
	at   int64
	open func() bool
}

func (g gatedSink) Pin(ctx context.Context, key string) (sinks.Pinned, error) {
	p, err := g.Sink.Pin(ctx, key)
	if err != nil {
		return nil, err
	}
	return gatedPin{p, g}, nil
}

type gatedPin struct {
	sinks.Pinned
	g gatedSink
}

func (p gatedPin) Open(ctx context.Context) (io.ReadCloser, error) {
	rc, err := p.Pinned.Open(ctx)
	if err != nil {
		return nil, err
	}
	return &gatedReader{ReadCloser: rc, g: p.g}, nil
}

type gatedReader struct {
	io.ReadCloser
	g   gatedSink
	off int64
}

func (r *gatedReader) Read(p []byte) (int, error) {
	if r.off < r.g.at && r.off+int64(len(p)) > r.g.at {
		p = p[:r.g.at-r.off]
	}
	if r.off == r.g.at {
		for end := time.Now().Add(30 * time.Second); !r.g.open() && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	n, err := r.ReadCloser.Read(p)
	r.off += int64(n)
	return n, err
}

// end stops watching and returns the staging database the restore's log
// names, and the most tables it was seen to hold.
func (w *watchStaging) end(t *testing.T, logs fmt.Stringer) (string, int) {
	close(w.stop)
	<-w.done
	name := stagingName(t, logs.String())
	seen, ok := w.tables[name]
	if !ok {
		t.Fatalf("staging database %s was never seen", name)
	}
	return name, seen
}

func logTo(b io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// syncBuffer is a log read while it is written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// stagedSource is an encrypted gzip backup of several MiB (many chunks)
// of a database with several tables.
func stagedSource(t *testing.T, p testenv.PG) ([]byte, format.Ext, string) {
	src := p.NewDB(t, "bk_stage")
	p.Query(t, src, richSQL+`
CREATE TABLE noise AS SELECT g, decode(md5(g::text) || md5((g*3)::text), 'hex') AS b FROM generate_series(1, 250000) g;
CREATE TABLE tail (x int); INSERT INTO tail VALUES (1);`)
	o := bkexec.BackupOptions{Dump: bkexec.DumpOptions{Conn: connFor(p, src)}, Compression: format.Gzip, Password: "pw"}
	return dump(t, o), o.Ext(), src
}

func exists(t *testing.T, p testenv.PG, db string) bool {
	return p.Query(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = '"+db+"'") == "1"
}

// goneSoon reports whether db is gone within 15 s: a sweep finding it
// locked passes it by, as another test's sweep holding its lock may still
// be in its DROP.
func goneSoon(t *testing.T, p testenv.PG, db string) bool {
	return testenv.WaitFor(context.Background(), 15*time.Second, func() bool { return !exists(t, p, db) })
}

// An encrypted backup into a new database is restored while it is
// checked, into a staging database renamed to the target at the end.
func TestStagedRestore(t *testing.T) {
	p := testenv.Postgres(t)
	data, ext, src := stagedSource(t, p)
	want := fingerprint(t, p, src)
	for _, jobs := range []int{1, 2} {
		dst := "bk_staged_" + testenv.RandHex(3)
		t.Cleanup(func() { p.DropDB(dst) })
		w := startWatch(t, p)
		var logs bytes.Buffer
		res, err := restore.Run(context.Background(), store(t, data, ext), restore.Options{Target: connFor(p, dst),
			Check: restore.CheckOptions{Keys: format.Keys{Password: "pw"}, Encrypted: true}, Jobs: jobs, TempDir: t.TempDir(), Log: logTo(&logs)})
		if err != nil {
			t.Fatalf("jobs %d: %v", jobs, err)
		}
		staging, tables := w.end(t, &logs)
		if !res.Created || tables == 0 {
			t.Fatalf("jobs %d: created %v, staging database seen with up to %d tables: the restore was not staged", jobs, res.Created, tables)
		}
		if exists(t, p, staging) {
			t.Fatalf("jobs %d: staging database %s still there", jobs, staging)
		}
		if got := fingerprint(t, p, dst); got != want {
			t.Fatalf("jobs %d: restored database differs:\n got %s\nwant %s", jobs, got, want)
		}
		// --jobs built the indexes after the data, from the spool.
		if got := p.Query(t, dst, "SELECT count(*) FROM pg_indexes WHERE tablename = 'people'"); got != "2" {
			t.Fatalf("jobs %d: %s indexes on people, want 2", jobs, got)
		}
	}
}

// NoStage checks the backup whole first, then restores into the target:
// no staging database.
func TestNoStage(t *testing.T) {
	p := testenv.Postgres(t)
	data, ext, src := stagedSource(t, p)
	dst := "bk_nostage_" + testenv.RandHex(3)
	t.Cleanup(func() { p.DropDB(dst) })
	var logs bytes.Buffer
	if _, err := restore.Run(context.Background(), store(t, data, ext), restore.Options{Target: connFor(p, dst), NoStage: true,
		Check: restore.CheckOptions{Keys: format.Keys{Password: "pw"}, Encrypted: true}, Log: logTo(&logs)}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "staging") {
		t.Fatalf("staged although NoStage: %s", logs.String())
	}
	if fingerprint(t, p, dst) != fingerprint(t, p, src) {
		t.Fatal("restored database differs")
	}
}

// A target created by someone else during a staged restore is left
// alone, and the staging database dropped.
func TestStagedRestoreTargetCreatedMeanwhile(t *testing.T) {
	p := testenv.Postgres(t)
	data, ext, _ := stagedSource(t, p)
	dst := "bk_meanwhile_" + testenv.RandHex(3)
	t.Cleanup(func() { p.DropDB(dst) })
	var logs syncBuffer
	w := startWatch(t, p)
	theirs := make(chan struct{})
	go func() {
		// Once the staging database exists, someone creates the target.
		defer close(theirs)
		for !strings.Contains(logs.String(), "staging=") {
			time.Sleep(5 * time.Millisecond)
		}
		p.Query(t, "postgres", "CREATE DATABASE "+dst)
		p.Query(t, dst, "CREATE TABLE theirs (x int)")
	}()
	_, err := restore.Run(context.Background(), store(t, data, ext), restore.Options{Target: connFor(p, dst),
		Check: restore.CheckOptions{Keys: format.Keys{Password: "pw"}, Encrypted: true}, Log: logTo(&logs)})
	staging, _ := w.end(t, &logs)
	<-theirs
	if err == nil || !strings.Contains(err.Error(), "created by someone else") {
		t.Fatalf("error %v, want the target created meanwhile", err)
	}
	if exists(t, p, staging) || p.Query(t, dst, "SELECT count(*) FROM pg_tables WHERE tablename = 'theirs'") != "1" {
		t.Fatal("the staging database was left, or the other target was changed")
	}
}

// A backup refused half-way through a staged restore leaves no target
// and no staging database, although pg_restore had already created
// tables there.
func TestStagedRestoreRefusedLeavesNothing(t *testing.T) {
	p := testenv.Postgres(t)
	data, ext, _ := stagedSource(t, p)
	for name, bad := range map[string][]byte{
		"flipped near the end": func() []byte { c := bytes.Clone(data); c[len(c)-100] ^= 1; return c }(),
		"cut at 90%":           data[:len(data)*9/10],
	} {
		for _, jobs := range []int{1, 2} {
			dst := "bk_staged_bad_" + testenv.RandHex(3)
			t.Cleanup(func() { p.DropDB(dst) })
			w := startWatch(t, p)
			var logs syncBuffer
			tmp := t.TempDir()
			dir := t.TempDir()
			key := format.Key("app", testTime, ext)
			if _, err := repo.Write(context.Background(), sinks.NewLocal("local", dir), key, bytes.NewReader(bad)); err != nil {
				t.Fatal(err)
			}
			// The bytes before the bad part are read, then held until
			// pg_restore created tables in the staging database.
			src := resolve(t, gatedSink{Sink: sinks.NewLocal("local", dir), at: int64(len(bad) * 8 / 10), open: func() bool { return w.sawTablesOf(&logs) }}, "local:"+key)
			_, err := restore.Run(context.Background(), src, restore.Options{Target: connFor(p, dst), Jobs: jobs, TempDir: tmp,
				Check: restore.CheckOptions{Keys: format.Keys{Password: "pw"}, Encrypted: true}, Log: logTo(&logs)})
			if !errors.Is(err, restore.ErrRefused) {
				t.Fatalf("%s, jobs %d: %v, want a refusal", name, jobs, err)
			}
			staging, tables := w.end(t, &logs)
			if tables == 0 {
				t.Fatalf("%s, jobs %d: the staging database held no table before the refusal, so this case tests nothing: %v\n%s", name, jobs, err, logs.String())
			}
			if exists(t, p, dst) || exists(t, p, staging) {
				t.Fatalf("%s, jobs %d: target %v, staging %v left after a refused backup", name, jobs, exists(t, p, dst), exists(t, p, staging))
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Fatalf("%s, jobs %d: spool files left: %v", name, jobs, left)
			}
		}
	}
}

// pg_restore failing in the staging database (here: the backup's table
// owner does not exist on this server) leaves no target and no staging
// database, and says so.
func TestStagedRestoreFailureLeavesNothing(t *testing.T) {
	p := testenv.Postgres(t)
	role := "bk_gone_" + testenv.RandHex(3)
	src := p.NewDB(t, "bk_stagefail")
	p.Query(t, "postgres", "CREATE ROLE "+role)
	p.Query(t, src, "CREATE TABLE t (x int); INSERT INTO t VALUES (1); ALTER TABLE t OWNER TO "+role)
	o := bkexec.BackupOptions{Dump: bkexec.DumpOptions{Conn: connFor(p, src)}, Compression: format.Zstd, Password: "pw"}
	data := dump(t, o)
	p.Query(t, src, "DROP TABLE t")
	p.Query(t, "postgres", "DROP ROLE "+role)
	dst := "bk_stagefail_r_" + testenv.RandHex(3)
	t.Cleanup(func() { p.DropDB(dst) })
	var logs bytes.Buffer
	_, err := restore.Run(context.Background(), store(t, data, o.Ext()), restore.Options{Target: connFor(p, dst),
		Check: restore.CheckOptions{Keys: format.Keys{Password: "pw"}, Encrypted: true}, Log: logTo(&logs)})
	if err == nil || errors.Is(err, restore.ErrRefused) || !strings.Contains(err.Error(), role) || !strings.Contains(err.Error(), dst+" was not created") {
		t.Fatalf("error %v: want pg_restore's failure naming the role, and that %s was not created", err, dst)
	}
	staging := stagingName(t, logs.String())
	if exists(t, p, dst) || exists(t, p, staging) {
		t.Fatalf("target or staging database %s left after a failed restore", staging)
	}
}

func stagingName(t *testing.T, logs string) string {
	name, ok := stagingIn(logs)
	if !ok {
		t.Fatalf("no staging database in the log: %s", logs)
	}
	return name
}

// stagingIn is the staging database a restore's log names, if it does yet.
func stagingIn(logs string) (string, bool) {
	_, rest, ok := strings.Cut(logs, "staging="+restore.StagePrefix)
	if !ok || len(rest) < 12 {
		return "", false
	}
	return restore.StagePrefix + rest[:12], true
}

// A staging or scratch database nobody holds (a killed restore's or
// drill's) is dropped by the next restore's sweep; one whose restore is
// running, and a user's database that only looks alike, are left.
func TestSweepScratch(t *testing.T) {
	p := testenv.Postgres(t)
	ctx := context.Background()
	dead := restore.StagePrefix + testenv.RandHex(6)
	live := restore.StagePrefix + testenv.RandHex(6)
	drill := restore.ScratchPrefix + testenv.RandHex(6)
	users := []string{"backupkit_stage_prod" + testenv.RandHex(2), "backupkitXstageX" + testenv.RandHex(6),
		restore.StagePrefix + "ABCDEF" + testenv.RandHex(3), restore.StagePrefix + testenv.RandHex(7)}
	// The live one's lock first, as a restore takes it (before its
	// database exists): other packages' tests sweep this server too.
	lock, ok, err := pg.TryLock(ctx, connFor(p, "postgres"), "stage:"+live)
	if err != nil || !ok {
		t.Fatal(err)
	}
	defer lock.Release(ctx)
	for _, db := range append([]string{dead, live, drill}, users...) {
		p.Query(t, "postgres", `CREATE DATABASE "`+db+`"`)
		t.Cleanup(func() { p.DropDB(`"` + db + `"`) })
	}
	dropped, err := restore.SweepScratch(ctx, connFor(p, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	// Dropped by this sweep, or by another test's sweep running meanwhile:
	// that one held the database's lock, so this sweep passed it by, and
	// may still be in its DROP.
	for _, db := range []string{dead, drill} {
		if !slices.Contains(dropped, db) && !goneSoon(t, p, db) {
			t.Fatalf("%s was not dropped", db)
		}
	}
	for _, db := range append([]string{live}, users...) {
		if !exists(t, p, db) {
			t.Fatalf("%s was dropped", db)
		}
	}
}

// A staging database that cannot be created (a role without CREATEDB)
// fails the restore with the server's reason, and leaves nothing.
func TestStagingNotCreatable(t *testing.T) {
	p := testenv.Postgres(t)
	data, ext, _ := stagedSource(t, p)
	role := "bk_nocreate_" + testenv.RandHex(3)
	p.Query(t, "postgres", "CREATE ROLE "+role+" LOGIN NOCREATEDB")
	t.Cleanup(func() { p.Query(t, "postgres", "DROP ROLE IF EXISTS "+role) })
	target := connFor(p, "bk_nocreate_r_"+testenv.RandHex(3))
	target.User = role
	var logs bytes.Buffer
	_, err := restore.Run(context.Background(), store(t, data, ext), restore.Options{Target: target,
		Check: restore.CheckOptions{Keys: format.Keys{Password: "pw"}, Encrypted: true}, Log: logTo(&logs)})
	if err == nil || !strings.Contains(err.Error(), "permission denied to create database") {
		t.Fatalf("error %v, want the server's reason", err)
	}
	if strings.Contains(logs.String(), "staging=") {
		if staging := stagingName(t, logs.String()); exists(t, p, staging) {
			t.Fatalf("staging database %s left", staging)
		}
	}
	if exists(t, p, target.Database) {
		t.Fatal("target created")
	}
}

// A staged restore sweeps the staging databases of killed restores,
// beside making its own rather than before it.
func TestStagedRestoreSweepsKilledOnes(t *testing.T) {
	p := testenv.Postgres(t)
	src := p.NewDB(t, "bk_sweep")
	p.Query(t, src, "CREATE TABLE v (x text); INSERT INTO v VALUES ('kept')")
	o := bkexec.BackupOptions{Dump: bkexec.DumpOptions{Conn: connFor(p, src)}, Compression: format.Gzip, Password: "pw"}
	data := dump(t, o)
	dead := restore.StagePrefix + testenv.RandHex(6)
	p.Query(t, "postgres", `CREATE DATABASE "`+dead+`"`)
	t.Cleanup(func() { p.DropDB(`"` + dead + `"`) })
	dst := "bk_sweep_r_" + testenv.RandHex(3)
	t.Cleanup(func() { p.DropDB(dst) })
	logs := stagedRestore(t, p, data, o.Ext(), dst)
	// Dropped by this restore's sweep (or another test's, meanwhile).
	if !strings.Contains(logs, dead) && !goneSoon(t, p, dead) {
		t.Fatalf("the killed restore's staging database %s is still there", dead)
	}
	if p.Query(t, dst, "SELECT x FROM v") != "kept" {
		t.Fatal("the target lacks the backup's row")
	}
}

// A staged restore gives the new database to the backup's owner when that
// role exists here, as the source database was (after the rename, over
// the staging lock's session).
func TestStagedRestoreKeepsTheOwner(t *testing.T) {
	p := testenv.Postgres(t)
	role := "bk_owner_" + testenv.RandHex(3)
	p.Query(t, "postgres", "CREATE ROLE "+role)
	src := "bk_owned_" + testenv.RandHex(3)
	dst := src + "_r"
	t.Cleanup(func() {
		p.DropDB(src)
		p.DropDB(dst)
		p.Query(t, "postgres", "DROP ROLE IF EXISTS "+role)
	})
	p.Query(t, "postgres", "CREATE DATABASE "+src+" OWNER "+role)
	p.Query(t, src, "CREATE TABLE v (x text); INSERT INTO v VALUES ('kept')")
	o := bkexec.BackupOptions{Dump: bkexec.DumpOptions{Conn: connFor(p, src)}, Compression: format.Zstd, Password: "pw"}
	data := dump(t, o)
	stagedRestore(t, p, data, o.Ext(), dst)
	if got := p.Query(t, "postgres", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '"+dst+"'"); got != role {
		t.Fatalf("the restored database is owned by %q, want %q", got, role)
	}
	if p.Query(t, dst, "SELECT x FROM v") != "kept" {
		t.Fatal("the target lacks the backup's row")
	}
}

// stagedRestore restores an encrypted backup (password "pw") into the
// new database dst, fails t unless it was staged, and returns its log.
func stagedRestore(t *testing.T, p testenv.PG, data []byte, ext format.Ext, dst string) string {
	t.Helper()
	var logs bytes.Buffer
	if _, err := restore.Run(context.Background(), store(t, data, ext), restore.Options{Target: connFor(p, dst),
		Check: restore.CheckOptions{Keys: format.Keys{Password: "pw"}, Encrypted: true}, Log: logTo(&logs)}); err != nil {
		t.Fatalf("restore: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "staging=") {
		t.Fatalf("the restore was not staged:\n%s", logs.String())
	}
	return logs.String()
}
