// Package archtest holds the rules of the code's shape as tests, so the
// layering cannot drift silently: which package may import which, a
// doc.go in every package, and no command file in cmd/backupkit over 250
// lines.
package archtest

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/backupkit/backupkit"

// allowed lists, for each package, the BackupKit packages its non-test
// code may import (directly or not). Everything else is a violation.
var allowed = map[string][]string{
	"internal/secret":      {},
	"internal/fault":       {},
	"internal/populate":    {},
	"format":               {"internal/populate"},
	"sinks":                {"internal/fault", "internal/populate"},
	"pg":                   {},
	"schema":               {"internal/secret", "format", "internal/populate"},
	"repo":                 {"format", "sinks", "internal/fault", "internal/populate"},
	"exec":                 {"format", "pg", "internal/fault", "internal/populate"},
	"alerting":             {"internal/secret"},
	"restore":              {"exec", "format", "pg", "repo", "sinks", "internal/fault", "internal/populate"},
	"reconcile":            {"exec", "format", "pg", "repo", "restore", "sinks", "internal/fault", "internal/populate"},
	"cmd/backupkit":        {"*"},
	"sinks/sinktest":       {"sinks", "internal/fault", "internal/populate"},
	"internal/testenv":     {},
	"internal/testsummary": {},
	"internal/procmem":     {},
	"e2e":                  {},
	"bench":                {"*"},
	"examples":             {"*"},
}

type pkg struct {
	ImportPath string
	Deps       []string
	GoFiles    []string
	Dir        string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if rel == "internal/archtest" {
			continue
		}
		rules, ok := allowed[rel]
		if !ok {
			t.Errorf("package %s has no import rule: add it to allowed", rel)
			continue
		}
		if slices.Contains(rules, "*") {
			continue
		}
		for _, d := range p.Deps {
			if !strings.HasPrefix(d, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(d, module+"/")
			if !slices.Contains(rules, dep) {
				t.Errorf("%s imports %s (directly or through another package), which the layering forbids", rel, dep)
			}
		}
	}
}

// Only cmd (and tests) may import the config package: everything else
// gets small typed inputs.
func TestOnlyCmdImportsSchema(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if rel == "cmd/backupkit" || rel == "bench" || rel == "examples" {
			continue
		}
		if slices.Contains(p.Deps, module+"/schema") {
			t.Errorf("%s imports schema: only cmd/backupkit may", rel)
		}
	}
}

func TestEveryPackageHasADocFile(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if rel == "cmd/backupkit" || rel == "bench" || rel == "examples" || rel == "internal/archtest" {
			continue
		}
		if !slices.Contains(p.GoFiles, "doc.go") && !hasPackageDoc(t, p) {
			t.Errorf("%s has no doc.go (or package doc comment) saying what it owns and must not import", rel)
		}
	}
}

func hasPackageDoc(t *testing.T, p pkg) bool {
	for _, f := range p.GoFiles {
		b, err := os.ReadFile(filepath.Join(p.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "\n// Package ") || strings.HasPrefix(string(b), "// Package ") || strings.HasPrefix(string(b), "// Command ") {
			return true
		}
	}
	return false
}

func TestCommandFilesStaySmall(t *testing.T) {
	files, _ := filepath.Glob("../../cmd/backupkit/*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			n++
		}
		fh.Close()
		if n > 250 {
			t.Errorf("%s has %d lines; keep command files at 250 or fewer (one command per file)", filepath.Base(f), n)
		}
	}
}
