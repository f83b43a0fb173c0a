package main

// The reliability suite: faults injected on purpose, each with the
// guarantee it must keep (README "Guarantees").

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

// shimPgDump puts a pg_dump on PATH that runs the real one through script.
func shimPgDump(t *testing.T, script string) string {
	real, err := exec.LookPath("pg_dump")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// bash with pipefail: pg_dump's own exit status is the shim's.
	body := "#!/bin/bash\nset -o pipefail\nREAL=\"" + real + "\"\n[ \"$1\" = --version ] && exec \"$REAL\" --version\n" + script + "\n"
	if err := os.WriteFile(filepath.Join(dir, "pg_dump"), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir + ":" + os.Getenv("PATH")
}

func s3Sink(t *testing.T, srv *testenv.S3Server) *sinks.S3 {
	s, err := sinks.NewS3(context.Background(), "s3main", sinks.S3Options{Bucket: "backups", Region: "us-east-1", Prefix: "bk",
		Endpoint: srv.Endpoint, ForcePathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSIGKILLMidBackup(t *testing.T) {
	pg := testenv.Postgres(t)
	srv := testenv.StartS3(t)
	for _, storage := range []string{"local", "s3main"} {
		t.Run(storage, func(t *testing.T) {
			dir := t.TempDir()
			db := testDB(t, pg, "bk_kill")
			cfg := config(t, pg, dir, srv, dbSpec{name: "app", database: db, storage: storage,
				extra: "      schedule: \"0 3 * * *\"\n      compression: zstd\n      encryption:\n        enabled: true\n        password: pw\n"})
			var sink sinks.Sink = sinks.NewLocal("local", filepath.Join(dir, "store"))
			if storage == "s3main" {
				sink = s3Sink(t, srv)
			}
			// A dump that writes more than one 5 MiB part, then hangs.
			path := shimPgDump(t, `"$REAL" "$@"; head -c 12000000 /dev/urandom; sleep 120`)
			cmd := exec.Command(binary(t), "backup", "-c", cfg)
			cmd.Env = append(os.Environ(), "PATH="+path)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "an unfinished write", 30*time.Second, func() bool {
				lo, _ := sink.Leftovers(context.Background(), "app/")
				return len(lo) > 0
			})
			cmd.Process.Kill() // SIGKILL: no cleanup code runs
			cmd.Wait()
			if bs, _ := repo.List(context.Background(), sink, "app"); len(bs) != 0 {
				t.Fatalf("a killed backup is visible: %+v", bs)
			}
			p := parsePlan(t, mustCLI(t, 2, "plan", "-c", cfg, "-o", "json", "--detailed-exitcode", "--run-timeout", "3s"))
			if len(p.Actions) < 1 || p.Actions[0].Type != "backup" || p.Actions[0].Reason != "due: no backup yet" {
				t.Fatalf("plan after the kill: %+v", p.Actions)
			}
			time.Sleep(3100 * time.Millisecond) // leftovers older than the run timeout
			out := mustCLI(t, 0, "apply", "-c", cfg, "--run-timeout", "3s")
			if !strings.Contains(out, "✓ backup app") || !strings.Contains(out, "✓ cleanup") {
				t.Fatalf("apply after the kill:\n%s", out)
			}
			if lo, _ := sink.Leftovers(context.Background(), "app/"); len(lo) != 0 {
				t.Fatalf("leftovers remain: %+v", lo)
			}
			if bs, _ := repo.List(context.Background(), sink, "app"); len(bs) != 1 {
				t.Fatalf("%d backups after apply, want 1", len(bs))
			}
		})
	}
}

// hookRecorder is a webhook endpoint that records events.
func hookRecorder(t *testing.T) (*httptest.Server, func() []map[string]any) {
	var mu sync.Mutex
	var events []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e map[string]any
		json.NewDecoder(r.Body).Decode(&e)
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return srv, func() []map[string]any { mu.Lock(); defer mu.Unlock(); return append([]map[string]any(nil), events...) }
}

func withHook(t *testing.T, cfg, url string) {
	b, _ := os.ReadFile(cfg)
	b = append(b, []byte("notifications:\n  - type: webhook\n    on: [both]\n    config:\n      url: "+url+"\n      max_wait: 10s\n")...)
	os.WriteFile(cfg, b, 0o600)
}

func TestBackendTerminatedMidDump(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	db := pg.NewDB(t, "bk_term")
	pg.Query(t, db, "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g+1)::text) AS v FROM generate_series(1, 600000) g")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db, extra: "      compression: gzip\n"})
	hook, events := hookRecorder(t)
	withHook(t, cfg, hook.URL)
	// pg_dump's output stalls, so its backend is mid-COPY when we end it.
	t.Setenv("PATH", shimPgDump(t, `"$REAL" "$@" | (head -c 100000; sleep 4; cat)`))
	done := make(chan struct{})
	var code int
	var out, errs string
	go func() {
		defer close(done)
		code, out, errs = cli(t, "backup", "-c", cfg)
	}()
	waitFor(t, "the dump's backend", 20*time.Second, func() bool {
		n := pg.Query(t, "postgres", fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND application_name = 'backupkit' AND query ILIKE 'COPY%%'", db))
		return n == "1"
	})
	pg.Query(t, "postgres", fmt.Sprintf("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s' AND application_name = 'backupkit'", db))
	<-done
	if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "pg_dump failed") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if bs, _ := repo.List(context.Background(), sinks.NewLocal("l", filepath.Join(dir, "store")), "app"); len(bs) != 0 {
		t.Fatalf("visible after a failed dump: %+v", bs)
	}
	if lo, _ := sinks.NewLocal("l", filepath.Join(dir, "store")).Leftovers(context.Background(), ""); len(lo) != 0 {
		t.Fatalf("temp files left: %+v", lo)
	}
	ev := events()
	if len(ev) == 0 || ev[len(ev)-1]["status"] != "failure" || !strings.Contains(fmt.Sprint(ev[len(ev)-1]["error"]), "pg_dump") {
		t.Fatalf("failure event: %+v", ev)
	}
}

func TestLocalStorageFull(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	os.MkdirAll(store, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", store).CombinedOutput(); err != nil {
		testenv.Missing(t, "a small filesystem: mount tmpfs needs root: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", store).Run() })
	db := pg.NewDB(t, "bk_full")
	// About 8 MB of incompressible data: cannot fit in 2 MB.
	pg.Query(t, db, "CREATE TABLE noise AS SELECT g, decode(md5(g::text) || md5((g*3)::text), 'hex') AS b FROM generate_series(1, 250000) g")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db, extra: "      compression: zstd\n      encryption:\n        enabled: true\n        password: pw\n    retention:\n      keep_last: 1\n"})
	older := filepath.Join(store, "app", "20250101_000000.000000000Z.dump.zst.enc")
	writeFile(t, older, "an older backup")
	code, out, _ := cli(t, "backup", "-c", cfg)
	if code != 1 || !strings.Contains(out, "no space left on device") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if b, err := os.ReadFile(older); err != nil || string(b) != "an older backup" {
		t.Fatalf("the older backup was touched: %q %v", b, err)
	}
	entries, _ := os.ReadDir(filepath.Join(store, "app"))
	if len(entries) != 1 {
		t.Fatalf("left in the full storage: %v", entries)
	}
	if !strings.Contains(out, "prune app → local skipped: a backup of this database failed in this run") {
		t.Fatalf("the prune was not skipped:\n%s", out)
	}
}

func TestNothingPrunedAfterFailedBackup(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: "no_such_db_for_prune", extra: "    retention:\n      keep_last: 1\n"})
	var files []string
	for _, d := range []string{"20250101", "20250201", "20250301"} {
		files = append(files, writeFile(t, filepath.Join(dir, "store", "app", d+"_000000.000000000Z.dump"), d))
	}
	// Retention wants two prunes (no schedule: no backup is due) ...
	p := parsePlan(t, mustCLI(t, 0, "plan", "-c", cfg, "-o", "json"))
	if len(p.Actions) != 2 || p.Actions[0].Type != "prune" {
		t.Fatalf("plan: %+v", p.Actions)
	}
	// ... but a forced backup that fails prunes nothing.
	code, out, _ := cli(t, "backup", "-c", cfg)
	if code != 1 || strings.Count(out, "prune app → local skipped") != 3 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s was pruned after a failed backup", f)
		}
	}
}

// corrupt returns damaged variants of a backup, with the words one of
// which the refusal must give as its cause.
func corrupt(data []byte) map[string]struct {
	data  []byte
	cause []string
} {
	n := len(data)
	flip := func(off int) []byte { c := append([]byte(nil), data...); c[off] ^= 0x20; return c }
	cut := []string{"truncated", "unexpected EOF", "stops early"}
	changed := []string{"corrupted", "authentication", "checksum", "invalid", "not a readable pg_dump archive", "flate", "magic", "header"}
	type dmg = struct {
		data  []byte
		cause []string
	}
	return map[string]dmg{
		"truncated at 1 byte":  {data[:1], append(cut, "not a backup", "empty")},
		"truncated at 10%":     {data[:n/10], cut},
		"truncated at 50%":     {data[:n/2], cut},
		"truncated at 90%":     {data[:n*9/10], cut},
		"truncated by 1 byte":  {data[:n-1], append(cut, changed...)},
		"flipped in header":    {flip(3), append(changed, "not a backup")},
		"flipped in body":      {flip(n / 2), changed},
		"flipped near the end": {flip(n - 3), append(changed, cut...)},
	}
}

// TestRestoreRefusesEveryCorruption damages multi-MiB backups (many
// encryption chunks, megabytes of compressed stream) in every way and
// restores them with --clean over a target holding a marker row: each is
// refused before the target is touched, naming the cause.
func TestRestoreRefusesEveryCorruption(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	src := pg.NewDB(t, "bk_corrupt")
	// About 8 MB that does not compress: the encrypted backup spans ~16
	// chunks of 512 KiB.
	pg.Query(t, src, "CREATE TABLE noise AS SELECT g, decode(md5(g::text) || md5((g*3)::text), 'hex') AS b FROM generate_series(1, 250000) g")
	target := pg.NewDB(t, "bk_corrupt_target")
	pg.Query(t, target, "CREATE TABLE marker (note text); INSERT INTO marker VALUES ('untouched')")
	want := pg.TableChecksums(t, target)
	for _, pipe := range []string{"compression: gzip", "compression: zstd", "compression: zstd\n      encryption:\n        enabled: true\n        password: right", "compression: none"} {
		dir := t.TempDir()
		cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: "      " + pipe + "\n"})
		mustCLI(t, 0, "backup", "-c", cfg)
		bs, _ := repo.List(context.Background(), sinks.NewLocal("l", filepath.Join(dir, "store")), "app")
		data, _ := os.ReadFile(filepath.Join(dir, "store", bs[0].Key))
		if len(data) < 6<<20 {
			t.Fatalf("%s: backup of %d bytes; want several MiB", pipe, len(data))
		}
		cases := corrupt(data)
		cases["wrong file type"] = struct {
			data  []byte
			cause []string
		}{[]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), []string{"not a backup"}}
		for name, c := range cases {
			if pipe == "compression: none" && strings.HasPrefix(name, "flipped in body") {
				continue // a plain archive carries no checksum of its data: see the sidecar cases
			}
			// Without the checksum sidecar: the bytes alone must tell.
			f := writeFile(t, filepath.Join(dir, "bad", strings.ReplaceAll(name, " ", "_"), filepath.Base(bs[0].Key)), string(c.data))
			code, _, errs := cli(t, "restore", "-c", cfg, "--from", f, "--to-database", target, "--clean")
			if code != 1 || !strings.Contains(errs, "restore refused; the target database was not changed") {
				t.Fatalf("%s / %s: exit %d, not refused before the target was touched: %s", pipe, name, code, errs)
			}
			if !containsAny(errs, c.cause) {
				t.Fatalf("%s / %s: the refusal does not say why (want one of %v): %s", pipe, name, c.cause, errs)
			}
			if got := pg.TableChecksums(t, target); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s / %s: target changed", pipe, name)
			}
		}
		if strings.Contains(pipe, "encryption") {
			os.WriteFile(cfg, []byte(strings.Replace(string(must(os.ReadFile(cfg))), "password: right", "password: wrong", 1)), 0o600)
			code, _, errs := cli(t, "restore", "-c", cfg, "--from", "latest", "--to-database", target, "--clean")
			if code != 1 || !strings.Contains(errs, "wrong encryption password") {
				t.Fatalf("wrong password: exit %d %s", code, errs)
			}
		}
	}
	if got := pg.TableChecksums(t, target); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("target changed")
	}
}

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestDeadWebhookNeverChangesOutcome(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	db := testDB(t, pg, "bk_deadhook")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db})
	b, _ := os.ReadFile(cfg)
	b = append(b, []byte("notifications:\n  - type: webhook\n    on: [both]\n    config:\n      url: http://127.0.0.1:1/hook\n      max_wait: 2s\n")...)
	os.WriteFile(cfg, b, 0o600)
	start := time.Now()
	code, out, errs := cli(t, "backup", "-c", cfg, "--log-format", "json")
	if code != 0 || !strings.Contains(out, "1 succeeded") {
		t.Fatalf("a dead webhook changed the outcome: exit %d\n%s\n%s", code, out, errs)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("backup took %v with a dead webhook (bound 2s per event)", el)
	}
	if !strings.Contains(errs, "notification failed") {
		t.Fatalf("the failed notification was not logged:\n%s", errs)
	}
}
