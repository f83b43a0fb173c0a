package main

import (
	"bytes"
	"os/exec"
	"testing"
	"time"

	"github.com/backupkit/backupkit/internal/procmem"
	"github.com/backupkit/backupkit/internal/testenv"
)

// Three encrypted databases backed up at once, each with a password of
// its own: the three key derivations (Argon2id, 64 MiB each) run one at a
// time, so the process peaks at one KDF's memory, not three.
func TestKeyDerivationsRunOneAtATime(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	var dbs []dbSpec
	for _, name := range []string{"one", "two", "three"} {
		dbs = append(dbs, dbSpec{name: name, database: testDB(t, pg, "bk_kdf_"+name),
			extra: "      compression: zstd\n      encryption:\n        enabled: true\n        password: password-of-" + name + "\n"})
	}
	cfg := config(t, pg, dir, nil, dbs...)
	cmd := exec.Command(binary(t), "backup", "-c", cfg, "--parallel", "3")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The process's own high-water mark, polled: its ru_maxrss would
	// include this test binary's (see procmem).
	stop := procmem.Watch(cmd.Process.Pid, 5*time.Millisecond)
	err := cmd.Wait()
	peak := stop() >> 10
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, out.Bytes())
	}
	if peak == 0 {
		t.Fatal("no VmHWM read from /proc while the backup ran")
	}
	t.Logf("peak RSS of backup --parallel 3 with three passwords: %d MiB", peak)
	if peak > 125 {
		t.Fatalf("peak RSS %d MiB: more than one 64 MiB key derivation at once", peak)
	}
	for _, name := range []string{"one", "two", "three"} {
		mustCLI(t, 0, "verify", "-c", cfg, "--db", name, "--from", "latest")
	}
}
