package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

// fakeDumper writes a few bytes, then fails when fail is set.
type fakeDumper struct{ fail bool }

func (f fakeDumper) Dump(ctx context.Context, db *Database, w io.Writer) (exec.DumpResult, error) {
	n, _ := w.Write([]byte("PGDMP fake dump"))
	if f.fail {
		return exec.DumpResult{Bytes: int64(n)}, errors.New("pg_dump died")
	}
	return exec.DumpResult{Bytes: int64(n)}, nil
}

// fakeLocker grants or refuses the lock; onLock runs when it is granted
// (another process finishing a backup just before we got the lock).
type fakeLocker struct {
	held   bool
	onLock func()
}

func (f fakeLocker) TryLock(ctx context.Context, db *Database) (func(), bool, error) {
	if f.held {
		return nil, false, nil
	}
	if f.onLock != nil {
		f.onLock()
	}
	return func() {}, true, nil
}

// events records what the runner tells its observer.
type events struct{ got []Event }

func (e *events) Event(_ context.Context, ev Event) { e.got = append(e.got, ev) }

func backupsIn(t *testing.T, s sinks.Sink) []repo.Backup {
	t.Helper()
	bs, err := repo.List(context.Background(), s, "app")
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func keysOf(bs []repo.Backup) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Key)
	}
	sort.Strings(out)
	return out
}

// TestApplyPrunesOnlyOnWhatExists runs real plans through the real
// runner against a real folder, with the planned backup succeeding,
// failing, skipped because the lock is held, or skipped because another
// process took it just before: what is left is always exactly what
// retention keeps of what exists, and never loses the newest backup.
func TestApplyPrunesOnlyOnWhatExists(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	now := ts("2026-11-25T12:30:00Z")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := 0; i < 300; i++ {
		scenario := []string{"succeeds", "fails", "lock held", "taken meanwhile", "newest deleted meanwhile"}[i%5]
		root := t.TempDir()
		store := sinks.NewLocal("local", root)
		r := randomPolicy(rng)
		if *r == (Retention{}) {
			r.KeepLast = 1
		}
		hist := randomHistory(rng, now.Add(-time.Hour)) // so the hourly slot is due
		for _, b := range hist.Backups {
			os.MkdirAll(filepath.Join(root, "app"), 0o700)
			os.WriteFile(filepath.Join(root, b.Key), []byte("old"), 0o600)
		}
		schedule := "0 * * * *"
		if scenario == "newest deleted meanwhile" {
			schedule = "" // prunes only
			if i%10 == 4 {
				r = &Retention{KeepLast: 1} // the second newest is planned for pruning
			}
		}
		dbs := cfgWith(schedule, r, nil)
		obs := Observe(context.Background(), dbs, map[string]sinks.Sink{"local": store}, "")
		p := MakePlan(dbs, obs, now, PlanOptions{})
		if p.Count(ActBackup) != 1 && schedule != "" {
			t.Fatalf("case %d: no backup planned: %+v", i, p.Actions)
		}
		before := backupsIn(t, store)
		seen := &events{}
		runner := &Runner{Databases: dbs, Sinks: map[string]sinks.Sink{"local": store}, Log: log, Observer: seen,
			Now: func() time.Time { return now }, Dumper: fakeDumper{fail: scenario == "fails"}, Locker: fakeLocker{held: scenario == "lock held"}}
		var other string
		if scenario == "taken meanwhile" {
			other = keyAt(now.Add(-time.Second))
			runner.Locker = fakeLocker{onLock: func() { os.WriteFile(filepath.Join(root, other), []byte("theirs"), 0o600) }}
		}
		if scenario == "newest deleted meanwhile" {
			if p.Count(ActPrune) == 0 {
				continue // nothing to apply: no lock is taken
			}
			// Someone removed the newest backup between plan and apply.
			gone := before[0].Key
			runner.Locker = fakeLocker{onLock: func() { os.Remove(filepath.Join(root, gone)) }}
			before = before[1:]
		}
		rep := runner.Apply(context.Background(), p)
		after := backupsIn(t, store)
		switch scenario {
		case "newest deleted meanwhile":
			if len(before) > 0 && (len(after) == 0 || after[0].Key != before[0].Key) {
				t.Fatalf("case %d: the newest remaining backup %s was pruned: left %v", i, before[0].Key, keysOf(after))
			}
		case "fails", "lock held":
			// Nothing new exists: nothing may be deleted at all.
			if fmt.Sprint(keysOf(after)) != fmt.Sprint(keysOf(before)) {
				t.Fatalf("case %d (%s, policy %+v): storage changed from %v to %v", i, scenario, r, keysOf(before), keysOf(after))
			}
		default:
			// A new backup exists: retention of the fresh listing.
			if len(after) == 0 || !after[0].Time.After(before[0].Time) {
				t.Fatalf("case %d (%s): the new backup is missing: %v", i, scenario, keysOf(after))
			}
			withNew := backupsIn(t, store)
			_ = withNew
			var fresh []repo.Backup
			fresh = append(fresh, after[0])
			fresh = append(fresh, before...)
			want := map[string]bool{}
			for _, b := range fresh {
				want[b.Key] = true
			}
			for _, k := range oraclePrunes(fresh, r, time.UTC, nil) {
				want[k] = false
			}
			// Apply never prunes more than the plan showed.
			planned := map[string]bool{}
			for _, k := range prunesOf(p) {
				planned[k] = true
			}
			var wantKeys []string
			for k, keep := range want {
				if keep || !planned[k] {
					wantKeys = append(wantKeys, k)
				}
			}
			sort.Strings(wantKeys)
			if fmt.Sprint(keysOf(after)) != fmt.Sprint(wantKeys) {
				t.Fatalf("case %d (%s, policy %+v):\nleft %v\nwant %v", i, scenario, r, keysOf(after), wantKeys)
			}
		}
		for _, o := range rep.Outcomes {
			if o.Type == ActPrune && o.Err != nil {
				t.Fatalf("case %d: prune failed: %v", i, o.Err)
			}
		}
		// The outcome and the event say what happened to the backup; a
		// prune that succeeds is no event (only failures are told).
		var backupEvents []Event
		for _, e := range seen.got {
			if e.Kind == EventBackup {
				backupEvents = append(backupEvents, e)
			}
			if e.Kind == EventPrune {
				t.Fatalf("case %d: a prune event although every prune succeeded: %+v", i, e)
			}
		}
		switch scenario {
		case "succeeds":
			if rep.Outcomes[0].Err != nil || len(backupEvents) != 1 || !backupEvents[0].Success || backupEvents[0].Err != nil || len(backupEvents[0].Dest) != 1 {
				t.Fatalf("case %d: success reported as %+v / %+v", i, rep.Outcomes[0], backupEvents)
			}
		case "fails":
			if e := rep.Outcomes[0].Err; e == nil || !strings.Contains(e.Error(), "pg_dump died") {
				t.Fatalf("case %d: failure outcome %+v", i, rep.Outcomes[0])
			}
			if len(backupEvents) != 1 || backupEvents[0].Success || !strings.Contains(fmt.Sprint(backupEvents[0].Err), "pg_dump died") {
				t.Fatalf("case %d: failure event %+v", i, backupEvents)
			}
		case "lock held", "taken meanwhile":
			if len(backupEvents) != 0 || rep.Outcomes[0].Err != nil {
				t.Fatalf("case %d: a skipped backup reported %+v / %+v", i, rep.Outcomes[0], backupEvents)
			}
		}
		if scenario == "taken meanwhile" {
			if !strings.Contains(fmt.Sprint(rep.Outcomes[0].Skip), string(SkipTaken)) {
				t.Fatalf("case %d: backup outcome %+v, want skipped as taken", i, rep.Outcomes[0])
			}
		}
	}
}

// TestBackoffHasJitter: retries of a failing database are spread, not in
// step, and stay within the policy's bounds.
func TestBackoffHasJitter(t *testing.T) {
	d := &Daemon{Interval: time.Minute}
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		b := d.policy()
		w := b.NextBackOff()
		if w < 48*time.Second || w > 72*time.Second {
			t.Fatalf("first wait %v outside 1m ± 20%%", w)
		}
		seen[w.Round(time.Second)] = true
	}
	if len(seen) < 5 {
		t.Fatalf("50 first waits took only %d values: no jitter", len(seen))
	}
	b := (&Daemon{Interval: time.Minute, Jitter: -1}).policy()
	var waits []time.Duration
	for i := 0; i < 8; i++ {
		waits = append(waits, b.NextBackOff())
	}
	if fmt.Sprint(waits) != "[1m0s 2m0s 4m0s 8m0s 16m0s 32m0s 1h0m0s 1h0m0s]" {
		t.Fatalf("waits without jitter: %v", waits)
	}
}

// kdfDumper records, when each pipeline starts, how many key derivations
// the process has run.
type kdfDumper struct {
	mu      sync.Mutex
	atStart []int
}

func (k *kdfDumper) Dump(ctx context.Context, db *Database, w io.Writer) (exec.DumpResult, error) {
	k.mu.Lock()
	k.atStart = append(k.atStart, format.KDFRuns())
	k.mu.Unlock()
	n, _ := w.Write([]byte("PGDMP fake dump"))
	return exec.DumpResult{Bytes: int64(n)}, nil
}

// The keys of every backup of a run are derived, one after the other,
// before any backup's pipeline starts (a KDF's 64 MiB never sits beside a
// running pipeline), once per password.
func TestKeysDerivedBeforeAnyPipeline(t *testing.T) {
	now := ts("2026-11-25T12:30:00Z")
	store := sinks.NewLocal("local", t.TempDir())
	secret := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano()) // not derived by an earlier test
	var dbs []Database
	for i, pw := range []string{"a", "b", "a", "c"} {
		d := cfgWith("0 * * * *", nil, nil)[0]
		d.Name = fmt.Sprintf("db%d", i)
		d.Backup.Password = secret + pw
		dbs = append(dbs, d)
	}
	p := MakePlan(dbs, Observe(context.Background(), dbs, map[string]sinks.Sink{"local": store}, ""), now, PlanOptions{})
	if p.Count(ActBackup) != 4 {
		t.Fatalf("%d backups planned, want 4", p.Count(ActBackup))
	}
	d := &kdfDumper{}
	before := format.KDFRuns()
	r := &Runner{Databases: dbs, Sinks: map[string]sinks.Sink{"local": store}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return now }, Dumper: d, Locker: fakeLocker{}, Parallel: 4}
	rep := r.Apply(context.Background(), p)
	if f := rep.Failed(); len(f) > 0 {
		t.Fatalf("failed: %+v", f)
	}
	for _, n := range d.atStart {
		if n-before != 3 {
			t.Fatalf("a pipeline started after %d of the run's 3 key derivations (three passwords): %v", n-before, d.atStart)
		}
	}
	if len(d.atStart) != 4 || format.KDFRuns()-before != 3 {
		t.Fatalf("%d pipelines, %d derivations; want 4 and 3", len(d.atStart), format.KDFRuns()-before)
	}
}

// TestApplyBackupAndCleanupTogether: one backup and one cleanup of a
// database run together under its lock; neither is dropped for the
// other.
func TestApplyBackupAndCleanupTogether(t *testing.T) {
	root := t.TempDir()
	store := sinks.NewLocal("local", root)
	now := time.Now().UTC()
	old := now.Add(-2 * time.Hour)
	left := filepath.Join(root, "app", "."+filepath.Base(keyAt(old))+".tmp-0123456789ab")
	os.MkdirAll(filepath.Dir(left), 0o700)
	if err := os.WriteFile(left, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(left, old, old)
	dbs := cfgWith("0 * * * *", nil, nil)
	obs := Observe(context.Background(), dbs, map[string]sinks.Sink{"local": store}, "")
	p := MakePlan(dbs, obs, now, PlanOptions{RunTimeout: 30 * time.Minute})
	if p.Count(ActBackup) != 1 || p.Count(ActCleanup) != 1 || len(p.Actions) != 2 {
		t.Fatalf("plan: %+v, want one backup and one cleanup", p.Actions)
	}
	runner := &Runner{Databases: dbs, Sinks: map[string]sinks.Sink{"local": store}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return now }, Dumper: fakeDumper{}, Locker: fakeLocker{}}
	runner.Apply(context.Background(), p)
	if _, err := os.Stat(left); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the leftover is still there: %v", err)
	}
	if bs := backupsIn(t, store); len(bs) != 1 {
		t.Errorf("%d backups after apply, want 1", len(bs))
	}
}
