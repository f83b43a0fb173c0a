package exec_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	bkexec "github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/internal/testenv"
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
`

func connFor(pg testenv.PG, db string) bkexec.Conn {
	return bkexec.Conn{Host: pg.Host, Port: pg.Port, User: pg.User, Database: db}
}

// fingerprint is what must survive a round trip.
func fingerprint(t *testing.T, pg testenv.PG, db string) string {
	sums := pg.TableChecksums(t, db)
	seq := pg.Query(t, db, "SELECT last_value FROM invoice_no")
	lo := pg.Query(t, db, "SELECT md5(lo_get(blob)) FROM docs WHERE id = 1")
	view := pg.Query(t, db, "SELECT count(*) FROM adults")
	idx := pg.Query(t, db, "SELECT indexdef FROM pg_indexes WHERE indexname = 'people_name_idx'")
	return fmt.Sprintf("%v seq=%s lo=%s view=%s idx=%s", sums, seq, lo, view, idx)
}

func opener(b []byte) bkexec.Opener {
	return func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

func TestRoundTripAllPipelines(t *testing.T) {
	pg := testenv.Postgres(t)
	src := pg.NewDB(t, "bk_rich")
	pg.Query(t, src, richSQL)
	want := fingerprint(t, pg, src)
	ctx := context.Background()
	for _, comp := range []bkexec.Compression{bkexec.None, bkexec.Gzip, bkexec.Zstd} {
		for _, pw := range []string{"", "s3cret pass"} {
			name := fmt.Sprintf("%s/encrypted=%v", comp, pw != "")
			t.Run(name, func(t *testing.T) {
				var buf bytes.Buffer
				o := bkexec.BackupOptions{Conn: connFor(pg, src), Compression: comp, Password: pw}
				if _, err := bkexec.Backup(ctx, o, &buf); err != nil {
					t.Fatal(err)
				}
				dst := pg.NewDB(t, "bk_restored")
				ro := bkexec.RestoreOptions{Target: connFor(pg, dst), Password: pw}
				layers, spool, err := bkexec.CheckBackup(ctx, opener(buf.Bytes()), ro)
				if err != nil {
					t.Fatal(err)
				}
				if layers.Compression != comp || layers.Encrypted != (pw != "") || layers.Kind != bkexec.KindCustom {
					t.Fatalf("sniffed %s", layers)
				}
				if err := bkexec.Restore(ctx, opener(buf.Bytes()), spool, layers, ro); err != nil {
					t.Fatal(err)
				}
				if got := fingerprint(t, pg, dst); got != want {
					t.Fatalf("restored database differs:\n got %s\nwant %s", got, want)
				}
				res, err := bkexec.Verify(ctx, opener(buf.Bytes()), pw)
				if err != nil || res.TOCEntries < 5 {
					t.Fatalf("verify: %+v %v", res, err)
				}
			})
		}
	}
}

func TestRestoreJobsSpool(t *testing.T) {
	pg := testenv.Postgres(t)
	src := pg.NewDB(t, "bk_rich")
	pg.Query(t, src, richSQL)
	ctx := context.Background()
	var buf bytes.Buffer
	if _, err := bkexec.Backup(ctx, bkexec.BackupOptions{Conn: connFor(pg, src), Compression: bkexec.Gzip, Password: "pw"}, &buf); err != nil {
		t.Fatal(err)
	}
	dst := pg.NewDB(t, "bk_jobs")
	ro := bkexec.RestoreOptions{Target: connFor(pg, dst), Password: "pw", Jobs: 2, TempDir: t.TempDir()}
	layers, spool, err := bkexec.CheckBackup(ctx, opener(buf.Bytes()), ro)
	if err != nil || spool == "" {
		t.Fatalf("check: spool %q, %v", spool, err)
	}
	defer os.Remove(spool)
	if fi, _ := os.Stat(spool); fi.Mode().Perm() != 0o600 {
		t.Fatalf("spool file mode %v, want 0600", fi.Mode().Perm())
	}
	if err := bkexec.Restore(ctx, opener(buf.Bytes()), spool, layers, ro); err != nil {
		t.Fatal(err)
	}
	if got, want := fingerprint(t, pg, dst), fingerprint(t, pg, src); got != want {
		t.Fatalf("restored database differs")
	}
}

func TestPagilaRoundTrip(t *testing.T) {
	pg := testenv.Postgres(t)
	schemaFile, dataFile := testenv.Pagila(t)
	src := pg.NewDB(t, "bk_pagila")
	pg.RunFile(t, src, schemaFile)
	pg.RunFile(t, src, dataFile)
	ctx := context.Background()
	var buf bytes.Buffer
	if _, err := bkexec.Backup(ctx, bkexec.BackupOptions{Conn: connFor(pg, src), Compression: bkexec.Zstd, Password: "pagila"}, &buf); err != nil {
		t.Fatal(err)
	}
	dst := pg.NewDB(t, "bk_pagila_r")
	ro := bkexec.RestoreOptions{Target: connFor(pg, dst), Password: "pagila", SingleTransaction: true}
	layers, spool, err := bkexec.CheckBackup(ctx, opener(buf.Bytes()), ro)
	if err != nil {
		t.Fatal(err)
	}
	if err := bkexec.Restore(ctx, opener(buf.Bytes()), spool, layers, ro); err != nil {
		t.Fatal(err)
	}
	if a, b := pg.SchemaDump(t, src), pg.SchemaDump(t, dst); a != b {
		t.Fatal("schema of the restored Pagila differs from the source")
	}
	a, b := pg.TableChecksums(t, src), pg.TableChecksums(t, dst)
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
	pg := testenv.Postgres(t)
	src := pg.NewDB(t, "bk_fail")
	pg.Query(t, src, richSQL)
	cases := []struct {
		name, script, want string
	}{
		{"killed mid-stream", `"$REAL" "$@" | head -c 100000; echo "dying on purpose" >&2; kill -KILL $$`, "signal: killed"},
		{"non-zero exit", `"$REAL" "$@" | head -c 100000; echo "pg_dump: error: something broke" >&2; exit 1`, "something broke"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fakePgDump(t, c.script)
			store := sinks.NewLocal("local", t.TempDir())
			key := sinks.Key("bk", testTime, ".dump.gz")
			o := bkexec.BackupOptions{Conn: connFor(pg, src), Compression: bkexec.Gzip}
			_, err := sinks.FanOut(context.Background(), []sinks.Target{{Sink: store, Key: key}}, func(w io.Writer) error {
				_, err := bkexec.Backup(context.Background(), o, w)
				return err
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
			if objs, _ := store.List(context.Background(), ""); len(objs) != 0 {
				t.Fatalf("failed dump left %v", objs)
			}
			if lo, _ := store.Leftovers(context.Background(), ""); len(lo) != 0 {
				t.Fatalf("failed dump left temp files %v", lo)
			}
		})
	}
	t.Run("missing database", func(t *testing.T) {
		_, err := bkexec.Backup(context.Background(), bkexec.BackupOptions{Conn: connFor(pg, "no_such_db_x")}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestCheckBackupRefusesDamage(t *testing.T) {
	pg := testenv.Postgres(t)
	src := pg.NewDB(t, "bk_dmg")
	pg.Query(t, src, richSQL)
	ctx := context.Background()
	var enc, gz bytes.Buffer
	bkexec.Backup(ctx, bkexec.BackupOptions{Conn: connFor(pg, src), Compression: bkexec.Gzip, Password: "right"}, &enc)
	bkexec.Backup(ctx, bkexec.BackupOptions{Conn: connFor(pg, src), Compression: bkexec.Gzip}, &gz)
	flip := func(b []byte, off int) []byte { c := bytes.Clone(b); c[off] ^= 0x10; return c }
	e, g := enc.Bytes(), gz.Bytes()
	cases := []struct {
		name string
		data []byte
		pw   string
		want error
	}{
		{"wrong password", e, "wrong", bkexec.ErrWrongPassword},
		{"truncated encrypted (half)", e[:len(e)/2], "right", bkexec.ErrCorrupted},
		{"truncated encrypted (header)", e[:40], "right", bkexec.ErrTruncated},
		{"flipped encrypted body", flip(e, len(e)/2), "right", bkexec.ErrCorrupted},
		{"flipped encrypted header", flip(e, 20), "right", bkexec.ErrCorrupted},
		{"truncated gzip", g[:len(g)/2], "", io.ErrUnexpectedEOF},
		{"flipped gzip tail (crc)", flip(g, len(g)-6), "", nil},
		{"not a backup", bytes.Repeat([]byte{0, 1, 2, 3}, 100), "", bkexec.ErrUnknownFormat},
		{"empty file", nil, "", bkexec.ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := bkexec.CheckBackup(ctx, opener(c.data), bkexec.RestoreOptions{Password: c.pw})
			if err == nil {
				t.Fatal("damaged backup accepted")
			}
			if !errors.Is(err, bkexec.ErrRefused) {
				t.Fatalf("error %v is not ErrRefused", err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

func TestV0GzipDumpRestores(t *testing.T) {
	pg := testenv.Postgres(t)
	src := pg.NewDB(t, "bk_v0")
	pg.Query(t, src, richSQL)
	file := filepath.Join(t.TempDir(), "20240101_020000.000000000Z.dump.gz")
	cmd := exec.Command("sh", "-c", `pg_dump -Fc -d "$DB" | gzip > "$OUT"`)
	cmd.Env = append(os.Environ(), "PGHOST="+pg.Host, fmt.Sprintf("PGPORT=%d", pg.Port), "PGUSER="+pg.User, "DB="+src, "OUT="+file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	data, _ := os.ReadFile(file)
	dst := pg.NewDB(t, "bk_v0_r")
	ro := bkexec.RestoreOptions{Target: connFor(pg, dst)}
	ctx := context.Background()
	layers, _, err := bkexec.CheckBackup(ctx, opener(data), ro)
	if err != nil {
		t.Fatal(err)
	}
	if err := bkexec.Restore(ctx, opener(data), "", layers, ro); err != nil {
		t.Fatal(err)
	}
	if fingerprint(t, pg, dst) != fingerprint(t, pg, src) {
		t.Fatal("v0 restore differs")
	}
}

var testTime = mustTime("2026-11-25T02:00:00Z")
