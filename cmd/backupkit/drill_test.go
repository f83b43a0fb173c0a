package main

// Restore drills and manifests: a backup that has never been restored is
// a hope; these tests make it a fact, or a failure someone hears about.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

func scratchDatabases(t *testing.T, pg testenv.PG) string {
	return pg.Query(t, "postgres", "SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'backupkit_drill_%'")
}

// noScratchLeft fails t if scratch databases stay on the server: other
// packages' tests, running beside this one, make and drop their own for a
// few seconds at most, so only one that stays is this test's.
func noScratchLeft(t *testing.T, pg testenv.PG) {
	t.Helper()
	if !testenv.WaitFor(context.Background(), 20*time.Second, func() bool { return scratchDatabases(t, pg) == "" }) {
		t.Fatalf("scratch databases left: %s", scratchDatabases(t, pg))
	}
}

func TestDrillPagilaPassesAndLeavesNothing(t *testing.T) {
	pg := testenv.Postgres(t)
	schemaFile, dataFile := testenv.Pagila(t)
	dir := t.TempDir()
	db := pg.NewDB(t, "bk_drill_pagila")
	pg.RunFile(t, db, schemaFile)
	pg.RunFile(t, db, dataFile)
	cfg := config(t, pg, dir, nil, dbSpec{name: "pagila", database: db,
		extra: "      compression: zstd\n      encryption:\n        enabled: true\n        password: drill-pw\n" +
			"    drill:\n      max_duration: 5m\n      checks:\n        - name: films present\n          sql: \"select count(*) = 1000 from film\"\n" +
			"        - name: rentals have customers\n          sql: \"select bool_and(customer_id is not null) from rental\"\n"})
	out := mustCLI(t, 0, "backup", "-c", cfg)
	if !strings.Contains(out, "tables") {
		t.Fatalf("backup: %s", out)
	}
	// The manifest: versions, sizes, checksum, every table with its rows.
	bs, _ := repo.List(context.Background(), sinks.NewLocal("l", filepath.Join(dir, "store")), "pagila")
	m, err := repo.ReadManifest(context.Background(), sinks.NewLocal("l", filepath.Join(dir, "store")), bs[0].Key)
	if err != nil || m == nil {
		t.Fatalf("manifest: %v", err)
	}
	if m.Tables["public.film"] != 1000 || m.Tables["public.rental"] != 16044 || !strings.HasPrefix(m.ServerVersion, "1") ||
		m.StoredBytes != bs[0].Size || len(m.SHA256) != 64 || m.Compression != format.Zstd || !strings.Contains(m.Encryption, "argon2id") {
		t.Fatalf("manifest %+v", m)
	}
	// Table sizes in bytes, for sharing tables out among restore jobs.
	if b := m.TableBytes; len(b) != len(m.Tables) || b["public.rental"] <= 0 || b["public.film"] <= 0 || b["public.rental"]+b["public.film"] >= m.RawBytes {
		t.Fatalf("manifest table_bytes %v (raw %d)", b, m.RawBytes)
	}
	l := mustCLI(t, 0, "list", "-c", cfg, "-o", "json")
	if !strings.Contains(l, `"manifest"`) || !strings.Contains(l, `"public.film": 1000`) {
		t.Fatalf("list -o json lacks the manifest:\n%s", l)
	}

	out = mustCLI(t, 0, "drill", "-c", cfg)
	if !strings.Contains(out, "✓ drill pagila ← local:") || !strings.Contains(out, "every check true") {
		t.Fatalf("drill: %s", out)
	}
	noScratchLeft(t, pg)
	l = mustCLI(t, 0, "list", "-c", cfg)
	if !strings.Contains(l, "ok ") || !strings.Contains(l, "restored in") {
		t.Fatalf("list does not show the drill:\n%s", l)
	}
}

func TestDrillFailures(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	db := testDB(t, pg, "bk_drill_fail")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db, extra: "      compression: gzip\n" +
		"    drill:\n      checks:\n        - name: no items over 2999\n          sql: \"select count(*) = 0 from items where id > 2999\"\n"})
	hook, events := hookRecorder(t)
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, []byte("notifications:\n  - type: webhook\n    on: [drill_failure]\n    config:\n      url: "+hook.URL+"\n      max_wait: 10s\n")...), 0o600)
	mustCLI(t, 0, "backup", "-c", cfg)
	good := ageBackups(t, store, "app", time.Hour)[0]

	// A probe that returns false: the drill fails, notifies, exits 1.
	code, out, _ := cli(t, "drill", "-c", cfg)
	if code != 1 || !strings.Contains(out, "FAILED: drill failed at no items over 2999: the probe returned false") {
		t.Fatalf("exit %d: %s", code, out)
	}
	ev := events()
	if len(ev) != 1 || ev[0]["event"] != "drill" || ev[0]["status"] != "failure" || ev[0]["check"] != "no items over 2999" {
		t.Fatalf("drill failure notification: %+v", ev)
	}
	noScratchLeft(t, pg)
	os.WriteFile(cfg, []byte(strings.Replace(string(must(os.ReadFile(cfg))), "id > 2999", "id > 3000", 1)), 0o600)
	mustCLI(t, 0, "drill", "-c", cfg)

	// A table emptied since the manifest was written: the row counts
	// catch it (the manifest of a copy is tampered to say 5 rows more).
	s := sinks.NewLocal("l", store)
	m, _ := repo.ReadManifest(context.Background(), s, good)
	m.Key = good // (the copy was renamed: keep its manifest beside it)
	m.Tables["public.items"] += 5
	repo.WriteManifest(context.Background(), s, m)
	code, out, _ = cli(t, "drill", "-c", cfg, "--from", "local:"+good)
	if code != 1 || !strings.Contains(out, "table public.items has 3000 rows, the manifest records 3005") {
		t.Fatalf("tampered manifest: exit %d: %s", code, out)
	}
	if code, _, errs := cli(t, "verify", "-c", cfg, "--from", "local:"+good); code != 1 || !strings.Contains(errs, "differs from its manifest") {
		t.Fatalf("verify against the manifest: exit %d: %s", code, errs)
	}
	m.Tables["public.items"] -= 5
	repo.WriteManifest(context.Background(), s, m)

	// A newer backup whose stored bytes were damaged fails its drill; the
	// older good one is still listed as good.
	mustCLI(t, 0, "backup", "-c", cfg)
	bs, _ := repo.List(context.Background(), s, "app")
	data, _ := os.ReadFile(filepath.Join(store, bs[0].Key))
	data[len(data)/2] ^= 0xff
	os.WriteFile(filepath.Join(store, bs[0].Key), data, 0o600)
	mustCLI(t, 0, "drill", "-c", cfg, "--from", "local:"+good)
	code, out, _ = cli(t, "drill", "-c", cfg)
	if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "restore") {
		t.Fatalf("damaged backup: exit %d: %s", code, out)
	}
	var lj listJSON
	lj2 := mustCLI(t, 0, "list", "-c", cfg, "-o", "json")
	json.Unmarshal([]byte(lj2), &lj)
	var doc struct {
		Backups []struct {
			Key       string
			LastDrill *format.DrillResult `json:"last_drill"`
		}
	}
	json.Unmarshal([]byte(lj2), &doc)
	states := map[string]bool{}
	for _, b := range doc.Backups {
		if b.LastDrill != nil {
			states[b.Key] = b.LastDrill.OK
		}
	}
	if ok, seen := states[good]; !seen || !ok {
		t.Fatalf("the good backup is not listed as drilled ok: %v", states)
	}
	if ok, seen := states[bs[0].Key]; !seen || ok {
		t.Fatalf("the damaged backup is not listed as a failed drill: %v", states)
	}
}

// A drill killed mid-restore leaves its scratch database; the next tick
// that drills on that server drops it.
func TestKilledDrillScratchDroppedByNextTick(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	db := pg.NewDB(t, "bk_drill_kill")
	pg.Query(t, db, "CREATE TABLE big AS SELECT g, md5(g::text) AS v FROM generate_series(1, 300000) g")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db, extra: "      compression: gzip\n    drill:\n      schedule: \"0 5 * * 0\"\n"})
	mustCLI(t, 0, "backup", "-c", cfg)
	// A pg_restore that stalls: the drill is killed while it restores.
	real, _ := exec.LookPath("pg_restore")
	shim := t.TempDir()
	os.WriteFile(filepath.Join(shim, "pg_restore"), []byte("#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --list -o \"$a\" = --version ] && exec \""+real+"\" \"$@\"; done\nsleep 60\n"), 0o755)
	cmd := exec.Command(binary(t), "drill", "-c", cfg)
	cmd.Env = append(os.Environ(), "PATH="+shim+":"+os.Getenv("PATH"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the scratch database", 30*time.Second, func() bool { return scratchDatabases(t, pg) != "" })
	cmd.Process.Kill()
	cmd.Wait()
	left := scratchDatabases(t, pg)
	if left == "" {
		t.Fatal("the killed drill left nothing to sweep")
	}
	t.Cleanup(func() {
		for _, d := range strings.Split(scratchDatabases(t, pg), ",") {
			if d != "" {
				pg.DropDB(d)
			}
		}
	})
	// The next run that drills (the drill is due: never drilled) sweeps.
	out := mustCLI(t, 0, "apply", "-c", cfg)
	if !strings.Contains(out, "✓ drill app") {
		t.Fatalf("apply did not drill:\n%s", out)
	}
	t.Logf("the killed drill left %s", left)
	noScratchLeft(t, pg)
}

// Drills are planned like backups: due exactly on their schedule after
// the last drill, and not before.
func TestDrillPlannedOnSchedule(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.yaml"), "version: 1\nstorage: [{name: local, type: local, local: {path: "+dir+"/store}}]\n"+
		"databases:\n  - name: app\n    type: postgres\n    connection: {host: 127.0.0.1, database: app, user: app}\n"+
		"    backup: {storage: local, compression: gzip}\n    drill: {schedule: \"0 5 * * 0\"}\n")
	key := "app/20261122_010000.000000000Z.dump.gz"
	writeFile(t, filepath.Join(dir, "store", key), "x")
	// Never drilled: due now.
	p := parsePlan(t, mustCLI(t, 0, "plan", "-c", cfg, "-o", "json", "--at", "2026-11-24T00:00:00Z"))
	if len(p.Actions) != 1 || p.Actions[0].Type != "drill" || p.Actions[0].Key != key || p.Actions[0].Reason != "drill due: never drilled" {
		t.Fatalf("never drilled: %+v", p.Actions)
	}
	// Drilled on Sunday 22nd 05:00: the next is due on the 29th at 05:00.
	writeFile(t, filepath.Join(dir, "store", format.DrillKey(key, time.Date(2026, 11, 22, 5, 0, 10, 0, time.UTC), true)), "{}")
	for at, want := range map[string]int{"2026-11-29T04:59:59Z": 0, "2026-11-29T05:00:00Z": 1, "2026-11-23T05:00:00Z": 0} {
		p := parsePlan(t, mustCLI(t, 0, "plan", "-c", cfg, "-o", "json", "--at", at))
		if len(p.Actions) != want {
			t.Fatalf("at %s: %+v, want %d drill(s)", at, p.Actions, want)
		}
		if want == 1 && p.Actions[0].Reason != "drill due: slot 2026-11-29T05:00:00Z, last drill 2026-11-22T05:00:10Z" {
			t.Fatalf("reason %q", p.Actions[0].Reason)
		}
	}
	if out := mustCLI(t, 0, "plan", "-c", cfg, "--at", "2026-11-29T05:00:00Z"); !strings.Contains(out, "* drill local:"+key) {
		t.Fatalf("text plan: %s", out)
	}
}

// A dump with no table data of a database that has tables is a failed
// backup, not an empty one counted as success.
func TestZeroTableDumpOfNonEmptyDatabaseFails(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	db := testDB(t, pg, "bk_zero")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db, extra: "      compression: gzip\n"})
	// A pg_dump that dumps only the schema (as a broken wrapper might).
	t.Setenv("PATH", shimPgDump(t, `"$REAL" --schema-only "$@"`))
	code, out, _ := cli(t, "backup", "-c", cfg)
	if code != 1 || !strings.Contains(out, "pg_dump wrote no table data, but "+db+" has 1 table(s)") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if n := countBackups(t, filepath.Join(dir, "store"), "app"); n != 0 {
		t.Fatalf("%d backup(s) visible after a 0-table dump", n)
	}
	_ = fmt.Sprint
}
