package exec

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/backupkit/backupkit/pg"
)

// RestoreArgs are the options a restore passes to pg_restore or psql.
type RestoreArgs struct {
	Clean             bool
	SingleTransaction bool
	Jobs              int
	// Sections limits the restore to these archive sections (pre-data,
	// data, post-data); empty: all.
	Sections []string
	// UseList restores only the entries of this pg_restore --list file.
	UseList string
	// Tool is the pg_restore to run (path or name); empty: "pg_restore".
	Tool string
}

func (a RestoreArgs) pgRestore(target pg.Conn) []string {
	// --dbname gets a connection string whose dbname is quoted, so a
	// database named "dbname=x" stays a name and never becomes settings.
	args := []string{"--exit-on-error", "--no-password", "--dbname", dbnameConnString(target.Database)}
	if a.Clean {
		args = append(args, "--clean", "--if-exists")
	}
	if a.SingleTransaction && a.Jobs <= 1 {
		args = append(args, "--single-transaction")
	}
	if a.Jobs > 1 {
		args = append(args, "--jobs", fmt.Sprint(a.Jobs))
	}
	for _, s := range a.Sections {
		args = append(args, "--section", s)
	}
	if a.UseList != "" {
		args = append(args, "--use-list", a.UseList)
	}
	return args
}

// dbnameConnString is a libpq connection string naming only the database,
// quoted so that no value can be read as a setting or a URI.
func dbnameConnString(name string) string {
	return "dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name) + "'"
}

// PgRestore runs pg_restore into target. It reads the archive from file
// when file is set (required for Jobs > 1), else from r.
func PgRestore(ctx context.Context, target pg.Conn, a RestoreArgs, file string, r io.Reader) error {
	tool := a.Tool
	if tool == "" {
		tool = "pg_restore"
	}
	args := a.pgRestore(target)
	if file != "" {
		cmd, stderr := command(ctx, target, tool, append(args, file)...)
		if err := cmd.Run(); err != nil {
			return toolError(tool, err, stderr)
		}
		return nil
	}
	return feed(ctx, target, tool, args, r, io.Discard)
}

// Psql runs SQL text from r into target with psql: no psqlrc, stop at the
// first error, and in restricted mode (\restrict with a key only we know),
// so a backslash command in the text (\! runs a shell) is an error, not
// an action. The dump's own \restrict/\unrestrict lines are dropped.
func Psql(ctx context.Context, target pg.Conn, singleTransaction bool, r io.Reader) error {
	args := []string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "-d", dbnameConnString(target.Database)}
	if singleTransaction {
		args = append(args, "--single-transaction")
	}
	key, err := restrictKey()
	if err != nil {
		return err
	}
	in := io.MultiReader(strings.NewReader("\\restrict "+key+"\n"), NewRestrictFilter(r))
	return feed(ctx, target, "psql", args, in, io.Discard)
}

// ListArchive pipes r into `pg_restore --list` and returns the number of
// table-of-contents entries. It reads r to its end even after pg_restore
// has read the TOC, so every byte of r is decoded and checked.
func ListArchive(ctx context.Context, tool string, r io.Reader) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if tool == "" {
		tool = "pg_restore"
	}
	cmd, stderr := command(ctx, pg.Conn{}, tool, "--list")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, toolError(tool, err, stderr)
	}
	entries := make(chan int, 1)
	go func() {
		n := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := sc.Text(); line != "" && !strings.HasPrefix(line, ";") {
				n++
			}
		}
		io.Copy(io.Discard, out)
		entries <- n
	}()
	_, err = io.CopyBuffer(&stopOnPipe{w: stdin}, r, make([]byte, copyBufSize))
	stdin.Close()
	n := <-entries
	werr := cmd.Wait()
	if err != nil {
		return n, err
	}
	if werr != nil {
		return n, fmt.Errorf("%w: %v", ErrArchive, toolError("pg_restore --list", werr, stderr))
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: pg_restore --list found no entries", ErrArchive)
	}
	return n, nil
}

// ListTOC returns the table-of-contents lines pg_restore --list prints
// for the archive on r (entries and comments), reading r only as far as
// pg_restore does.
func ListTOC(ctx context.Context, tool string, r io.Reader) ([]string, error) {
	if tool == "" {
		tool = "pg_restore"
	}
	var out strings.Builder
	if err := feed(ctx, pg.Conn{}, tool, []string{"--list"}, r, &out); err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(out.String(), "\n"), "\n"), nil
}

// A Splicer is a reader that can move its bytes into a pipe without
// copying them through user space (splice(2) from a file): feed hands it
// the tool's stdin. It returns errors.ErrUnsupported, having written
// nothing, where it cannot; feed then reads it as any reader.
type Splicer interface {
	io.Reader
	SpliceTo(pipe syscall.RawConn) (int64, error)
}

// ErrArchive means pg_restore could not read the archive.
var ErrArchive = errors.New("pg_restore cannot read the archive")

// feed runs a tool with r on its stdin. A failing r stops the tool
// before it sees the end of its input, so it never takes a cut stream
// for a complete one.
func feed(ctx context.Context, conn pg.Conn, tool string, args []string, r io.Reader, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd, stderr := command(ctx, conn, tool, args...)
	cmd.Stdout = stdout
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return toolError(tool, err, stderr)
	}
	growPipe(stdin) // a restore's megabyte writes, fewer wake-ups
	copyErr := errors.ErrUnsupported
	if s, ok := r.(Splicer); ok {
		if pipe, ok := stdin.(syscall.Conn); ok {
			if rc, err := pipe.SyscallConn(); err == nil {
				_, copyErr = s.SpliceTo(rc)
			}
		}
	}
	if errors.Is(copyErr, errors.ErrUnsupported) {
		_, copyErr = io.CopyBuffer(onlyWriter{stdin}, r, make([]byte, copyBufSize))
	}
	if copyErr != nil && !errors.Is(copyErr, syscall.EPIPE) {
		cancel() // a bad stream: stop the tool before it sees the end
	}
	stdin.Close()
	waitErr := cmd.Wait()
	if copyErr != nil && !errors.Is(copyErr, syscall.EPIPE) {
		return fmt.Errorf("reading the backup: %w", copyErr)
	}
	if waitErr != nil {
		return toolError(tool, waitErr, stderr)
	}
	return nil
}

// stopOnPipe forwards writes until the reader goes away, then discards.
type stopOnPipe struct {
	w      io.Writer
	closed bool
}

func (s *stopOnPipe) Write(p []byte) (int, error) {
	if s.closed {
		return len(p), nil
	}
	if _, err := s.w.Write(p); err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed) {
			s.closed = true
			return len(p), nil
		}
		return 0, err
	}
	return len(p), nil
}
