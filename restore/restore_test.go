package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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

// richSQL has what a faithful backup must carry: bytea, unicode, NULLs,
// a large object, a sequence, an index, a view.
const richSQL = `
CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL, nick text, photo bytea, born date);
INSERT INTO people (name, nick, photo, born)
SELECT 'Person ' || g || ' — Zoë Ærøskøbing 日本語 ' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END,
       CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text) || md5((g*7)::text), 'hex') END,
       date '1970-01-01' + g
FROM generate_series(1, 5000) g;
CREATE INDEX people_name_idx ON people (name);
CREATE SEQUENCE invoice_no START 1000;
SELECT nextval('invoice_no') FROM generate_series(1, 42);
CREATE TABLE docs (id int PRIMARY KEY, body text, blob oid);
INSERT INTO docs SELECT g, repeat('lorem ipsum ', g), NULL FROM generate_series(1, 200) g;
UPDATE docs SET blob = lo_from_bytea(0, decode(repeat('ab', 50000), 'hex')) WHERE id = 1;
CREATE VIEW adults AS SELECT id, name FROM people WHERE born < date '1980-01-01';
COMMENT ON INDEX people_name_idx IS 'by name';
COMMENT ON CONSTRAINT people_pkey ON people IS 'the key';
GRANT SELECT ON people TO PUBLIC;
`

func connFor(p testenv.PG, db string) pg.Conn {
	return pg.Conn{Host: p.Host, Port: p.Port, User: p.User, Database: db}
}

// fingerprint is what must survive a round trip.
func fingerprint(t *testing.T, p testenv.PG, db string) string {
	sums := p.TableChecksums(t, db)
	seq := p.Query(t, db, "SELECT last_value FROM invoice_no")
	lo := p.Query(t, db, "SELECT md5(lo_get(blob)) FROM docs WHERE id = 1")
	view := p.Query(t, db, "SELECT count(*) FROM adults")
	idx := p.Query(t, db, "SELECT indexdef FROM pg_indexes WHERE indexname = 'people_name_idx'")
	// Comments on post-data objects and grants: entries of no section,
	// which pg_restore counts in the section before them.
	notes := p.Query(t, db, `SELECT concat_ws(', ', obj_description('people_name_idx'::regclass, 'pg_class'),
		(SELECT obj_description(oid, 'pg_constraint') FROM pg_constraint WHERE conname = 'people_pkey'),
		(SELECT relacl::text FROM pg_class WHERE relname = 'people'))`)
	return fmt.Sprintf("%v seq=%s lo=%s view=%s idx=%s notes=%s", sums, seq, lo, view, idx, notes)
}

var testTime = time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)

// store writes a backup's bytes into a fresh local storage (with its
// checksum sidecar) and resolves it as STORAGE:KEY.
func store(t *testing.T, data []byte, ext format.Ext) restore.Source {
	t.Helper()
	s := sinks.NewLocal("local", t.TempDir())
	key := format.Key("app", testTime, ext)
	if _, err := repo.Write(context.Background(), s, key, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return resolve(t, s, "local:"+key)
}

func resolve(t *testing.T, s sinks.Sink, from string) restore.Source {
	t.Helper()
	src, err := restore.Resolve(context.Background(), restore.Storages{Database: "app", Names: []string{"local"},
		Sinks: map[string]sinks.Sink{"local": s}}, from, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func dump(t *testing.T, o bkexec.BackupOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := bkexec.Backup(context.Background(), o, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTripAllPipelines(t *testing.T) {
	p := testenv.Postgres(t)
	src := p.NewDB(t, "bk_rich")
	p.Query(t, src, richSQL)
	want := fingerprint(t, p, src)
	ctx := context.Background()
	for _, comp := range format.Compressions() {
		for _, pw := range []string{"", "s3cret pass"} {
			t.Run(fmt.Sprintf("%s/encrypted=%v", comp, pw != ""), func(t *testing.T) {
				o := bkexec.BackupOptions{Dump: bkexec.DumpOptions{Conn: connFor(p, src)}, Compression: comp, Password: pw}
				s := store(t, dump(t, o), o.Ext())
				dst := "bk_restored_" + testenv.RandHex(3)
				t.Cleanup(func() { p.DropDB(dst) })
				co := restore.CheckOptions{Keys: format.Keys{Password: pw}, Encrypted: pw != "", Encryption: format.Enc, Compression: comp, Strict: true}
				res, err := restore.Run(ctx, s, restore.Options{Target: connFor(p, dst), Check: co})
				if err != nil {
					t.Fatal(err)
				}
				if res.Layers.Compression != comp || res.Layers.Encrypted() != (pw != "") || res.Layers.Kind != format.KindCustom || !res.Created {
					t.Fatalf("result %+v", res)
				}
				if got := fingerprint(t, p, dst); got != want {
					t.Fatalf("restored database differs:\n got %s\nwant %s", got, want)
				}
				v, err := restore.Verify(ctx, s, co)
				if err != nil || v.Entries < 5 || v.Stored == 0 || v.Decoded < v.Stored/100 {
					t.Fatalf("verify: %+v %v", v, err)
				}
			})
		}
	}
}

func TestRestoreJobsSpool(t *testing.T) {
	p := testenv.Postgres(t)
	src := p.NewDB(t, "bk_rich")
	p.Query(t, src, richSQL)
	o := bkexec.BackupOptions{Dump: bkexec.DumpOptions{Conn: connFor(p, src)}, Compression: format.Gzip, Password: "pw"}
	s := store(t, dump(t, o), o.Ext())
	dst := p.NewDB(t, "bk_jobs")
	tmp := filepath.Join(t.TempDir(), "spool")
	// A spool left by a process that is gone is swept; the spool of this
	// restore is 0600 in a 0700 folder and removed afterwards.
	os.MkdirAll(tmp, 0o700)
	stale := filepath.Join(tmp, "backupkit-restore-999999999-1.dump")
	os.WriteFile(stale, []byte("left by a killed restore"), 0o600)
	_, err := restore.Run(context.Background(), s, restore.Options{Target: connFor(p, dst), Check: restore.CheckOptions{Keys: format.Keys{Password: "pw"}, Encrypted: true}, Jobs: 2, TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fingerprint(t, p, dst), fingerprint(t, p, src); got != want {
		t.Fatalf("restored database differs")
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("spool folder not empty: %v", left)
	}
	if fi, _ := os.Stat(tmp); fi.Mode().Perm() != 0o700 {
		t.Fatalf("temp dir mode %v", fi.Mode().Perm())
	}
}

func TestPagilaRoundTrip(t *testing.T) {
	p := testenv.Postgres(t)
	schemaFile, dataFile := testenv.Pagila(t)
	src := p.NewDB(t, "bk_pagila")
	p.RunFile(t, src, schemaFile)
	p.RunFile(t, src, dataFile)
	o := bkexec.BackupOptions{Dump: bkexec.DumpOptions{Conn: connFor(p, src)}, Compression: format.Zstd, Password: "pagila"}
	s := store(t, dump(t, o), o.Ext())
	dst := "bk_pagila_r_" + testenv.RandHex(3)
	t.Cleanup(func() { p.DropDB(dst) })
	ro := restore.Options{Target: connFor(p, dst), Check: restore.CheckOptions{Keys: format.Keys{Password: "pagila"}, Encrypted: true}, SingleTransaction: true}
	if _, err := restore.Run(context.Background(), s, ro); err != nil {
		t.Fatal(err)
	}
	if a, b := p.SchemaDump(t, src), p.SchemaDump(t, dst); a != b {
		t.Fatal("schema of the restored Pagila differs from the source")
	}
	a, b := p.TableChecksums(t, src), p.TableChecksums(t, dst)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("table contents differ:\n%v\n%v", a, b)
	}
	if len(a) < 15 {
		t.Fatalf("only %d tables compared", len(a))
	}
}

// fakePgDump puts a pg_dump first on PATH that runs the real one and then
// fails as script says.
func fakePgDump(t *testing.T, script string) {
	real, err := exec.LookPath("pg_dump")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	body := "#!/bin/sh\nREAL=" + real + "\n" + script + "\n"
	if err := os.WriteFile(filepath.Join(dir, "pg_dump"), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
}

func TestDumpFailuresLeaveNothing(t *testing.T) {
	p := testenv.Postgres(t)
	src := p.NewDB(t, "bk_fail")
	p.Query(t, src, richSQL)
	cases := []struct {
		name, script, want string
	}{
		{"killed mid-stream", `"$REAL" "$@" | head -c 100000; echo "dying on purpose" >&2; kill -KILL $$`, "signal: killed"},
		{"non-zero exit", `"$REAL" "$@" | head -c 100000; echo "pg_dump: error: something broke" >&2; exit 1`, "something broke"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fakePgDump(t, c.script)
			s := sinks.NewLocal("local", t.TempDir())
			o := bkexec.BackupOptions{Dump: bkexec.DumpOptions{Conn: connFor(p, src)}, Compression: format.Gzip}
			key := format.Key("bk", testTime, o.Ext())
			_, err := repo.FanOut(context.Background(), []repo.Target{{Sink: s, Key: key}}, func(w io.Writer) error {
				_, err := bkexec.Backup(context.Background(), o, w)
				return err
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
			if objs, _ := s.List(context.Background(), ""); len(objs) != 0 {
				t.Fatalf("failed dump left %v", objs)
			}
			if lo, _ := s.Leftovers(context.Background(), ""); len(lo) != 0 {
				t.Fatalf("failed dump left temp files %v", lo)
			}
		})
	}
	t.Run("missing database", func(t *testing.T) {
		_, err := bkexec.Backup(context.Background(), bkexec.BackupOptions{Dump: bkexec.DumpOptions{Conn: connFor(p, "no_such_db_x")}}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestV0GzipDumpRestores(t *testing.T) {
	p := testenv.Postgres(t)
	src := p.NewDB(t, "bk_v0")
	p.Query(t, src, richSQL)
	file := filepath.Join(t.TempDir(), "app", "20240101_020000.000000000Z.dump.gz")
	os.MkdirAll(filepath.Dir(file), 0o700)
	cmd := exec.Command("sh", "-c", `pg_dump -Fc -d "$DB" | gzip > "$OUT"`)
	cmd.Env = append(os.Environ(), "PGHOST="+p.Host, fmt.Sprintf("PGPORT=%d", p.Port), "PGUSER="+p.User, "DB="+src, "OUT="+file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	s := resolve(t, sinks.NewLocal("local", t.TempDir()), file)
	dst := "bk_v0_r_" + testenv.RandHex(3)
	t.Cleanup(func() { p.DropDB(dst) })
	if _, err := restore.Run(context.Background(), s, restore.Options{Target: connFor(p, dst), Check: restore.CheckOptions{Compression: format.Gzip}}); err != nil {
		t.Fatal(err)
	}
	if fingerprint(t, p, dst) != fingerprint(t, p, src) {
		t.Fatal("v0 restore differs")
	}
}

func TestCheckRefusesDamage(t *testing.T) {
	p := testenv.Postgres(t)
	src := p.NewDB(t, "bk_dmg")
	p.Query(t, src, richSQL)
	conn := connFor(p, src)
	enc := dump(t, bkexec.BackupOptions{Dump: bkexec.DumpOptions{Conn: conn}, Compression: format.Gzip, Password: "right"})
	gz := dump(t, bkexec.BackupOptions{Dump: bkexec.DumpOptions{Conn: conn}, Compression: format.Gzip})
	flip := func(b []byte, off int) []byte { c := bytes.Clone(b); c[off] ^= 0x10; return c }
	encExt := format.Ext{Compression: format.Gzip, Encryption: format.Enc}
	gzExt := format.Ext{Compression: format.Gzip}
	cases := []struct {
		name string
		data []byte
		ext  format.Ext
		pw   string
		want error
	}{
		{"wrong password", enc, encExt, "wrong", format.ErrWrongPassword},
		{"truncated encrypted (half)", enc[:len(enc)/2], encExt, "right", format.ErrCorrupted},
		{"truncated encrypted (header)", enc[:40], encExt, "right", format.ErrTruncated},
		{"flipped encrypted body", flip(enc, len(enc)/2), encExt, "right", format.ErrCorrupted},
		{"flipped encrypted header", flip(enc, 20), encExt, "right", format.ErrCorrupted},
		{"truncated gzip", gz[:len(gz)/2], gzExt, "", format.ErrTruncated},
		{"flipped gzip tail (crc)", flip(gz, len(gz)-6), gzExt, "", nil},
		{"not a backup", bytes.Repeat([]byte{0, 1, 2, 3}, 100), gzExt, "", format.ErrUnknownFormat},
		{"empty file", nil, gzExt, "", format.ErrTruncated},
		{"gzip of text that is no dump", gzipOf(t, "hello world\nthis is not a database\n"), gzExt, "", restore.ErrNotADump},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Without the sidecar: the bytes alone must tell.
			s := sinks.NewLocal("local", t.TempDir())
			key := format.Key("app", testTime, c.ext)
			s.Put(context.Background(), key, bytes.NewReader(c.data))
			_, err := restore.Verify(context.Background(), resolve(t, s, "local:"+key), restore.CheckOptions{Keys: format.Keys{Password: c.pw}, AllowSQL: true})
			if err == nil {
				t.Fatal("damaged backup accepted")
			}
			if !errors.Is(err, restore.ErrRefused) {
				t.Fatalf("error %v is not ErrRefused", err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

func gzipOf(t *testing.T, s string) []byte {
	var buf bytes.Buffer
	w, _ := format.NewCompressor(&buf, format.Gzip, 0)
	io.WriteString(w, s)
	w.Close()
	return buf.Bytes()
}

// TestLatestSkipsFutureDatedKey: a storage whose newest key is dated in
// the future still offers its next backup to "latest".
func TestLatestSkipsFutureDatedKey(t *testing.T) {
	root := t.TempDir()
	s := sinks.NewLocal("local", root)
	now := time.Now()
	good := format.Key("app", now.Add(-time.Hour), format.Ext{Compression: format.None})
	future := format.Key("app", now.Add(72*time.Hour), format.Ext{Compression: format.None})
	for _, k := range []string{good, future} {
		s.Put(context.Background(), k, strings.NewReader("PGDMP"))
	}
	src, err := restore.Resolve(context.Background(), restore.Storages{Database: "app", Names: []string{"local"},
		Sinks: map[string]sinks.Sink{"local": s}}, "latest", now)
	if err != nil || src.Key != good {
		t.Fatalf("latest = %+v, %v; want %s", src, err, good)
	}
}

// rawDump is pg_dump -Fc --compress=0 of db, as pg_dump writes it: a
// chunk per row.
func rawDump(t *testing.T, p testenv.PG, db string) []byte {
	t.Helper()
	cmd := exec.Command("pg_dump", "-Fc", "--compress=0", "-h", p.Host, "-p", fmt.Sprint(p.Port), "-U", p.User, "-d", db)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	return out
}

// peopleBlock is the size of the people table's data block in an archive.
func peopleBlock(t *testing.T, archive []byte) int64 {
	t.Helper()
	info, err := format.WalkArchive(bytes.NewReader(archive))
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	return info.TableBytes()["public.people"]
}

// TestBackupJoinsRows: a backup stores each table's rows in 64 KiB
// chunks, not pg_dump's chunk a row: 5,000 rows, 5,000 lengths fewer.
func TestBackupJoinsRows(t *testing.T) {
	p := testenv.Postgres(t)
	src := p.NewDB(t, "bk_join")
	p.Query(t, src, richSQL)
	perRow := peopleBlock(t, rawDump(t, p, src))
	for _, comp := range []format.Compression{format.Gzip, format.Zstd} {
		o := bkexec.BackupOptions{Dump: bkexec.DumpOptions{Conn: connFor(p, src)}, Compression: comp, Password: "pw"}
		dec, err := format.Decode(bytes.NewReader(dump(t, o)), format.Keys{Password: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		archive, err := io.ReadAll(dec)
		if err != nil {
			t.Fatal(err)
		}
		if got := peopleBlock(t, archive); got > perRow-5*4990 {
			t.Fatalf("%s: the people block has %d bytes, pg_dump's %d: rows not joined", comp, got, perRow)
		}
	}
}

// TestRestoreJoinsRowsOfOlderBackups: what pg_restore reads has each
// table's rows joined, on every path, also from backups made before
// backups joined them (a chunk a row): the staged stream, the --jobs
// parts, the spool file and the second read of the backup.
func TestRestoreJoinsRowsOfOlderBackups(t *testing.T) {
	p := testenv.Postgres(t)
	src := p.NewDB(t, "bk_join_old")
	p.Query(t, src, richSQL)
	raw := rawDump(t, p, src)
	perRow := peopleBlock(t, raw)
	want := fingerprint(t, p, src)

	// A pg_restore that records what it reads: its input file (the one
	// argument that is neither an option nor an option's value: a
	// --use-list file is not its input), or stdin.
	dir := t.TempDir()
	tool := filepath.Join(dir, "pg_restore")
	script := fmt.Sprintf(`#!/bin/sh
prev=; in=
for a in "$@"; do
	case "$prev" in
	--use-list|--dbname|--section|--jobs) ;;
	*) case "$a" in -*) ;; *) in=$a;; esac;;
	esac
	prev=$a
done
if [ -n "$in" ]; then cp "$in" %[1]s/read.$$; exec pg_restore "$@"; fi
tee %[1]s/read.$$ | pg_restore "$@"
`, dir)
	if err := os.WriteFile(tool, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	older := func(pw string) (restore.Source, format.Keys) {
		var buf bytes.Buffer
		var w io.Writer = &buf
		var enc io.WriteCloser
		if pw != "" {
			var err error
			if enc, err = format.NewEncrypter(&buf, pw); err != nil {
				t.Fatal(err)
			}
			w = enc
		}
		comp, err := format.NewCompressor(w, format.Gzip, 0)
		if err != nil {
			t.Fatal(err)
		}
		comp.Write(raw)
		comp.Close()
		ext := format.Ext{Compression: format.Gzip}
		if enc != nil {
			enc.Close()
			ext.Encryption = format.Enc
		}
		return store(t, buf.Bytes(), ext), format.Keys{Password: pw}
	}
	cases := []struct {
		name     string
		pw       string
		o        restore.Options
		existing bool
	}{
		{"staged", "pw", restore.Options{}, false},
		{"staged --jobs 2", "pw", restore.Options{Jobs: 2}, false},
		{"spool file", "", restore.Options{}, true},
		{"read twice", "", restore.Options{NoSpool: true}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, f := range must(filepath.Glob(filepath.Join(dir, "read.*"))) {
				os.Remove(f)
			}
			s, keys := older(c.pw)
			dst := "bk_join_r_" + testenv.RandHex(3)
			if c.existing {
				dst = p.NewDB(t, "bk_join_r")
			} else {
				t.Cleanup(func() { p.DropDB(dst) })
			}
			o := c.o
			o.Target, o.Tool = connFor(p, dst), tool
			o.Check = restore.CheckOptions{Keys: keys, Encrypted: c.pw != "", AllowUnencrypted: true, Encryption: format.Enc, Compression: format.Gzip}
			if _, err := restore.Run(context.Background(), s, o); err != nil {
				t.Fatal(err)
			}
			if got := fingerprint(t, p, dst); got != want {
				t.Fatalf("restored database differs:\n%s\nwant\n%s", got, want)
			}
			seen := false
			for _, f := range must(filepath.Glob(filepath.Join(dir, "read.*"))) {
				// Readers of the table of contents alone stop early.
				read, _ := os.ReadFile(f)
				info, err := format.WalkArchive(bytes.NewReader(read))
				if err != nil {
					continue
				}
				if n := info.TableBytes()["public.people"]; n > 0 {
					seen = true
					if n > perRow-5*4990 {
						t.Fatalf("pg_restore read a people block of %d bytes, pg_dump's %d: rows not joined", n, perRow)
					}
				}
			}
			if !seen {
				t.Fatal("no pg_restore read the people table's data")
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestRestoreJobsBuildsEarly: with --jobs, a table's indexes and
// constraints are built once the job loading it has ended, while another
// job still copies (as pg_restore -j does); the rest at the end, and
// every index and constraint exactly once.
func TestRestoreJobsBuildsEarly(t *testing.T) {
	p := testenv.Postgres(t)
	src := p.NewDB(t, "bk_early")
	p.Query(t, src, `CREATE TABLE big (id int PRIMARY KEY, pad text);
		INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 500000) g;
		CREATE TABLE small (id int PRIMARY KEY, big_id int REFERENCES big, note text UNIQUE);
		INSERT INTO small SELECT g, g, 'n' || g FROM generate_series(1, 10) g;
		CREATE INDEX small_big ON small (big_id);`)
	o := bkexec.BackupOptions{Dump: bkexec.DumpOptions{Conn: connFor(p, src)}, Compression: format.Gzip, Password: "pw"}
	s := store(t, dump(t, o), o.Ext())

	// A pg_restore that logs when each run starts and ends, and which
	// entries an early post-data run builds. The job loading big reads
	// nothing until the job loading small has ended, so that big is
	// still copying then however fast the check pass and each job run
	// (under the race detector the check pass is the slowest of all, and
	// both jobs would end as it does).
	dir := t.TempDir()
	log, tool := filepath.Join(dir, "log"), filepath.Join(dir, "pg_restore")
	smallEnded := filepath.Join(dir, "small-ended")
	script := fmt.Sprintf(`#!/bin/sh
echo "start $(date +%%s%%N) $*" >> %[1]s
prev= list=
for a in "$@"; do
	case "$prev $a" in "--use-list "*.early*) grep -v '^;' "$a" | sed "s|^|built ${a##*.} |" >> %[1]s;; esac
	[ "$prev" = --use-list ] && list=$a
	prev=$a
done
if [ -n "$list" ] && grep -q "TABLE DATA public big " "$list"; then
	{ i=0; while [ ! -e %[2]s ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; cat; } | pg_restore "$@"
	rc=$?
else
	pg_restore "$@"
	rc=$?
	if [ -n "$list" ] && grep -q "TABLE DATA public small " "$list"; then touch %[2]s; fi
fi
for last; do :; done
echo "end $(date +%%s%%N) $* size $(stat -c %%s "$last" 2>/dev/null)" >> %[1]s
exit $rc
`, log, smallEnded)
	if err := os.WriteFile(tool, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	dst := "bk_early_r_" + testenv.RandHex(3)
	t.Cleanup(func() { p.DropDB(dst) })
	_, err := restore.Run(context.Background(), s, restore.Options{Target: connFor(p, dst), Tool: tool, Jobs: 2,
		Check: restore.CheckOptions{Keys: format.Keys{Password: "pw"}, Encrypted: true}})
	if err != nil {
		t.Fatal(err)
	}
	shape := func(db string) string {
		return p.Query(t, db, `SELECT string_agg(conname || ' ' || contype::text, ', ' ORDER BY conname) FROM pg_constraint WHERE connamespace = 'public'::regnamespace`) +
			" / " + p.Query(t, db, `SELECT string_agg(indexname, ', ' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'public'`)
	}
	if got, want := shape(dst), shape(src); got != want {
		t.Fatalf("restored constraints and indexes: %s\nwant %s", got, want)
	}
	if got, want := fmt.Sprint(p.TableChecksums(t, dst)), fmt.Sprint(p.TableChecksums(t, src)); got != want {
		t.Fatal("restored data differs")
	}
	raw, _ := os.ReadFile(log)
	var lastDataEnd int64
	started := map[string]int64{}  // early batch → when it started
	built := map[string][]string{} // early batch → the names it built
	ended := map[string]int64{}    // early batch → the spool's size at its end
	var rest bool
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		f := strings.Fields(line)
		var at int64
		fmt.Sscan(f[1], &at)
		switch {
		case f[0] == "built":
			built[f[1]] = append(built[f[1]], f[len(f)-2]) // the name, before the owner
		case f[0] == "end" && strings.Contains(line, "--section data"):
			lastDataEnd = max(lastDataEnd, at)
		case f[0] == "end" && strings.Contains(line, ".early"):
			file := f[len(f)-4]
			var size int64
			fmt.Sscan(f[len(f)-1], &size)
			ended[file[strings.LastIndex(file, ".")+1:]] = size
		case f[0] == "start" && strings.Contains(line, ".early"):
			file := f[len(f)-2]
			started[file[strings.LastIndex(file, ".")+1:]] = at
		case f[0] == "start" && (strings.Contains(line, ".rest") || strings.Contains(line, "--section post-data")):
			rest = true
		}
	}
	// Built while a job still copied: small's own indexes and
	// constraints, not big's (still loading) nor the foreign key to it;
	// built once the last job ended: those, and the rest run trimmed.
	var during, after []string
	for batch, names := range built {
		if started[batch] < lastDataEnd {
			during = append(during, names...)
		} else {
			after = append(after, names...)
		}
	}
	slices.Sort(during)
	slices.Sort(after)
	if got := strings.Join(during, ", "); got != "small_big, small_note_key, small_pkey" {
		t.Fatalf("built while a job copied: %s (want small_big, small_note_key, small_pkey)\n%s", got, raw)
	}
	if got := strings.Join(after, ", "); got != "big_pkey, small_big_id_fkey" {
		t.Fatalf("built early after the jobs: %s (want big_pkey, small_big_id_fkey)\n%s", got, raw)
	}
	// Once the last job has ended, no block of the spool is read again:
	// it is cut back to its table of contents (a few KiB; its blocks
	// are tens of MiB) while the indexes are built.
	for batch, at := range started {
		if at > lastDataEnd && ended[batch] > 1<<20 {
			t.Fatalf("batch %s, after the jobs: the spool still held %d bytes at its end\n%s", batch, ended[batch], raw)
		}
	}
	// All of post-data was built early: no last pg_restore for it.
	// (TestRestoreJobsSpool restores comments and grants, which it runs.)
	if rest {
		t.Fatalf("a pg_restore for post-data ran with nothing left:\n%s", raw)
	}
}
