package main

// What an operator and a CI job rely on: exit codes, choosing any backup,
// honest messages, one JSON envelope.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
)

// With --detailed-exitcode, 2 means "changes pending" and nothing else:
// every error, usage and config errors included, is 1.
func TestDetailedExitcodeErrorsAreOne(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, filepath.Join(dir, "good.yaml"), "version: 1\nstorage: [{name: local, type: local, local: {path: "+dir+"/store}}]\n"+
		"databases:\n  - name: app\n    type: postgres\n    connection: {host: 127.0.0.1, database: app, user: app}\n    backup: {schedule: \"0 2 * * *\", storage: local}\n")
	bad := writeFile(t, filepath.Join(dir, "bad.yaml"), "version: 1\nstorage: []\ndatabases: []\n")
	for name, args := range map[string][]string{
		"no -c":          {"plan", "--detailed-exitcode"},
		"missing file":   {"plan", "-c", filepath.Join(dir, "nope.yaml"), "--detailed-exitcode"},
		"broken config":  {"plan", "-c", bad, "--detailed-exitcode"},
		"unknown --db":   {"plan", "-c", good, "--db", "nope", "--detailed-exitcode"},
		"unknown flag":   {"plan", "-c", good, "--detailed-exitcode", "--nope"},
		"bad --at":       {"plan", "-c", good, "--at", "yesterday", "--detailed-exitcode"},
		"listing failed": {"plan", "-c", strings.Replace(good, "good", "good", 1), "--detailed-exitcode"},
	} {
		if name == "listing failed" {
			os.WriteFile(filepath.Join(dir, "store"), []byte("a file where the folder should be"), 0o600)
		}
		if code, _, errs := cli(t, args...); code != 1 {
			t.Errorf("%s: exit %d, want 1: %s", name, code, errs)
		}
		os.Remove(filepath.Join(dir, "store"))
	}
	// Without the flag, config errors stay 2; changes pending are 2 with it.
	if code, _, _ := cli(t, "plan", "-c", bad); code != 2 {
		t.Fatalf("broken config without --detailed-exitcode: exit %d, want 2", code)
	}
	if code, _, errs := cli(t, "plan", "-c", good, "--detailed-exitcode"); code != 2 {
		t.Fatalf("changes pending: exit %d, want 2: %s", code, errs)
	}
}

// verify accepts a pg_dump archive, or (with the SQL fallback) a pg_dump
// plain dump; a gzip of any other text is not a backup.
func TestVerifyRefusesTextThatIsNoDump(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.yaml"), "version: 1\nstorage: [{name: local, type: local, local: {path: "+dir+"/store}}]\n"+
		"databases:\n  - name: app\n    type: postgres\n    connection: {host: 127.0.0.1, database: app, user: app}\n    backup: {storage: local, compression: gzip}\n")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte("hello\nthis is a shopping list, not a database\n"))
	zw.Close()
	f := writeFile(t, filepath.Join(dir, "app", "20260101_000000.000000000Z.dump.gz"), buf.String())
	for _, extra := range [][]string{nil, {"--allow-sql-fallback"}} {
		code, out, errs := cli(t, append([]string{"verify", "-c", cfg, "--from", f}, extra...)...)
		if code != 1 || strings.Contains(out, "ok") || !strings.Contains(errs, "SQL text") && !strings.Contains(errs, "not a pg_dump plain-text dump") {
			t.Fatalf("verify %v of gzipped text: exit %d\n%s%s", extra, code, out, errs)
		}
	}
}

// A backup can be chosen by ID, ID prefix, bare key, time or date, as
// `list` shows them; every results command speaks one JSON envelope.
func TestChooseBackupsAndJSONEverywhere(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	db := testDB(t, pg, "bk_choose")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db, extra: "      compression: gzip\n"})
	mustCLI(t, 0, "backup", "-c", cfg)
	older := ageBackups(t, filepath.Join(dir, "store"), "app", 48*60*60e9)[0]
	mustCLI(t, 0, "backup", "-c", cfg)

	list := mustCLI(t, 0, "list", "-c", cfg)
	id := format.ID(older)
	if !strings.Contains(list, id) || !strings.Contains(list, "2d ago") || !strings.Contains(list, "LOCAL TIME") {
		t.Fatalf("list does not show the ID %s and age:\n%s", id, list)
	}
	n, _ := format.ParseKey(older)
	for _, from := range []string{id, id[:5], older, n.Time.Add(60e9).Format("2006-01-02T15:04:05Z07:00")} {
		out := mustCLI(t, 0, "verify", "-c", cfg, "--from", from)
		if !strings.Contains(out, older) {
			t.Fatalf("--from %s chose another backup: %s", from, out)
		}
	}
	if code, _, errs := cli(t, "verify", "-c", cfg, "--from", "ffffffff"); code != 1 || !strings.Contains(errs, "matches ffffffff") {
		t.Fatalf("unknown ID: exit %d: %s", code, errs)
	}

	// One envelope for every -o json.
	for _, args := range [][]string{
		{"plan", "-c", cfg, "-o", "json"},
		{"apply", "-c", cfg, "-o", "json"},
		{"backup", "-c", cfg, "-o", "json"},
		{"list", "-c", cfg, "-o", "json"},
		{"verify", "-c", cfg, "--from", "latest", "-o", "json"},
		{"validate", "-c", cfg, "-o", "json"},
		{"test", "-c", cfg, "-o", "json"},
		{"restore", "-c", cfg, "--from", "latest", "--to-database", "bk_choose_json_" + testenv.RandHex(3), "-o", "json"},
	} {
		code, out, errs := cli(t, args...)
		var doc map[string]any
		if err := json.Unmarshal([]byte(out), &doc); err != nil || doc["version"] != 1.0 {
			t.Fatalf("%v: exit %d, not one JSON envelope: %v\n%s\n%s", args, code, err, out, errs)
		}
		if args[0] == "restore" {
			pg.DropDB(args[6])
		}
	}
	// Outcomes carry machine-readable codes next to the text.
	out := mustCLI(t, 0, "backup", "-c", cfg, "-o", "json")
	if !strings.Contains(out, `"reason_code": "forced"`) || !strings.Contains(out, `"status": "ok"`) {
		t.Fatalf("backup -o json: %s", out)
	}
}

// apply shows the plan before it acts, and when there is nothing to do
// says when there will be.
func TestApplyShowsThePlanAndWhatIsNext(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	db := testDB(t, pg, "bk_next")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db, extra: "      schedule: \"0 2 * * *\"\n      compression: gzip\n"})
	out := mustCLI(t, 0, "apply", "-c", cfg)
	plan, done := strings.Index(out, "+ backup app → local (due: no backup yet)"), strings.Index(out, "✓ backup app")
	if plan < 0 || done < plan {
		t.Fatalf("apply did not show the plan first:\n%s", out)
	}
	out = mustCLI(t, 0, "apply", "-c", cfg)
	if !strings.Contains(out, "No changes") || !strings.Contains(out, "next due ") || strings.Contains(out, "Nothing to do.") {
		t.Fatalf("a second apply does not say when the next backup is due:\n%s", out)
	}
	// --dry-run is plan.
	if out := mustCLI(t, 0, "apply", "-c", cfg, "--dry-run", "--force"); !strings.Contains(out, "No changes") {
		t.Fatalf("--dry-run: %s", out)
	}
}
