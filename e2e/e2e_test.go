//go:build e2e

// The sidecar for real: the project's image, built from its Dockerfile,
// next to PostgreSQL with the unchanged compose.yaml, checked from the
// outside as a user would. Run with make e2e (which builds the local
// images first).

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const project = "bke2e"

var root = func() string { d, _ := filepath.Abs(".."); return d }()

func run(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func must(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// dc runs docker-compose on compose.yaml with the e2e override.
func dc(t *testing.T, env []string, args ...string) string {
	t.Helper()
	return must(t, env, "docker-compose", append([]string{"-p", project, "-f", "compose.yaml", "-f", "e2e/compose.e2e.yaml"}, args...)...)
}

func psql(t *testing.T, db, sql string) string {
	t.Helper()
	return strings.TrimSpace(dc(t, nil, "exec", "-T", "postgres", "psql", "-X", "-q", "-A", "-t", "-U", "app", "-d", db, "-c", sql))
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
	return 0
}

// volume runs a shell command in a throwaway container with the backups
// volume mounted at /b.
func volume(t *testing.T, script string) string {
	t.Helper()
	return must(t, nil, "docker", "run", "--rm", "-v", project+"_backups:/b", "backupkit-base:bookworm", "sh", "-c", script)
}

func health(t *testing.T, container string) string {
	out, _ := run(t, nil, "docker", "inspect", "-f", "{{.State.Health.Status}}", container)
	return strings.TrimSpace(out)
}

func container(t *testing.T, service string) string {
	return strings.TrimSpace(dc(t, nil, "ps", "-q", service))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func TestSidecar(t *testing.T) {
	secrets := map[string]string{"db_password": "db-" + randomHex(12), "backup_key": "key-" + randomHex(16),
		"s3_access_key": "ak" + randomHex(6), "s3_secret_key": "s3-" + randomHex(12)}
	os.MkdirAll(filepath.Join(root, "secrets"), 0o700)
	for k, v := range secrets {
		os.WriteFile(filepath.Join(root, "secrets", k+".txt"), []byte(v+"\n"), 0o644)
	}
	run(t, nil, "docker-compose", "-p", project, "-f", "compose.yaml", "-f", "e2e/compose.e2e.yaml", "--profile", "s3", "down", "-v")
	t.Cleanup(func() {
		run(t, nil, "docker-compose", "-p", project, "-f", "compose.yaml", "-f", "e2e/compose.e2e.yaml", "--profile", "s3", "down", "-v")
		run(t, nil, "docker", "rm", "-f", project+"-pg17")
	})

	// The image's binary was built as the online Dockerfile builds it:
	// with libzstd and libdeflate.
	if v := must(t, nil, "docker", "run", "--rm", "backupkit:local", "version"); !strings.Contains(v, "zstd: libzstd (cgo)") || !strings.Contains(v, "gzip: libdeflate (cgo)") {
		t.Fatalf("the image's backupkit was built without libzstd or libdeflate:\n%s", v)
	}

	// PostgreSQL first, with enough data that a dump takes a while.
	dc(t, nil, "up", "-d", "postgres")
	waitFor(t, "postgres healthy", 90*time.Second, func() bool { return health(t, container(t, "postgres")) == "healthy" })
	psql(t, "app", "CREATE TABLE items AS SELECT g AS id, md5(g::text) || repeat('x', 200) AS body FROM generate_series(1, 1500000) g")
	want := psql(t, "app", "SELECT count(*) || ':' || md5(string_agg(md5(body), '' ORDER BY id)) FROM items")

	// The sidecar turns healthy and takes a first backup, 0600 and owned
	// by uid 10001 in the named volume, within 90 s.
	start := time.Now()
	dc(t, nil, "up", "-d", "backupkit")
	bk := container(t, "backupkit")
	firstBackup := waitFor(t, "the first backup", 90*time.Second, func() bool {
		out, _ := run(t, nil, "docker", "run", "--rm", "-v", project+"_backups:/b", "backupkit-base:bookworm", "sh", "-c", "ls /b/app/*.zst.enc 2>/dev/null")
		return strings.TrimSpace(out) != ""
	})
	t.Logf("time to first backup: %s", time.Since(start).Round(time.Second))
	waitFor(t, "the sidecar healthy", 90*time.Second, func() bool { return health(t, bk) == "healthy" })
	perms := volume(t, "stat -c '%u %a' /b/app/*.zst.enc /b/app")
	if !strings.Contains(perms, "10001 600") || !strings.Contains(perms, "10001 700") {
		t.Fatalf("backup ownership and modes: %s", perms)
	}
	resp, err := http.Get("http://127.0.0.1:9090/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `backupkit_last_success_timestamp_seconds{database="app",storage="local"} 1.`) {
		t.Fatalf("metrics on the host port lack the last success:\n%s", metrics)
	}
	_ = firstBackup

	// Restore inside the sidecar, as the README says.
	out := dc(t, nil, "exec", "-T", "backupkit", "backupkit", "restore", "--from", "latest", "--to-database", "app_copy")
	if !strings.Contains(out, "restored local:app/") {
		t.Fatalf("restore: %s", out)
	}
	if got := psql(t, "app_copy", "SELECT count(*) || ':' || md5(string_agg(md5(body), '' ORDER BY id)) FROM items"); got != want {
		t.Fatalf("restored %s, source %s", got, want)
	}

	// docker compose stop during a slow backup: out within 10 s, nothing
	// partial; pg_dump's environment holds no secret meanwhile.
	dc(t, nil, "stop", "backupkit")
	volume(t, "rm -f /b/app/*")
	dc(t, nil, "start", "backupkit")
	waitFor(t, "a backup under way", 60*time.Second, func() bool {
		return strings.TrimSpace(volume(t, "ls -a /b/app 2>/dev/null | grep tmp- || true")) != ""
	})
	env := dc(t, nil, "exec", "-T", "backupkit", "sh", "-c",
		`for p in /proc/[0-9]*; do if tr '\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^/usr/lib/postgresql/.*/pg_dump'; then tr '\0' '\n' < $p/environ; echo END; fi; done`)
	if !strings.Contains(env, "PGHOST=postgres") {
		t.Fatalf("no pg_dump found running, or its environment is unexpected:\n%s", env)
	}
	for name, v := range secrets {
		if name != "db_password" && strings.Contains(env, v) {
			t.Fatalf("pg_dump's environment holds the %s secret", name)
		}
	}
	stopStart := time.Now()
	dc(t, nil, "stop", "-t", "15", "backupkit")
	if el := time.Since(stopStart); el > 10*time.Second {
		t.Fatalf("stop took %s, want ≤ 10 s", el)
	}
	t.Logf("stop during a backup took %s", time.Since(stopStart).Round(100*time.Millisecond))
	if left := strings.TrimSpace(volume(t, "ls -a /b/app | grep -v '^\\.\\.\\?$' || true")); left != "" {
		t.Fatalf("left after stopping mid-backup: %s", left)
	}
	dc(t, nil, "start", "backupkit")
	waitFor(t, "the backup after a restart", 90*time.Second, func() bool {
		return strings.TrimSpace(volume(t, "ls /b/app/*.zst.enc 2>/dev/null || true")) != ""
	})

	// No secret in docker inspect or the containers' logs.
	for _, svc := range []string{"backupkit", "postgres"} {
		id := container(t, svc)
		all := must(t, nil, "docker", "inspect", id) + must(t, nil, "docker", "logs", id)
		for name, v := range secrets {
			if strings.Contains(all, v) {
				t.Fatalf("the %s secret shows in docker inspect or the logs of %s", name, svc)
			}
		}
	}

	// The s3 profile: BackupKit creates the bucket, a backup lands there
	// and restores.
	s3env := []string{"BACKUP_STORAGE=minio"}
	dc(t, s3env, "--profile", "s3", "up", "-d")
	waitFor(t, "a backup in the bucket", 120*time.Second, func() bool {
		out, err := run(t, nil, "docker-compose", "-p", project, "-f", "compose.yaml", "-f", "e2e/compose.e2e.yaml", "exec", "-T", "backupkit",
			"backupkit", "list", "-o", "json")
		return err == nil && strings.Contains(out, `"storage": "minio"`)
	})
	out = dc(t, s3env, "exec", "-T", "backupkit", "backupkit", "restore", "--from", "latest", "--to-database", "app_s3")
	if !strings.Contains(out, "restored minio:app/") {
		t.Fatalf("restore from S3: %s", out)
	}
	if got := psql(t, "app_s3", "SELECT count(*) || ':' || md5(string_agg(md5(body), '' ORDER BY id)) FROM items"); got != want {
		t.Fatalf("restored from S3 %s, source %s", got, want)
	}
}

// The image dumps and restores PostgreSQL 15 and 17 with the matching
// clients, and refuses before dumping when only older clients exist.
func TestServerVersions(t *testing.T) {
	net := project + "_pgversions"
	run(t, nil, "docker", "network", "rm", net)
	must(t, nil, "docker", "network", "create", net)
	t.Cleanup(func() { run(t, nil, "docker", "network", "rm", net) })
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	for _, major := range []string{"15", "17"} {
		name := project + "-pg" + major
		run(t, nil, "docker", "rm", "-f", name)
		must(t, nil, "docker", "run", "-d", "--name", name, "--network", net, "-e", "POSTGRES_USER=app", "-e", "POSTGRES_DB=app",
			"-e", "POSTGRES_PASSWORD=pw", "backupkit-postgres:"+major)
		t.Cleanup(func() { run(t, nil, "docker", "rm", "-f", name) })
		// Over TCP: the entrypoint's first server, which creates the
		// database, listens only on the socket and then shuts down.
		waitFor(t, "PostgreSQL "+major, 60*time.Second, func() bool {
			_, err := run(t, nil, "docker", "exec", name, "pg_isready", "-h", "127.0.0.1", "-U", "app")
			return err == nil
		})
		must(t, nil, "docker", "exec", name, "psql", "-X", "-q", "-U", "app", "-d", "app", "-c",
			"CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 10000) g")
		cfg := fmt.Sprintf("version: 1\nstorage: [{name: local, type: local, local: {path: /tmp/b}}]\n"+
			"databases:\n  - name: app\n    type: postgres\n    connection: {host: %s, database: app, user: app, password: pw}\n"+
			"    backup: {storage: local, compression: zstd}\n", name)
		os.WriteFile(filepath.Join(dir, "pg"+major+".yaml"), []byte(cfg), 0o644)
		script := "backupkit backup -c /cfg/pg" + major + ".yaml && backupkit restore -c /cfg/pg" + major + ".yaml --from latest --to-database copy && backupkit list -c /cfg/pg" + major + ".yaml -o json"
		out := must(t, nil, "docker", "run", "--rm", "--network", net, "-v", dir+":/cfg:ro", "--entrypoint", "sh", "backupkit:local", "-c", script)
		var doc struct {
			Backups []struct{ Key string } `json:"backups"`
		}
		if i := strings.Index(out, "{\n  \"version\""); i < 0 || json.Unmarshal([]byte(out[i:]), &doc) != nil || len(doc.Backups) != 1 {
			t.Fatalf("PostgreSQL %s: %s", major, out)
		}
		if got := strings.TrimSpace(must(t, nil, "docker", "exec", name, "psql", "-X", "-A", "-t", "-U", "app", "-d", "copy", "-c", "SELECT count(*) FROM t")); got != "10000" {
			t.Fatalf("PostgreSQL %s: restored %s rows", major, got)
		}
		t.Logf("PostgreSQL %s: backed up and restored with the image", major)
	}
	// Only an older client: refused before dumping, with what to do.
	out, err := run(t, nil, "docker", "run", "--rm", "--network", net, "-v", dir+":/cfg:ro", "--tmpfs", "/usr/lib/postgresql/17",
		"backupkit:local", "backup", "-c", "/cfg/pg17.yaml")
	if err == nil || !strings.Contains(out, "PostgreSQL 17 needs pg_dump 17 or newer, found pg_dump 15") || !strings.Contains(out, "install postgresql-client-17") {
		t.Fatalf("a client older than the server: %v\n%s", err, out)
	}
}
