package exec

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/pg"
)

// pg_dump writes its archive to the pipeline in megabytes, not in its
// stdio's 4 KiB: held with the pipe full, the write it is blocked in asks
// for at least a megabyte. Without the preload the same pg_dump asks for
// 4 KiB, so the check can fail.
func TestDumpWritesStdoutInMegabytes(t *testing.T) {
	if len(bufferedStdout()) == 0 {
		testenv.Missing(t, "coreutils' libstdbuf (one of %v, root's) is not installed: pg_dump writes 4 KiB at a time", libstdbufPaths)
	}
	p := testenv.Postgres(t)
	db := p.NewDB(t, "bk_stdbuf")
	// About 3 MB of rows: more than the buffer and the pipe together.
	p.Query(t, db, "CREATE TABLE t AS SELECT g, repeat(md5(g::text), 20) AS s FROM generate_series(1, 5000) g")
	o := DumpOptions{Conn: pg.Conn{Host: p.Host, Port: p.Port, User: p.User, Database: db}}

	for _, tc := range []struct {
		name     string
		preload  bool
		min, max uint64
	}{
		{"with libstdbuf", true, dumpStdoutBuffer, 1 << 30},
		{"without", false, 1, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cmd, _, _, _ := o.command(ctx)
			if !tc.preload {
				cmd.Env = slices.DeleteFunc(cmd.Env, func(kv string) bool {
					return strings.HasPrefix(kv, "LD_PRELOAD=") || strings.HasPrefix(kv, "_STDBUF_O=")
				})
			}
			out, err := cmd.StdoutPipe() // 64 KiB, and never read
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); out.Close(); cmd.Wait() }()
			n, ok := blockedWriteSize(cmd.Process.Pid, 30*time.Second)
			if !ok {
				t.Fatal("pg_dump never blocked writing to its stdout")
			}
			if n < tc.min || n > tc.max {
				t.Fatalf("pg_dump is blocked in a write of %d bytes to stdout, want %d to %d", n, tc.min, tc.max)
			}
		})
	}
}

// blockedWriteSize waits until pid is blocked in write(2) on its stdout
// (/proc/PID/syscall: the number, then the arguments) and returns the
// size it asked for.
func blockedWriteSize(pid int, wait time.Duration) (uint64, bool) {
	path := filepath.Join("/proc", strconv.Itoa(pid), "syscall")
	for end := time.Now().Add(wait); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, false
		}
		f := strings.Fields(string(b))
		if len(f) < 4 || f[0] != strconv.Itoa(unix.SYS_WRITE) || f[1] != "0x1" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(f[3], "0x"), 16, 64)
		return n, err == nil
	}
	return 0, false
}

// Only a library root alone could have written is preloaded.
func TestLibstdbufMustBeRoots(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "libstdbuf.so")
	if err := os.WriteFile(lib, []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if got := libstdbuf([]string{lib}); got != "" {
			t.Fatalf("a library owned by uid %d was chosen: %s", os.Geteuid(), got)
		}
		return
	}
	// As root: root's library in a folder of root's only.
	os.Chmod(dir, 0o755)
	if got := libstdbuf([]string{lib}); got != lib {
		t.Fatalf("root's library in root's folder was refused (got %q)", got)
	}
	for _, c := range []struct {
		what   string
		break_ func() error
		mend   func() error
	}{
		{"writable by others", func() error { return os.Chmod(lib, 0o666) }, func() error { return os.Chmod(lib, 0o644) }},
		{"in a folder writable by others", func() error { return os.Chmod(dir, 0o777) }, func() error { return os.Chmod(dir, 0o755) }},
		{"owned by another user", func() error { return os.Chown(lib, 1000, 1000) }, func() error { return os.Chown(lib, 0, 0) }},
		{"in a folder owned by another user", func() error { return os.Chown(dir, 1000, 1000) }, func() error { return os.Chown(dir, 0, 0) }},
	} {
		if err := c.break_(); err != nil {
			t.Fatal(err)
		}
		if got := libstdbuf([]string{lib}); got != "" {
			t.Errorf("a library %s was chosen: %s", c.what, got)
		}
		if err := c.mend(); err != nil {
			t.Fatal(err)
		}
	}
	// A link of root's, in root's folder, to a library others may write.
	other := filepath.Join(t.TempDir(), "libstdbuf.so")
	if err := os.WriteFile(other, []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(other), 0o777)
	link := filepath.Join(dir, "link.so")
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}
	if got := libstdbuf([]string{link}); got != "" {
		t.Errorf("a link to a library in a folder others may write was chosen: %s", got)
	}
	if got := libstdbuf([]string{dir, lib}); got != lib {
		t.Fatalf("a folder was taken for the library, or the library after it refused (got %q)", got)
	}
}
