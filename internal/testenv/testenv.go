// Package testenv gives integration tests the real services they need:
// the PostgreSQL server on 127.0.0.1:5432 (PG* variables override) and a
// versitygw S3 server. When a service is missing, tests skip with a loud
// reason, and fail when CI is set.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Missing skips the test, or fails it under CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := "MISSING SERVICE: " + fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set, so this fails instead of skipping)")
	}
	t.Skip(msg)
}

// PG is how tests reach PostgreSQL.
type PG struct {
	Host string
	Port int
	User string
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

var (
	pgOnce sync.Once
	pgErr  error
)

// Postgres returns the server, or skips/fails when it is not reachable.
func Postgres(t testing.TB) PG {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	port, _ := strconv.Atoi(getenv("PGPORT", "5432"))
	pg := PG{Host: getenv("PGHOST", "127.0.0.1"), Port: port, User: getenv("PGUSER", "postgres")}
	pgOnce.Do(func() {
		for _, tool := range []string{"psql", "pg_dump", "pg_restore"} {
			if _, err := exec.LookPath(tool); err != nil {
				pgErr = fmt.Errorf("%s not on PATH", tool)
				return
			}
		}
		_, pgErr = pg.psql("postgres", "SELECT 1")
	})
	if pgErr != nil {
		Missing(t, "PostgreSQL at %s:%d: %v", pg.Host, pg.Port, pgErr)
	}
	return pg
}

func (pg PG) env() []string {
	return append(os.Environ(), "PGHOST="+pg.Host, "PGPORT="+strconv.Itoa(pg.Port), "PGUSER="+pg.User)
}

func (pg PG) psql(db string, sql string) (string, error) {
	cmd := exec.Command("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql)
	cmd.Env = pg.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// Query runs SQL in db and returns psql's unaligned output.
func (pg PG) Query(t testing.TB, db, sql string) string {
	t.Helper()
	out, err := pg.psql(db, sql)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RunFile runs a SQL file in db.
func (pg PG) RunFile(t testing.TB, db, file string) {
	t.Helper()
	cmd := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", file)
	cmd.Env = pg.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql -f %s: %v: %s", file, err, out)
	}
}

// NewDB creates an empty database with a unique name, dropped at cleanup.
func (pg PG) NewDB(t testing.TB, prefix string) string {
	t.Helper()
	name := prefix + "_" + RandHex(4)
	pg.Query(t, "postgres", "CREATE DATABASE "+name)
	t.Cleanup(func() { pg.DropDB(name) })
	return name
}

// DropDB drops a database, ignoring errors.
func (pg PG) DropDB(name string) {
	pg.psql("postgres", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

// RandHex returns n random bytes in hex.
func RandHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// TableChecksums returns "table: count md5" for every user table of db,
// ordered, so two databases' contents can be compared.
func (pg PG) TableChecksums(t testing.TB, db string) map[string]string {
	t.Helper()
	tables := pg.Query(t, db, `SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
		WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1`)
	out := map[string]string{}
	for _, tb := range strings.Split(tables, "\n") {
		if tb == "" {
			continue
		}
		out[tb] = pg.Query(t, db, fmt.Sprintf(
			`SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '-') FROM %s x`, tb))
	}
	return out
}

// SchemaDump returns pg_dump --schema-only of db, for comparisons.
func (pg PG) SchemaDump(t testing.TB, db string) string {
	t.Helper()
	cmd := exec.Command("pg_dump", "--schema-only", "--no-owner", "-d", db)
	cmd.Env = pg.env()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pg_dump --schema-only %s: %v", db, err)
	}
	// Newer pg_dump writes a random \restrict key into every dump.
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, "\\restrict ") && !strings.HasPrefix(l, "\\unrestrict ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// RepoRoot is the repository root (for shared test data).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Pagila returns the paths of the Pagila schema and data files from the
// folder BACKUPKIT_PAGILA names (.ci/run sets it to ../shared/testdata/
// pagila). Pagila is an optional fixture: without the variable the test
// skips loudly, even under CI; with it set, missing files are a failure.
func Pagila(t testing.TB) (schema, data string) {
	t.Helper()
	dir := os.Getenv("BACKUPKIT_PAGILA")
	if dir == "" {
		t.Skip("MISSING TEST DATA: Pagila (set BACKUPKIT_PAGILA to the folder holding pagila-schema.sql and pagila-data.sql)")
	}
	schema, data = filepath.Join(dir, "pagila-schema.sql"), filepath.Join(dir, "pagila-data.sql")
	for _, f := range []string{schema, data} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("BACKUPKIT_PAGILA=%s: %v", dir, err)
		}
	}
	return schema, data
}

// S3Server is a running versitygw.
type S3Server struct {
	Endpoint  string
	AccessKey string
	SecretKey string
	Dir       string
	cmd       *exec.Cmd
	addr      string
}

// StartS3 starts versitygw serving a temp folder on a free port, with a
// bucket named "backups". It is stopped at cleanup.
func StartS3(t testing.TB) *S3Server {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		gobin := filepath.Join(RepoRoot(), ".tools", "versitygw")
		if _, serr := os.Stat(gobin); serr != nil {
			Missing(t, "versitygw S3 server not on PATH or in .tools (run `make tools`)")
		}
		bin = gobin
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "backups"), 0o755)
	s := &S3Server{AccessKey: "testaccess", SecretKey: "testsecret-" + RandHex(8), Dir: dir}
	s.addr = freeAddr(t)
	s.Endpoint = "http://" + s.addr
	s.start(t, bin)
	t.Cleanup(s.Stop)
	return s
}

func (s *S3Server) start(t testing.TB, bin string) {
	t.Helper()
	s.cmd = exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", s.addr, "posix", s.Dir)
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	logf, _ := os.Create(filepath.Join(os.TempDir(), "versitygw-"+RandHex(3)+".log"))
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("versitygw did not start listening on %s (log %s)", s.addr, logf.Name())
}

// Stop kills the server (it can be started again with Restart).
func (s *S3Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart starts the server again on the same address and folder.
func (s *S3Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		bin = filepath.Join(RepoRoot(), ".tools", "versitygw")
	}
	s.start(t, bin)
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WaitFor polls cond until it is true or the timeout passes.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return cond()
}
