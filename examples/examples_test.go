// Package examples holds example configs; this test validates each one.
package examples

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/backupkit/backupkit/schema"
)

func TestEveryExampleValidates(t *testing.T) {
	secrets := t.TempDir()
	for _, f := range []string{"db1_password", "db2_password", "backup_key", "smtp_password", "healthchecks_url", "db_password",
		"s3_access_key", "s3_secret_key", "webhook_url"} {
		v := "secret-" + f
		if strings.HasSuffix(f, "_url") {
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
		if strings.HasPrefix(f, "alerts") {
			continue // Prometheus rules, checked by TestAlertRules
		}
		n++
		t.Run(f, func(t *testing.T) {
			if _, err := schema.Load(f); err != nil {
				t.Fatal(err)
			}
			// No secret has a default value, and no two secrets share a file.
			b, _ := os.ReadFile(f)
			if m := defaultSecret.FindString(string(b)); m != "" {
				t.Fatalf("a secret with a default value: %s", m)
			}
			seen := map[string]string{}
			for _, m := range secretFile.FindAllStringSubmatch(string(b), -1) {
				if other, ok := seen[m[2]]; ok && other != m[1] {
					t.Fatalf("%s and %s share the secret file %s", other, m[1], m[2])
				}
				seen[m[2]] = m[1]
			}
		})
	}
	if n < 4 {
		t.Fatalf("only %d examples found", n)
	}
}

var (
	defaultSecret = regexp.MustCompile(`(?m)(password|secret_key|access_key|token|url):\s*"?\$\{[A-Z_]+:-[^}]+\}`)
	secretFile    = regexp.MustCompile(`(?m)(\w+)_file:\s*"?([^"\s]+)`)
)
