package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/backupkit/backupkit/internal/testenv"
)

func TestInitValidateTestApply(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	db := testDB(t, pg, "bk_init")
	cfg := filepath.Join(dir, "bk.yaml")
	url := fmt.Sprintf("postgres://%s@%s:%d/%s", pg.User, pg.Host, pg.Port, db)
	mustCLI(t, 0, "init", "-o", cfg, "--database-url", url, "--storage", filepath.Join(dir, "backups"))
	if code, _, errs := cli(t, "init", "-o", cfg, "--database-url", url); code != 2 || !strings.Contains(errs, "--force") {
		t.Fatalf("init over an existing file: exit %d %s", code, errs)
	}
	mustCLI(t, 0, "validate", "-c", cfg)
	out := mustCLI(t, 0, "test", "-c", cfg)
	for _, want := range []string{"✓ database " + db + ": reachable, PostgreSQL", "✓ storage local", "all checks passed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("test output lacks %q:\n%s", want, out)
		}
	}
	out = mustCLI(t, 0, "apply", "-c", cfg)
	if !strings.Contains(out, "✓ backup "+db) {
		t.Fatalf("apply: %s", out)
	}
	mustCLI(t, 0, "plan", "-c", cfg, "--detailed-exitcode")
	// S3 form of init validates too.
	s3cfg := filepath.Join(dir, "s3.yaml")
	mustCLI(t, 0, "init", "-o", s3cfg, "--storage", "s3://my-bucket/pg")
	mustCLI(t, 0, "validate", "-c", s3cfg)
}

func TestTestReportsFailures(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	cfg := config(t, pg, dir, nil, dbSpec{name: "gone", database: "no_such_database_here"})
	// Storage that cannot be written: a file where the folder should be.
	os.WriteFile(filepath.Join(dir, "store"), []byte("x"), 0o600)
	body, _ := os.ReadFile(cfg)
	body = append(body, []byte("notifications:\n  - type: webhook\n    on: [failure]\n    config:\n      url: http://127.0.0.1:1/hook\n      max_attempts: 1\n      max_wait: 2s\n")...)
	os.WriteFile(cfg, body, 0o600)
	code, out, _ := cli(t, "test", "-c", cfg, "--notify")
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{"✗ database gone: not reachable", "✗ storage local", "✗ notification 0 (webhook, on failure)", "hint:"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}
