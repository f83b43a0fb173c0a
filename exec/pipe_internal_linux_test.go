package exec

import (
	osexec "os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// growPipe reaches the pipes exec.Cmd hands out for a tool's stdin and
// stdout (they are wrapped, not *os.File) and makes them 1 MiB.
func TestGrowPipeReachesToolPipes(t *testing.T) {
	cmd := osexec.Command("cat")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer in.Close()
	for name, p := range map[string]any{"stdin": in, "stdout": out} {
		growPipe(p)
		rc, err := p.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var size int
		rc.Control(func(fd uintptr) { size, _ = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0) })
		if size < 1<<20 {
			t.Errorf("%s pipe holds %d bytes after growPipe, want 1 MiB", name, size)
		}
	}
}
