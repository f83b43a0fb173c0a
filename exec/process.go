package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Conn says how the PostgreSQL tools reach a database. The password goes
// to the child's environment (PGPASSWORD), never its command line.
type Conn struct {
	Host     string
	Port     int
	Database string
	User     string
	Password string
	SSLMode  string
}

// env is the child environment: ours without PG* variables, plus the
// connection's.
func (c Conn) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"PGHOST="+c.Host,
		"PGPORT="+strconv.Itoa(c.Port),
		"PGUSER="+c.User,
		"PGDATABASE="+c.Database,
		"PGAPPNAME=backupkit",
		"PGCONNECT_TIMEOUT=15",
	)
	if c.Password != "" {
		env = append(env, "PGPASSWORD="+c.Password)
	}
	if c.SSLMode != "" {
		env = append(env, "PGSSLMODE="+c.SSLMode)
	}
	return env
}

// tailBuffer keeps the first and last few KiB written to it: enough of a
// tool's stderr for an error message, bounded whatever it prints.
type tailBuffer struct {
	mu      sync.Mutex
	head    []byte
	tail    []byte
	dropped bool
}

const tailKeep = 4 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if room := tailKeep - len(t.head); room > 0 {
		k := min(room, len(p))
		t.head = append(t.head, p[:k]...)
		p = p[k:]
	}
	if len(p) > 0 {
		t.tail = append(t.tail, p...)
		if len(t.tail) > tailKeep {
			t.tail = t.tail[len(t.tail)-tailKeep:]
			t.dropped = true
		}
	}
	return n, nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.head)
	if t.dropped {
		s += "\n…\n"
	}
	return strings.TrimSpace(s + string(t.tail))
}

// command prepares a PostgreSQL client tool: no shell, SIGTERM on
// cancellation, a bounded wait for it to go.
func command(ctx context.Context, conn Conn, name string, args ...string) (*osexec.Cmd, *tailBuffer) {
	cmd := osexec.CommandContext(ctx, name, args...)
	cmd.Env = conn.env()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 3 * time.Second
	stderr := &tailBuffer{}
	cmd.Stderr = stderr
	return cmd, stderr
}

// toolError describes a failed tool run with its stderr.
func toolError(name string, err error, stderr *tailBuffer) error {
	var ee *osexec.ExitError
	msg := err.Error()
	if errors.As(err, &ee) {
		msg = ee.ProcessState.String()
	}
	if errors.Is(err, osexec.ErrNotFound) {
		return fmt.Errorf("%s not found in PATH: install the PostgreSQL client tools", name)
	}
	if s := stderr.String(); s != "" {
		return fmt.Errorf("%s failed (%s): %s", name, msg, s)
	}
	return fmt.Errorf("%s failed: %s", name, msg)
}

// copyBufSize is the read size from pg_dump's stdout.
const copyBufSize = 1 << 20

// Dump runs pg_dump in custom format and streams its output to w. With
// compress false pg_dump's own compression is turned off (BackupKit
// compresses instead). A write error to w stops pg_dump; a pg_dump
// failure returns its stderr.
func Dump(ctx context.Context, conn Conn, w io.Writer, pgCompress bool) (int64, error) {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	args := []string{"--format=custom", "--no-password"}
	if !pgCompress {
		args = append(args, "--compress=0")
	}
	cmd, stderr := command(ctx, conn, "pg_dump", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, toolError("pg_dump", err, stderr)
	}
	growPipe(out)
	n, copyErr := copyAhead(w, out)
	if copyErr != nil {
		cancel() // stop pg_dump; its output has nowhere to go
	}
	waitErr := cmd.Wait()
	switch {
	case parent.Err() != nil:
		// Cancelled from outside: that is the cause, whatever the pipes say.
		return n, fmt.Errorf("pg_dump cancelled: %w", context.Cause(parent))
	case copyErr != nil:
		return n, copyErr
	case waitErr != nil:
		return n, toolError("pg_dump", waitErr, stderr)
	}
	if n == 0 {
		return 0, fmt.Errorf("pg_dump wrote nothing")
	}
	return n, nil
}

// onlyWriter hides ReadFrom so io.CopyBuffer uses our large buffer.
type onlyWriter struct{ io.Writer }

// Read-ahead between pg_dump and the pipeline: pg_dump keeps dumping
// while a block is compressed, instead of stalling on a full pipe.
const (
	aheadBufs = 4
	aheadSize = 256 << 10
)

// copyAhead copies r to w with a reader goroutine that fills up to
// aheadBufs buffers ahead of the writer. It returns once r is drained
// or w failed (then r is drained by the goroutine until the caller
// stops the producer).
func copyAhead(w io.Writer, r io.Reader) (int64, error) {
	full := make(chan []byte, aheadBufs)
	free := make(chan []byte, aheadBufs)
	for i := 0; i < aheadBufs; i++ {
		free <- make([]byte, aheadSize)
	}
	var readErr error
	go func() {
		defer close(full)
		for buf := range free {
			n, err := io.ReadFull(r, buf)
			if n > 0 {
				full <- buf[:n]
			}
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					readErr = err
				}
				return
			}
		}
	}()
	var total int64
	var werr error
	for buf := range full {
		if werr == nil {
			var k int
			k, werr = w.Write(buf)
			total += int64(k)
			if werr != nil {
				close(free) // the reader stops after its current read
				continue
			}
		}
		if werr == nil {
			free <- buf[:cap(buf)]
		}
	}
	if werr != nil {
		return total, werr
	}
	return total, readErr
}

// growPipe asks for a 1 MiB pipe buffer (Linux), so pg_dump can run
// further ahead; failure is harmless.
func growPipe(r io.Reader) {
	if f, ok := r.(interface {
		SyscallConn() (syscall.RawConn, error)
	}); ok {
		if rc, err := f.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { setPipeSize(fd, 1<<20) })
		}
	}
}

// ToolVersion returns the major version of a client tool (pg_dump 15.4 → 15).
func ToolVersion(ctx context.Context, name string) (int, string, error) {
	out, err := osexec.CommandContext(ctx, name, "--version").Output()
	if err != nil {
		return 0, "", toolError(name, err, &tailBuffer{})
	}
	s := strings.TrimSpace(string(out))
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, s, fmt.Errorf("%s --version: no output", name)
	}
	major, err := strconv.Atoi(strings.SplitN(f[len(f)-1], ".", 2)[0])
	if err != nil {
		// "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
		for _, w := range f {
			if m, err2 := strconv.Atoi(strings.SplitN(w, ".", 2)[0]); err2 == nil {
				return m, s, nil
			}
		}
		return 0, s, fmt.Errorf("cannot read the version of %s from %q", name, s)
	}
	return major, s, nil
}
