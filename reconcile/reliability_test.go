//go:build !mutation

package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/pg"
	"github.com/backupkit/backupkit/reconcile"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

// flakyList is a real local sink whose listing fails; Delete still works,
// so a prune planned despite the failure would really delete.
type flakyList struct{ *sinks.Local }

func (f flakyList) List(ctx context.Context, prefix string) ([]sinks.Object, error) {
	return nil, errors.New("listing failed: connection reset")
}

// Scan is the one-pass listing Local offers; it fails the same way.
func (f flakyList) Scan(ctx context.Context, prefix string) ([]sinks.Object, []sinks.Leftover, error) {
	return nil, nil, errors.New("listing failed: connection reset")
}

func config(dbs []string, p testenv.PG, db string, schedule string, r *reconcile.Retention) []reconcile.Database {
	var out []reconcile.Database
	for _, name := range dbs {
		conn := pg.Conn{Host: p.Host, Port: p.Port, User: p.User, Database: db}
		out = append(out, reconcile.Database{Name: name, Storages: []string{"local"}, Schedule: schedule, Location: time.UTC,
			Retention: r, Conn: conn, Backup: exec.BackupOptions{Dump: exec.DumpOptions{Conn: conn}, Compression: format.Gzip}})
	}
	return out
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestNoPruneWhenListingFails(t *testing.T) {
	root := t.TempDir()
	var files []string
	for _, d := range []string{"20250101", "20250201", "20250301"} {
		p := filepath.Join(root, "app", d+"_000000.000000000Z.dump")
		os.MkdirAll(filepath.Dir(p), 0o700)
		os.WriteFile(p, []byte(d), 0o600)
		files = append(files, p)
	}
	cfg := config([]string{"app"}, testenv.PG{}, "x", "", &reconcile.Retention{KeepLast: 1})
	good := map[string]sinks.Sink{"local": sinks.NewLocal("local", root)}
	bad := map[string]sinks.Sink{"local": flakyList{sinks.NewLocal("local", root)}}
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	// With a good listing, retention wants two prunes ...
	if p := reconcile.MakePlan(cfg, reconcile.Observe(context.Background(), cfg, good, ""), now, reconcile.PlanOptions{}); p.Count(reconcile.ActPrune) != 2 {
		t.Fatalf("control: %+v", p.Actions)
	}
	// ... with a failing one, none, and apply deletes nothing.
	obs := reconcile.Observe(context.Background(), cfg, bad, "")
	p := reconcile.MakePlan(cfg, obs, now, reconcile.PlanOptions{})
	if !p.Empty() || len(p.Unobserved) != 1 {
		t.Fatalf("plan with a failed listing: %+v", p)
	}
	r := &reconcile.Runner{Databases: cfg, Sinks: bad, Log: quiet()}
	r.Apply(context.Background(), p)
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s pruned although the listing failed", f)
		}
	}
}

func openFDs() int {
	es, _ := os.ReadDir("/proc/self/fd")
	return len(es)
}

// counter counts backup events per database.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) Event(_ context.Context, e reconcile.Event) {
	if e.Kind == reconcile.EventBackup && e.Success {
		c.mu.Lock()
		c.n[e.Database]++
		c.mu.Unlock()
	}
}

func Test20DatabasesParallel4HundredTicks(t *testing.T) {
	pg := testenv.Postgres(t)
	db := pg.NewDB(t, "bk_twenty")
	pg.Query(t, db, "CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 2000) g")
	root := t.TempDir()
	var names []string
	for i := 0; i < 20; i++ {
		names = append(names, fmt.Sprintf("db%02d", i))
	}
	cfg := config(names, pg, db, "*/10 * * * *", &reconcile.Retention{KeepLast: 3})
	stores := map[string]sinks.Sink{"local": sinks.NewLocal("local", root)}
	clock := time.Date(2026, 11, 25, 0, 0, 30, 0, time.UTC)
	cnt := &counter{n: map[string]int{}}
	r := &reconcile.Runner{Databases: cfg, Sinks: stores, Log: quiet(), Parallel: 4, Locker: &reconcile.AdvisoryLocker{}, Observer: cnt,
		Now: func() time.Time { return clock }}
	d := &reconcile.Daemon{Runner: r, Interval: time.Minute}

	tick := d.Tick(context.Background())
	if tick.Plan.Count(reconcile.ActBackup) != 20 || len(tick.Report.Failed()) != 0 {
		t.Fatalf("first tick: %d backups planned, %d failed", tick.Plan.Count(reconcile.ActBackup), len(tick.Report.Failed()))
	}
	runtime.GC()
	g0, f0 := runtime.NumGoroutine(), openFDs()
	for i := 1; i < 100; i++ {
		clock = clock.Add(time.Minute)
		tk := d.Tick(context.Background())
		if n := len(tk.Report.Failed()); n != 0 {
			t.Fatalf("tick %d: %d failures: %v", i, n, tk.Report.Failed()[0].Err)
		}
		want := 0
		if clock.Minute()%10 == 0 {
			want = 20
		}
		if got := tk.Plan.Count(reconcile.ActBackup); got != want {
			t.Fatalf("tick %d at %s: %d backups planned, want %d", i, clock.Format("15:04"), got, want)
		}
	}
	time.Sleep(100 * time.Millisecond)
	runtime.GC()
	g1, f1 := runtime.NumGoroutine(), openFDs()
	if g1 > g0+3 || f1 > f0+3 {
		t.Fatalf("leak over 99 ticks: goroutines %d → %d, fds %d → %d", g0, g1, f0, f1)
	}
	for _, name := range names {
		// 1 + 9 slots (00:10 … 01:30): each database backed up exactly once per slot.
		if cnt.n[name] != 10 {
			t.Fatalf("%s: %d backups, want 10", name, cnt.n[name])
		}
		bs, err := repo.List(context.Background(), stores["local"], name)
		if err != nil || len(bs) != 3 {
			t.Fatalf("%s: %d backups kept, want 3 (keep_last): %v", name, len(bs), err)
		}
	}
	t.Logf("goroutines %d → %d, open fds %d → %d", g0, g1, f0, f1)
}

func TestFailingDatabaseBacksOff(t *testing.T) {
	pg := testenv.Postgres(t)
	root := t.TempDir()
	cfg := config([]string{"gone"}, pg, "no_such_database_backoff", "* * * * *", nil)
	clock := time.Date(2026, 11, 25, 0, 0, 30, 0, time.UTC)
	r := &reconcile.Runner{Databases: cfg, Sinks: map[string]sinks.Sink{"local": sinks.NewLocal("local", root)},
		Log: quiet(), Now: func() time.Time { return clock }}
	d := &reconcile.Daemon{Runner: r, Interval: time.Minute, Jitter: -1}
	var attempts []int
	for i := 0; i < 16; i++ {
		tk := d.Tick(context.Background())
		if tk.Plan.Count(reconcile.ActBackup) > 0 {
			if len(tk.Report.Failed()) != 1 {
				t.Fatalf("tick %d: the backup of a missing database did not fail", i)
			}
			attempts = append(attempts, i)
		}
		clock = clock.Add(time.Minute)
	}
	// Waits of 1, 2, 4, 8 minutes after consecutive failures.
	if fmt.Sprint(attempts) != "[0 1 3 7 15]" {
		t.Fatalf("attempts at ticks %v, want [0 1 3 7 15] (doubling backoff)", attempts)
	}
}
