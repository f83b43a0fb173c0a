package main

// Two writers on one config (a sidecar daemon and a CI apply) must never
// prune on the strength of a backup that one of them did not take.

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

// ageBackups renames every backup of db in store (and its sidecar) to be
// d older, so the next per-minute slot has passed.
func ageBackups(t *testing.T, store, db string, d time.Duration) []string {
	t.Helper()
	bs, err := repo.List(context.Background(), sinks.NewLocal("l", store), db)
	if err != nil || len(bs) == 0 {
		t.Fatalf("no backup to age: %v", err)
	}
	var keys []string
	for _, b := range bs {
		key := format.Key(db, b.Time.Add(-d), b.Ext)
		for _, suffix := range []string{"", format.SumExt, format.ManifestExt} {
			if err := os.Rename(filepath.Join(store, b.Key+suffix), filepath.Join(store, key+suffix)); err != nil && suffix == "" {
				t.Fatal(err)
			}
		}
		keys = append(keys, key)
	}
	return keys
}

// slowBackup starts a real backupkit process whose pg_dump stalls after a
// little output, and waits until it holds the database's lock and writes.
func slowBackup(t *testing.T, store string, args ...string) *exec.Cmd {
	t.Helper()
	path := shimPgDump(t, `"$REAL" "$@" | (head -c 20000; sleep 120; cat)`)
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), "PATH="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "the slow backup to start writing", 30*time.Second, func() bool {
		lo, _ := sinks.NewLocal("l", store).Leftovers(context.Background(), "")
		return len(lo) > 0
	})
	return cmd
}

func assertOnly(t *testing.T, store, db string, keys []string, context_ string) {
	t.Helper()
	bs, err := repo.List(context.Background(), sinks.NewLocal("l", store), db)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range bs {
		got = append(got, b.Key)
	}
	if strings.Join(got, ",") != strings.Join(keys, ",") {
		t.Fatalf("%s: storage holds %v, want exactly %v", context_, got, keys)
	}
}

func TestSkippedBackupNeverLicensesPrune(t *testing.T) {
	pg := testenv.Postgres(t)
	for _, second := range []string{"apply", "backup", "daemon"} {
		t.Run(second, func(t *testing.T) {
			dir := t.TempDir()
			store := filepath.Join(dir, "store")
			db := testDB(t, pg, "bk_skip")
			cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db,
				extra: "      schedule: \"* * * * *\"\n      compression: gzip\n    retention:\n      keep_last: 1\n"})
			mustCLI(t, 0, "backup", "-c", cfg)
			b0 := ageBackups(t, store, "app", 5*time.Minute)

			// The plan counts on the due backup: B0's prune is conditional.
			plan := mustCLI(t, 2, "plan", "-c", cfg, "--detailed-exitcode")
			if !strings.Contains(plan, "- prune local:"+b0[0]) || !strings.Contains(plan, "after the backup succeeds") {
				t.Fatalf("plan does not mark the prune as conditional:\n%s", plan)
			}
			pj := parsePlan(t, mustCLI(t, 2, "plan", "-c", cfg, "-o", "json", "--detailed-exitcode"))
			if len(pj.Actions) != 2 || pj.Actions[1].Type != "prune" || !pj.Actions[1].Conditional {
				t.Fatalf("plan JSON: %+v", pj.Actions)
			}

			// Writer 1 holds the lock with a slow dump; writer 2 runs.
			slow := slowBackup(t, store, "apply", "-c", cfg)
			switch second {
			case "apply", "backup":
				code, out, errs := cli(t, second, "-c", cfg, "--db", "app")
				if code != 0 || strings.Contains(out, "✓ prune") || !strings.Contains(out, "another backupkit process") {
					t.Fatalf("%s while another process backs up: exit %d\n%s\n%s", second, code, out, errs)
				}
			case "daemon":
				d := startDaemon(t, nil, "-c", cfg, "--interval", "300ms")
				waitFor(t, "the daemon to find the lock taken", 20*time.Second, func() bool {
					return strings.Count(d.logs(), "another backupkit process") >= 3
				})
				d.stop(t)
			}
			assertOnly(t, store, "app", b0, "while writer 1 still dumps")
			slow.Process.Kill() // SIGKILL mid-dump
			slow.Wait()
			assertOnly(t, store, "app", b0, "after writer 1 was killed")
			// Its lock session ends when the server notices the closed
			// connection, which a busy machine can take a moment to do.
			waitFor(t, "the killed writer's lock to be released", 20*time.Second, func() bool {
				return pg.Query(t, db, "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = current_database()") == "0"
			})

			// With no one else around, the next apply backs up and only
			// then prunes B0.
			out := mustCLI(t, 0, "apply", "-c", cfg)
			if !strings.Contains(out, "✓ backup app") || !strings.Contains(out, "✓ prune local:"+b0[0]) {
				t.Fatalf("apply alone:\n%s", out)
			}
			if n := countBackups(t, store, "app"); n != 1 {
				t.Fatalf("%d backups after apply, want 1", n)
			}
		})
	}
}

// lockKey is the advisory lock a backup of the database named name takes:
// computed here independently of the code under test.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("backupkit:" + name))
	return int64(h.Sum64())
}

func TestTwoDaemonsRetentionAndAThirdLockHolder(t *testing.T) {
	t.Parallel() // about a minute of wall time: it waits for the next slot
	pg := testenv.Postgres(t)
	if left := time.Until(time.Now().Truncate(time.Minute).Add(time.Minute)); left < 20*time.Second {
		time.Sleep(left + time.Second) // room for the setup within this minute
	}
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	db := testDB(t, pg, "bk_two_ret")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db,
		extra: "      schedule: \"* * * * *\"\n      compression: gzip\n    retention:\n      keep_last: 2\n"})
	// Two old backups and one older than retention wants.
	mustCLI(t, 0, "backup", "-c", cfg)
	ageBackups(t, store, "app", 10*time.Minute)
	mustCLI(t, 0, "backup", "-c", cfg)
	ageBackups(t, store, "app", 5*time.Minute)

	// A third session holds the database's lock while both daemons start.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@%s:%d/%s", pg.User, pg.Host, pg.Port, db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey("app")); err != nil {
		t.Fatal(err)
	}
	before := countBackups(t, store, "app")
	// Each dump takes 2 s: long enough for the other daemon to act meanwhile.
	slow := []string{"PATH=" + shimPgDump(t, `"$REAL" "$@" | (head -c 20000; sleep 2; cat)`)}
	a := startDaemon(t, slow, "-c", cfg, "--interval", "300ms")
	time.Sleep(700 * time.Millisecond) // staggered start
	b := startDaemon(t, slow, "-c", cfg, "--interval", "300ms")
	waitFor(t, "both daemons to meet the lock", 20*time.Second, func() bool {
		return strings.Contains(a.logs(), "another backupkit process") && strings.Contains(b.logs(), "another backupkit process")
	})
	// While the lock is held elsewhere, nothing is taken and nothing pruned.
	if n := countBackups(t, store, "app"); n != before {
		t.Fatalf("%d backups while a third session held the lock, want %d", n, before)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey("app")); err != nil {
		t.Fatal(err)
	}

	// Watch until the next minute's slot has been taken too: never fewer
	// than keep_last complete backups, never two backups for one minute.
	start := time.Now()
	nextSlot := start.Truncate(time.Minute).Add(time.Minute)
	seenMinutes := map[string]int{}
	deadline := nextSlot.Add(15 * time.Second)
	for time.Now().Before(deadline) {
		bs, err := repo.List(ctx, sinks.NewLocal("l", store), "app")
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) < 2 {
			t.Fatalf("the storage held %d backup(s) at %s, fewer than keep_last=2\n%s\n%s", len(bs), time.Now().Format(time.TimeOnly), a.logs(), b.logs())
		}
		for _, bk := range bs {
			if bk.Time.After(start.Add(-time.Second)) {
				seenMinutes[bk.Key] = bk.Time.Minute()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.stop(t)
	b.stop(t)
	perMinute := map[int]int{}
	for _, m := range seenMinutes {
		perMinute[m]++
	}
	if len(perMinute) != 2 {
		t.Fatalf("backups taken in minutes %v, want one in the current and one in the next", perMinute)
	}
	for m, n := range perMinute {
		if n != 1 {
			t.Fatalf("%d backups in minute %d, want 1\n%s\n%s", n, m, a.logs(), b.logs())
		}
	}
	// keep_last 2: retention ran, under the lock, after real backups.
	if n := countBackups(t, store, "app"); n != 2 {
		t.Fatalf("%d backups kept, want 2 (keep_last)", n)
	}
}
