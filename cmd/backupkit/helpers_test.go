package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backupkit/backupkit/internal/testenv"
)

// cli runs backupkit in-process and returns exit code, stdout, stderr.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// mustCLI runs backupkit and fails the test unless it exits with want.
func mustCLI(t *testing.T, want int, args ...string) string {
	t.Helper()
	code, out, errs := cli(t, args...)
	if code != want {
		t.Fatalf("backupkit %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errs)
	}
	return out
}

func writeFile(t *testing.T, path, body string) string {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testDB creates a database with a little data.
func testDB(t *testing.T, pg testenv.PG, prefix string) string {
	db := pg.NewDB(t, prefix)
	pg.Query(t, db, `CREATE TABLE items (id int PRIMARY KEY, name text, data bytea);
		INSERT INTO items SELECT g, 'item ' || g || ' ☃', decode(md5(g::text), 'hex') FROM generate_series(1, 3000) g;`)
	return db
}

type dbSpec struct {
	name, database, storage, extra string
}

// config writes a config with a local storage (and an S3 one when srv is
// set) for the given databases.
func config(t *testing.T, pg testenv.PG, dir string, srv *testenv.S3Server, dbs ...dbSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nstorage:\n  - name: local\n    type: local\n    local:\n      path: %s\n", filepath.Join(dir, "store"))
	if srv != nil {
		fmt.Fprintf(&b, "  - name: s3main\n    type: s3\n    s3:\n      bucket: backups\n      region: us-east-1\n      prefix: bk\n      endpoint: %s\n      force_path_style: true\n      access_key: ${TEST_S3_ACCESS}\n      secret_key: ${TEST_S3_SECRET}\n      part_size_mib: 5\n", srv.Endpoint)
		t.Setenv("TEST_S3_ACCESS", srv.AccessKey)
		t.Setenv("TEST_S3_SECRET", srv.SecretKey)
	}
	b.WriteString("databases:\n")
	for _, d := range dbs {
		st := d.storage
		if st == "" {
			st = "local"
		}
		fmt.Fprintf(&b, "  - name: %s\n    type: postgres\n    connection:\n      host: %s\n      port: %d\n      database: %s\n      user: %s\n    backup:\n      storage: %s\n%s",
			d.name, pg.Host, pg.Port, d.database, pg.User, st, d.extra)
	}
	return writeFile(t, filepath.Join(dir, "config.yaml"), b.String())
}

type planOut struct {
	Version int `json:"version"`
	Actions []struct {
		Type, Database, Storage, Key, Reason string
		Conditional                          bool
	} `json:"actions"`
}

func parsePlan(t *testing.T, s string) planOut {
	t.Helper()
	var p planOut
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		t.Fatalf("plan json: %v\n%s", err, s)
	}
	return p
}

type listJSON struct {
	Backups []struct {
		Database, Storage, Key, SHA256 string
		Size                           int64
		KeptBy                         []string `json:"kept_by"`
	} `json:"backups"`
}

func parseList(t *testing.T, s string) listJSON {
	t.Helper()
	var l listJSON
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		t.Fatalf("list json: %v\n%s", err, s)
	}
	return l
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readAll(t *testing.T, rc io.ReadCloser) string {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
