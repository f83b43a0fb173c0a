package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/backupkit/backupkit/internal/testenv"
)

// The README's alert rules fire when they should, for a database that
// never had a backup too: checked by Prometheus's own rule tester.
func TestAlertRules(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		bin = filepath.Join(testenv.RepoRoot(), ".tools", "promtool")
		if _, err := os.Stat(bin); err != nil {
			testenv.Missing(t, "promtool not on PATH or in .tools (run `make tools`)")
		}
	}
	out, err := exec.Command(bin, "test", "rules", "alerts_test.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
