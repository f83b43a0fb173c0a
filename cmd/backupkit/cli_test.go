package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

func TestValidateV0Example(t *testing.T) {
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "DB_PASSWORD": "c",
		"BACKUPKIT_ENC_PASSWORD": "d", "BACKUP_WEBHOOK_URL": "https://example.com/hook", "BACKUP_WEBHOOK_TOKEN": "t",
		"SMTP_USER": "u", "SMTP_PASSWORD": "p"} {
		t.Setenv(k, v)
	}
	out := mustCLI(t, 0, "validate", "-c", "../../schema/testdata/v0-full.yaml")
	if !strings.Contains(out, "valid") {
		t.Fatalf("validate said %q", out)
	}
	t.Setenv("DB_PASSWORD", "")
	os.Unsetenv("DB_PASSWORD")
	code, _, errs := cli(t, "validate", "-c", "../../schema/testdata/v0-full.yaml")
	if code != 2 || !strings.Contains(errs, "v0-full.yaml:26:17: databases[0].connection.password: environment variable DB_PASSWORD is not set") {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	if code, _, _ := cli(t, "plan"); code != 2 {
		t.Fatalf("plan without -c: exit %d", code)
	}
	if code, _, _ := cli(t, "frobnicate"); code != 2 {
		t.Fatalf("unknown command: exit %d", code)
	}
	if code, _, _ := cli(t, "plan", "--nope"); code != 2 {
		t.Fatalf("unknown flag: exit %d", code)
	}
	if out := mustCLI(t, 0, "schema"); !strings.Contains(out, "#Config") {
		t.Fatal("schema does not print the CUE schema")
	}
	if out := mustCLI(t, 0, "version"); !strings.HasPrefix(out, "backupkit ") || !strings.Contains(out, "\n"+format.ZstdEncoders()+"\n"+format.GzipDecoders()+"\n") {
		t.Fatalf("version: %q", out)
	}
}

func TestPlanApplyPruneEndToEnd(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	a, b := testDB(t, pg, "bk_a"), testDB(t, pg, "bk_b")
	cfg := config(t, pg, dir, nil,
		dbSpec{name: "alpha", database: a, extra: "      schedule: \"0 2 * * *\"\n      compression: gzip\n    retention:\n      keep_last: 2\n"},
		dbSpec{name: "beta", database: b, extra: "      schedule: \"*/5 * * * *\"\n      compression: zstd\n      encryption:\n        enabled: true\n        password: pw-beta\n"})

	p := parsePlan(t, mustCLI(t, 0, "plan", "-c", cfg, "-o", "json"))
	if len(p.Actions) != 2 || p.Actions[0].Type != "backup" || p.Actions[1].Type != "backup" || p.Version != 1 {
		t.Fatalf("fresh plan: %+v", p)
	}
	mustCLI(t, 2, "plan", "-c", cfg, "--detailed-exitcode")
	out := mustCLI(t, 0, "apply", "-c", cfg)
	if !strings.Contains(out, "2 succeeded, 0 failed") {
		t.Fatalf("apply: %s", out)
	}
	mustCLI(t, 0, "plan", "-c", cfg, "--detailed-exitcode")

	// Crafted old backups for alpha (keep_last 2) and a foreign file.
	store := filepath.Join(dir, "store", "alpha")
	old := []string{"20250101_020000.000000000Z.dump.gz", "20250102_020000.000000000Z.dump.gz", "20250103_020000.000000000Z.dump.gz"}
	for _, f := range old {
		writeFile(t, filepath.Join(store, f), "old")
	}
	writeFile(t, filepath.Join(store, "README.txt"), "not a backup")
	p = parsePlan(t, mustCLI(t, 2, "plan", "-c", cfg, "-o", "json", "--detailed-exitcode"))
	var planned []string
	for _, a := range p.Actions {
		if a.Type != "prune" || !strings.HasPrefix(a.Reason, "not kept by keep_last=2") {
			t.Fatalf("unexpected action %+v", a)
		}
		planned = append(planned, a.Key)
	}
	sort.Strings(planned)
	if strings.Join(planned, ",") != "alpha/"+old[0]+",alpha/"+old[1] {
		t.Fatalf("planned prunes %v", planned)
	}
	mustCLI(t, 0, "apply", "-c", cfg)
	left, _ := os.ReadDir(store)
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	got := strings.Join(names, ",")
	if strings.Contains(got, old[0]) || strings.Contains(got, old[1]) || !strings.Contains(got, old[2]) || !strings.Contains(got, "README.txt") {
		t.Fatalf("after prune: %s", got)
	}
	mustCLI(t, 0, "plan", "-c", cfg, "--detailed-exitcode")

	l := parseList(t, mustCLI(t, 0, "list", "-c", cfg, "-o", "json"))
	if len(l.Backups) != 3 {
		t.Fatalf("list: %+v", l)
	}
	for _, e := range l.Backups {
		if e.Key == "alpha/"+old[2] {
			if e.SHA256 != "" {
				t.Fatal("v0 file shows a checksum")
			}
			continue
		}
		if len(e.SHA256) != 64 || e.Size == 0 || len(e.KeptBy) == 0 {
			t.Fatalf("list entry %+v", e)
		}
	}
	// backup (v0) = forced backup + retention.
	out = mustCLI(t, 0, "backup", "-c", cfg, "--db", "alpha")
	if !strings.Contains(out, "✓ backup alpha → local:alpha/") || !strings.Contains(out, "✓ prune local:alpha/"+old[2]) {
		t.Fatalf("backup: %s", out)
	}
}

func TestRestoreFromLatestAndRefusals(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	src := testDB(t, pg, "bk_src")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src,
		extra: "      compression: gzip\n      encryption:\n        enabled: true\n        password: ${ENC_PW}\n"})
	t.Setenv("ENC_PW", "the-enc-password")
	mustCLI(t, 0, "backup", "-c", cfg)
	want := pg.TableChecksums(t, src)

	target := "bk_target_" + testenv.RandHex(3)
	t.Cleanup(func() { pg.DropDB(target) })
	out := mustCLI(t, 0, "restore", "-c", cfg, "--from", "latest", "--to-database", target)
	if !strings.Contains(out, "restored local:app/") {
		t.Fatalf("restore: %s", out)
	}
	if got := pg.TableChecksums(t, target); len(got) != 1 || got["public.items"] != want["public.items"] {
		t.Fatalf("restored %v want %v", got, want)
	}
	mustCLI(t, 0, "verify", "-c", cfg, "--from", "latest")

	// A target with tables is refused without --clean, and unchanged.
	pg.Query(t, target, "INSERT INTO items VALUES (99999, 'marker', NULL)")
	code, _, errs := cli(t, "restore", "-c", cfg, "--from", "latest", "--to-database", target)
	if code != 1 || !strings.Contains(errs, "already holds 2 object(s)") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// Damaged backups are refused before the target is touched.
	bs, _ := repo.List(t.Context(), sinks.NewLocal("l", filepath.Join(dir, "store")), "app")
	path := filepath.Join(dir, "store", bs[0].Key)
	data, _ := os.ReadFile(path)
	damaged := map[string][]byte{
		"truncated": data[:len(data)/2],
		"flipped":   append(append(append([]byte{}, data[:len(data)/2]...), data[len(data)/2]^0xff), data[len(data)/2+1:]...),
	}
	for name, d := range damaged {
		f := writeFile(t, filepath.Join(dir, "bad", name, "20260101_000000.000000000Z.dump.gz.enc"), string(d))
		code, _, errs := cli(t, "restore", "-c", cfg, "--from", f, "--to-database", target, "--clean")
		if code != 1 || !strings.Contains(errs, "restore refused; the target database was not changed") {
			t.Fatalf("%s: exit %d: %s", name, code, errs)
		}
		if pg.Query(t, target, "SELECT count(*) FROM items WHERE id = 99999") != "1" {
			t.Fatalf("%s: target changed", name)
		}
	}
	// Checksum sidecar: a stored backup changed after it was written.
	os.WriteFile(path, damaged["flipped"], 0o600)
	code, _, errs = cli(t, "verify", "-c", cfg, "--from", "local:"+bs[0].Key)
	if code != 1 || !strings.Contains(errs, "checksum mismatch") {
		t.Fatalf("verify of a changed file: exit %d: %s", code, errs)
	}
	for _, from := range []string{"local:" + bs[0].Key, "latest", path} {
		code, _, errs = cli(t, "restore", "-c", cfg, "--from", from, "--to-database", target, "--clean")
		if code != 1 || !strings.Contains(errs, "restore refused") || !strings.Contains(errs, "checksum mismatch") {
			t.Fatalf("restore of a changed stored backup (%s): exit %d: %s", from, code, errs)
		}
		if pg.Query(t, target, "SELECT count(*) FROM items WHERE id = 99999") != "1" {
			t.Fatal("target changed by a refused restore")
		}
	}
	// Wrong password.
	os.WriteFile(path, data, 0o600)
	t.Setenv("ENC_PW", "not-the-password")
	code, _, errs = cli(t, "restore", "-c", cfg, "--from", "latest", "--to-database", target, "--clean")
	if code != 1 || !strings.Contains(errs, "wrong encryption password") || strings.Contains(errs, "not-the-password") {
		t.Fatalf("wrong password: exit %d: %s", code, errs)
	}
	if pg.Query(t, target, "SELECT count(*) FROM items WHERE id = 99999") != "1" {
		t.Fatal("target changed after a wrong-password restore")
	}
	// --clean with the right password replaces the contents.
	t.Setenv("ENC_PW", "the-enc-password")
	mustCLI(t, 0, "restore", "-c", cfg, "--from", "latest", "--to-database", target, "--clean", "--single-transaction")
	if pg.Query(t, target, "SELECT count(*) FROM items WHERE id = 99999") != "0" {
		t.Fatal("--clean restore kept the old row")
	}
}

func TestFanOutLocalAndS3(t *testing.T) {
	pg := testenv.Postgres(t)
	srv := testenv.StartS3(t)
	dir := t.TempDir()
	src := pg.NewDB(t, "bk_big")
	// Incompressible enough to span more than two 5 MiB parts.
	pg.Query(t, src, `CREATE TABLE blobs AS SELECT g AS id, decode(string_agg(md5(g::text || '-' || h::text), ''), 'hex') AS b
		FROM generate_series(1, 1500) g, generate_series(1, 600) h GROUP BY g`)
	cfg := config(t, pg, dir, srv, dbSpec{name: "big", database: src, storage: "[local, s3main]",
		extra: "      compression: zstd\n      encryption:\n        enabled: true\n        password: pw\n"})
	mustCLI(t, 0, "backup", "-c", cfg)
	l := parseList(t, mustCLI(t, 0, "list", "-c", cfg, "-o", "json"))
	if len(l.Backups) != 2 || l.Backups[0].SHA256 != l.Backups[1].SHA256 || l.Backups[0].Key != l.Backups[1].Key {
		t.Fatalf("two identical copies expected: %+v", l)
	}
	if l.Backups[1].Size < 11<<20 {
		t.Fatalf("backup is %d bytes; the test wants more than two parts", l.Backups[1].Size)
	}
	// Restore straight from S3.
	target := "bk_from_s3_" + testenv.RandHex(3)
	t.Cleanup(func() { pg.DropDB(target) })
	var s3key string
	for _, e := range l.Backups {
		if e.Storage == "s3main" {
			s3key = e.Key
		}
	}
	mustCLI(t, 0, "restore", "-c", cfg, "--from", "s3main:"+s3key, "--to-database", target)
	if a, b := pg.TableChecksums(t, src), pg.TableChecksums(t, target); a["public.blobs"] != b["public.blobs"] {
		t.Fatalf("restored from S3 differs: %v vs %v", a, b)
	}
	// `latest` for a database that writes only to S3 reads from S3.
	s3only := config(t, pg, t.TempDir(), srv, dbSpec{name: "big", database: src, storage: "s3main",
		extra: "      compression: zstd\n      encryption:\n        enabled: true\n        password: pw\n"})
	target2 := "bk_from_s3_latest_" + testenv.RandHex(3)
	t.Cleanup(func() { pg.DropDB(target2) })
	out := mustCLI(t, 0, "restore", "-c", s3only, "--from", "latest", "--to-database", target2)
	if !strings.Contains(out, "restored s3main:"+s3key) {
		t.Fatalf("latest did not pick the S3 backup: %s", out)
	}
	if a, b := pg.TableChecksums(t, src), pg.TableChecksums(t, target2); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("restored from S3 latest differs")
	}

	// S3 stopped mid-backup: the local copy completes, S3's fails, and
	// nothing is visible under a final S3 key. The dump pauses after 6 MB
	// (past S3's first 5 MiB part), so the stop lands mid-backup however
	// fast the machine (unpaused, the whole backup took 250 ms here).
	t.Setenv("PATH", shimPgDump(t, `"$REAL" "$@" | (head -c 6000000; sleep 2; cat)`))
	go func() {
		time.Sleep(300 * time.Millisecond)
		srv.Stop()
	}()
	code, out, _ := cli(t, "backup", "-c", cfg)
	if code != 1 || !strings.Contains(out, "✓ backup big → local:") || !strings.Contains(out, "✗ backup big → s3main") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	srv.Restart(t)
	l = parseList(t, mustCLI(t, 0, "list", "-c", cfg, "-o", "json"))
	var local, s3 int
	for _, e := range l.Backups {
		if e.Storage == "local" {
			local++
		} else {
			s3++
		}
	}
	if local != 2 || s3 != 1 {
		t.Fatalf("after S3 failure: %d local, %d S3 backups, want 2 and 1", local, s3)
	}
}

func TestSQLFallbackAndStrictSniff(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	src := testDB(t, pg, "bk_sql")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: "      compression: zstd\n"})
	// A plain SQL dump, gzipped, as some v0 users kept.
	file := filepath.Join(dir, "20250101_000000.000000000Z.dump.gz")
	cmd := exec.Command("sh", "-c", `pg_dump -Fp -d "$DB" | gzip > "$OUT"`)
	cmd.Env = append(os.Environ(), "PGHOST="+pg.Host, fmt.Sprintf("PGPORT=%d", pg.Port), "PGUSER="+pg.User, "DB="+src, "OUT="+file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	target := "bk_sql_target_" + testenv.RandHex(3)
	t.Cleanup(func() { pg.DropDB(target) })
	code, _, errs := cli(t, "restore", "-c", cfg, "--from", file, "--to-database", target)
	if code != 1 || !strings.Contains(errs, "--allow-sql-fallback") {
		t.Fatalf("SQL without the flag: exit %d %s", code, errs)
	}
	// --strict-sniff: the config says zstd, the file is gzip.
	code, _, errs = cli(t, "restore", "-c", cfg, "--from", file, "--to-database", target, "--allow-sql-fallback", "--strict-sniff")
	if code != 1 || !strings.Contains(errs, "--strict-sniff") {
		t.Fatalf("strict sniff: exit %d %s", code, errs)
	}
	mustCLI(t, 0, "restore", "-c", cfg, "--from", file, "--to-database", target, "--allow-sql-fallback")
	if a, b := pg.TableChecksums(t, src), pg.TableChecksums(t, target); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("SQL restore differs: %v vs %v", a, b)
	}
}
