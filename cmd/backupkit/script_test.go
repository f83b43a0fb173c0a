package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the scripts in testdata/script run "backupkit" in-process.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"backupkit": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs one CLI behaviour per .txtar file: the config inline,
// the command, the expected output.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata/script"})
}
