package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds backupkit once for tests that need a real process.
func binary(t *testing.T) string {
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "backupkit-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "backupkit")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a running backupkit daemon.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	addr   chan string
}

func (p *proc) logs() string { p.mu.Lock(); defer p.mu.Unlock(); return p.stderr.String() }

func startDaemon(t *testing.T, env []string, args ...string) *proc {
	p := &proc{addr: make(chan string, 1)}
	p.cmd = exec.Command(binary(t), append([]string{"daemon", "--log-format", "json"}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	r, w := io.Pipe()
	p.cmd.Stderr = w
	go func() {
		sc := bufio.NewScanner(r)
		re := regexp.MustCompile(`"addr":"([^"]+)"`)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				p.addr <- m[1]
			}
		}
	}()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
		w.Close()
	})
	return p
}

func (p *proc) stop(t *testing.T) time.Duration {
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("daemon did not exit within 15s of SIGTERM\n%s", p.logs())
	}
	return time.Since(start)
}

func get(t *testing.T, url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !testenv.WaitFor(context.Background(), timeout, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func countBackups(t *testing.T, root, db string) int {
	bs, err := repo.List(context.Background(), sinks.NewLocal("l", root), db)
	if err != nil {
		t.Fatal(err)
	}
	return len(bs)
}

func TestDaemonFirstTickAndSIGTERMMidBackup(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	db := testDB(t, pg, "bk_daemon")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db, extra: "      schedule: \"* * * * *\"\n      compression: gzip\n"})
	p := startDaemon(t, nil, "-c", cfg, "--interval", "1s")
	store := filepath.Join(dir, "store")
	waitFor(t, "first backup", 20*time.Second, func() bool { return countBackups(t, store, "app") == 1 })
	p.stop(t)

	// Now a pg_dump that stalls mid-stream: SIGTERM must cancel it.
	real, _ := exec.LookPath("pg_dump")
	shim := t.TempDir()
	os.WriteFile(filepath.Join(shim, "pg_dump"), []byte("#!/bin/sh\n[ \"$1\" = --version ] && exec \""+real+"\" --version\n\""+real+"\" \"$@\" | (head -c 20000; sleep 60; cat)\n"), 0o755)
	os.RemoveAll(store)
	hook, events := hookRecorder(t)
	withHook(t, cfg, hook.URL)
	p = startDaemon(t, []string{"PATH=" + shim + ":" + os.Getenv("PATH")}, "-c", cfg, "--interval", "1s")
	waitFor(t, "backup to start", 20*time.Second, func() bool {
		lo, _ := sinks.NewLocal("l", store).Leftovers(context.Background(), "")
		return len(lo) == 1
	})
	if el := p.stop(t); el > 10*time.Second {
		t.Fatalf("exit took %v after SIGTERM, want ≤ 10s", el)
	}
	if n := countBackups(t, store, "app"); n != 0 {
		t.Fatalf("%d backups visible after a cancelled run", n)
	}
	if lo, _ := sinks.NewLocal("l", store).Leftovers(context.Background(), ""); len(lo) != 0 {
		t.Fatalf("temp files left: %v", lo)
	}
	if !strings.Contains(p.logs(), "backup failed") {
		t.Fatalf("no failure logged:\n%s", p.logs())
	}
	ev := events()
	if len(ev) == 0 || ev[len(ev)-1]["status"] != "failure" || !strings.Contains(fmt.Sprint(ev[len(ev)-1]["error"]), "cancel") {
		t.Fatalf("the cancelled run did not send its failure notification: %+v", ev)
	}
}

func TestDaemonHealthAndMetricsAcrossRestart(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	db := testDB(t, pg, "bk_health")
	// alert_after 3s: overdue quickly when backups stop succeeding.
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db, extra: "      schedule: \"* * * * *\"\n      alert_after: 3s\n"})
	p := startDaemon(t, nil, "-c", cfg, "--interval", "1s", "--listen", "127.0.0.1:0")
	addr := <-p.addr
	// Healthy while the first backup runs (a long first dump is not a
	// reason to mark the container sick), and after it.
	if c, body := get(t, "http://"+addr+"/healthz"); c != 200 {
		t.Fatalf("healthz during the first tick: %d %s", c, body)
	}
	store0 := filepath.Join(dir, "store")
	waitFor(t, "the first backup", 20*time.Second, func() bool { return countBackups(t, store0, "app") == 1 })
	waitFor(t, "healthy", 20*time.Second, func() bool {
		c, body := get(t, "http://"+addr+"/healthz")
		return c == 200 && strings.HasPrefix(body, "ok\n")
	})
	if c, _ := get(t, "http://"+addr+"/livez"); c != 200 {
		t.Fatal("livez")
	}
	bs, _ := repo.List(context.Background(), sinks.NewLocal("l", filepath.Join(dir, "store")), "app")
	want := fmt.Sprintf(`backupkit_last_success_timestamp_seconds{database="app",storage="local"} %.9e`, float64(bs[0].Time.UnixNano())/1e9)
	_, m := get(t, "http://"+addr+"/metrics")
	if !strings.Contains(m, want[:len(want)-6]) || !strings.Contains(m, `backupkit_backups_total{database="app",result="success",storage="local"} 1`) {
		t.Fatalf("metrics lack %s:\n%s", want, grepLines(m, "backupkit_"))
	}
	p.stop(t)

	// Restart: the last success comes from storage.
	p = startDaemon(t, nil, "-c", cfg, "--interval", "1s", "--listen", "127.0.0.1:0")
	addr = <-p.addr
	waitFor(t, "metrics after restart", 10*time.Second, func() bool {
		_, m := get(t, "http://"+addr+"/metrics")
		return strings.Contains(m, want[:len(want)-6])
	})
	p.stop(t)

	// Make the storage unwritable: the daemon goes overdue (503) ...
	store := filepath.Join(dir, "store", "app")
	os.Chmod(store, 0o500)
	defer os.Chmod(store, 0o700)
	if os.Geteuid() == 0 {
		// root ignores permissions: break the storage another way.
		os.Chmod(store, 0o700)
		os.Rename(store, store+".moved")
		os.WriteFile(store, []byte("a file where the folder was"), 0o600)
		defer func() { os.Remove(store); os.Rename(store+".moved", store) }()
	}
	p = startDaemon(t, nil, "-c", cfg, "--interval", "1s", "--listen", "127.0.0.1:0")
	addr = <-p.addr
	waitFor(t, "503 when overdue", 30*time.Second, func() bool {
		c, body := get(t, "http://"+addr+"/healthz")
		return c == 503 && (strings.Contains(body, "overdue") || strings.Contains(body, "listing failed"))
	})
	// ... and healthy again after the next success.
	if os.Geteuid() == 0 {
		os.Remove(store)
		os.Rename(store+".moved", store)
	} else {
		os.Chmod(store, 0o700)
	}
	waitFor(t, "200 after recovery", 90*time.Second, func() bool { c, _ := get(t, "http://"+addr+"/healthz"); return c == 200 })
	p.stop(t)
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestTwoDaemonsOneBackupPerSlot(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	db := testDB(t, pg, "bk_two")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db, extra: "      schedule: \"0 0 1 1 *\"\n"})
	a := startDaemon(t, nil, "-c", cfg, "--interval", "300ms")
	b := startDaemon(t, nil, "-c", cfg, "--interval", "300ms")
	store := filepath.Join(dir, "store")
	waitFor(t, "a backup", 20*time.Second, func() bool { return countBackups(t, store, "app") >= 1 })
	time.Sleep(3 * time.Second) // many more ticks of both
	a.stop(t)
	b.stop(t)
	if n := countBackups(t, store, "app"); n != 1 {
		t.Fatalf("%d backups for one slot, want 1\n%s\n%s", n, a.logs(), b.logs())
	}
}

func TestBackupNotifiesAndNeverLeaksSecrets(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	db := testDB(t, pg, "bk_notify")
	var hits atomic.Int32
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b)+r.Header.Get("Authorization"))
		mu.Unlock()
		if hits.Add(1) <= 2 {
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	secrets := map[string]string{"ENC_PW": "enc-SECRET-1", "HOOK_TOKEN": "hook-SECRET-2", "HOOK_URL": srv.URL + "/hooks/path-SECRET-3"}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db,
		extra: "      compression: zstd\n      encryption:\n        enabled: true\n        password: ${ENC_PW}\n"})
	body, _ := os.ReadFile(cfg)
	body = append(body, []byte("notifications:\n  - type: webhook\n    on: [both]\n    config:\n      url: ${HOOK_URL}\n      headers:\n        Authorization: \"Bearer ${HOOK_TOKEN}\"\n      max_wait: 20s\n")...)
	os.WriteFile(cfg, body, 0o600)

	code, out, errs := cli(t, "backup", "-c", cfg, "--verbose", "--log-format", "json")
	if code != 0 || !strings.Contains(out, "1 succeeded") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if hits.Load() != 3 {
		t.Fatalf("webhook got %d attempts, want 3 (503, 503, 200)", hits.Load())
	}
	if !strings.Contains(bodies[2], `"status":"success"`) || !strings.Contains(bodies[2], "Bearer hook-SECRET-2") {
		t.Fatalf("delivered: %s", bodies[2])
	}
	// A failing run (the database is gone) logs and notifies an error.
	pg.DropDB(db)
	code, out2, errs2 := cli(t, "backup", "-c", cfg, "--verbose", "--log-format", "json", "--db", "app")
	if code != 1 || !strings.Contains(out2, "FAILED") {
		t.Fatalf("backup of a dropped database: exit %d\n%s", code, out2)
	}
	mu.Lock()
	last := bodies[len(bodies)-1]
	mu.Unlock()
	if !strings.Contains(last, `"status":"failure"`) || !strings.Contains(last, "does not exist") {
		t.Fatalf("failure notification: %s", last)
	}
	all := out + errs + out2 + errs2
	plan := mustCLI(t, 0, "plan", "-c", cfg, "-o", "json")
	all += plan
	for name, s := range secrets {
		check := s
		if name == "HOOK_URL" {
			check = "path-SECRET-3"
		}
		if strings.Contains(all, check) {
			t.Fatalf("%s leaked into output or logs", name)
		}
	}
	for _, b := range bodies {
		if strings.Contains(strings.TrimSuffix(b, "Bearer hook-SECRET-2"), "SECRET") {
			t.Fatalf("a payload carries a secret: %s", b)
		}
	}
}

// The daemon works on up to --parallel databases at once: one long dump
// does not hold back every other database's slot.
func TestDaemonRunsDatabasesInParallel(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	a, b := testDB(t, pg, "bk_par_a"), testDB(t, pg, "bk_par_b")
	extra := "      schedule: \"0 0 1 1 *\"\n      compression: gzip\n"
	cfg := config(t, pg, dir, nil, dbSpec{name: "a", database: a, extra: extra}, dbSpec{name: "b", database: b, extra: extra})
	slow := "PATH=" + shimPgDump(t, `"$REAL" "$@" | (head -c 10000; sleep 4; cat)`)
	p := startDaemon(t, []string{slow}, "-c", cfg, "--interval", "1s", "--parallel", "2")
	store := filepath.Join(dir, "store")
	waitFor(t, "both backups under way at once", 20*time.Second, func() bool {
		la, _ := sinks.NewLocal("l", store).Leftovers(context.Background(), "a/")
		lb, _ := sinks.NewLocal("l", store).Leftovers(context.Background(), "b/")
		return len(la) == 1 && len(lb) == 1
	})
	waitFor(t, "both backups", 20*time.Second, func() bool { return countBackups(t, store, "a") == 1 && countBackups(t, store, "b") == 1 })
	p.stop(t)
}

// Off a terminal, a long dump logs its progress, so a sidecar's log shows
// it is alive.
func TestProgressIsLoggedOffTerminal(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	db := testDB(t, pg, "bk_progress")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: db, extra: "      compression: gzip\n"})
	cmd := exec.Command(binary(t), "backup", "-c", cfg, "--log-format", "json", "--progress-interval", "500ms")
	cmd.Env = append(os.Environ(), "PATH="+shimPgDump(t, `"$REAL" "$@" | (head -c 10000; sleep 2; cat)`))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"msg":"progress"`) || !strings.Contains(string(out), `"what":"backup app"`) || !strings.Contains(string(out), `"of_about"`) {
		t.Fatalf("no progress logged:\n%s", out)
	}
}
