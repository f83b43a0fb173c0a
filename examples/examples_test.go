// Package examples holds example configs; this test validates each one.
package examples

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/backupkit/backupkit/schema"
)

func TestEveryExampleValidates(t *testing.T) {
	secrets := t.TempDir()
	for _, f := range []string{"db1_password", "db2_password", "backup_key", "smtp_password", "healthchecks_url", "db_password"} {
		v := "secret-" + f
		if f == "healthchecks_url" {
			v = "https://hc-ping.com/0000"
		}
		os.WriteFile(filepath.Join(secrets, f), []byte(v+"\n"), 0o600)
	}
	t.Setenv("SECRETS_DIR", secrets)
	files, _ := filepath.Glob("*")
	n := 0
	for _, f := range files {
		switch filepath.Ext(f) {
		case ".yaml", ".yml", ".json", ".cue":
		default:
			continue
		}
		n++
		t.Run(f, func(t *testing.T) {
			if _, err := schema.Load(f); err != nil {
				t.Fatal(err)
			}
		})
	}
	if n < 4 {
		t.Fatalf("only %d examples found", n)
	}
}
