package exec

import (
	"cmp"
	"context"
	"fmt"
	"io"
	osexec "os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/fault"
	"github.com/backupkit/backupkit/pg"
)

// DumpOptions say how pg_dump runs.
type DumpOptions struct {
	Conn pg.Conn
	// Tool is the pg_dump to run (a path, or a name looked up in PATH);
	// empty means "pg_dump".
	Tool string
	// BinDir is searched first for the client tools (pg_bin_dir).
	BinDir string
	// LockWaitTimeout bounds pg_dump's wait for a table lock (0: wait
	// forever), so a backup never hangs behind a long transaction.
	LockWaitTimeout time.Duration
	// Compress lets pg_dump compress the archive itself; BackupKit turns
	// it off when it compresses the stream.
	Compress bool
	// Coalesce joins the rows of each table's data into 64 KiB chunks as
	// they come (format.Coalesce): pg_dump --compress=0 writes a chunk
	// per row, which the compressor would pay for (a length a row, 3%
	// of the archive here, compressing badly) and pg_restore too.
	Coalesce bool
	// Progress, when set, is told the bytes pg_dump writes as they come.
	Progress func(n int)
	// Globals dumps the server's globals (roles, memberships, role
	// settings, tablespaces) with pg_dumpall --globals-only instead, as
	// SQL text; Tool then names a pg_dumpall.
	Globals bool
	// NoRolePasswords leaves role passwords out of a globals dump
	// (pg_dumpall --no-role-passwords: what a non-superuser can read).
	NoRolePasswords bool
}

// copyBufSize is the read size from pg_dump's stdout.
const copyBufSize = 1 << 20

// Dump runs pg_dump in custom format and streams its output to w. With
// compress false pg_dump's own compression is turned off (BackupKit
// compresses instead). A write error to w stops pg_dump; a pg_dump
// failure returns its stderr.
func Dump(ctx context.Context, o DumpOptions, w io.Writer) (int64, error) {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd, stderr, name, tool := o.command(ctx)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, toolError(name, err, stderr)
	}
	growPipe(out)
	if o.Progress != nil {
		w = countingWriter{w, o.Progress}
	}
	var src io.Reader = out
	if o.Coalesce && !o.Globals {
		src = format.Coalesce(out)
	}
	n, copyErr := copyAhead(w, src)
	if copyErr != nil {
		cancel() // stop pg_dump; its output has nowhere to go
	}
	waitErr := cmd.Wait()
	switch {
	case parent.Err() != nil:
		// Cancelled from outside: that is the cause, whatever the pipes say.
		return n, fmt.Errorf("%s cancelled: %w", name, context.Cause(parent))
	case copyErr != nil:
		return n, copyErr
	case waitErr != nil:
		err := toolError(tool, waitErr, stderr)
		if s := stderr.String(); strings.Contains(s, "LOCK TABLE") && strings.Contains(s, "timeout") {
			return n, fault.Mark(fault.Transient, fmt.Errorf("pg_dump could not lock a table within lock_wait_timeout (%s): another transaction holds a conflicting lock: %w", o.LockWaitTimeout, err))
		}
		return n, err
	}
	if n == 0 {
		return 0, fmt.Errorf("%s wrote nothing", name)
	}
	return n, nil
}

// command prepares the pg_dump (or pg_dumpall) o runs; name is the
// kind of tool, for messages.
func (o DumpOptions) command(ctx context.Context) (cmd *osexec.Cmd, stderr *tailBuffer, name, tool string) {
	args, tool := o.args()
	name = "pg_dump"
	if o.Globals {
		name = "pg_dumpall"
	}
	cmd, stderr = command(ctx, o.Conn, tool, args...)
	if !o.Globals {
		cmd.Env = append(cmd.Env, bufferedStdout()...)
	}
	return cmd, stderr, name, tool
}

// args are the tool and its arguments for o.
func (o DumpOptions) args() ([]string, string) {
	if o.Globals {
		args := []string{"--globals-only", "--no-password"}
		if o.Conn.Database != "" {
			args = append(args, "--database="+o.Conn.Database)
		}
		if o.NoRolePasswords {
			args = append(args, "--no-role-passwords")
		}
		return args, cmp.Or(o.Tool, "pg_dumpall")
	}
	args := []string{"--format=custom", "--no-password"}
	if !o.Compress {
		args = append(args, "--compress=0")
	}
	if o.LockWaitTimeout > 0 {
		args = append(args, fmt.Sprintf("--lock-wait-timeout=%d", o.LockWaitTimeout.Milliseconds()))
	}
	return args, cmp.Or(o.Tool, "pg_dump")
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

// growPipe asks for a 1 MiB buffer (Linux) for a pipe to or from a
// tool, so the writer runs further ahead of the reader and both wake
// less often; failure is harmless.
func growPipe(p any) {
	if f, ok := p.(interface {
		SyscallConn() (syscall.RawConn, error)
	}); ok {
		if rc, err := f.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { setPipeSize(fd, 1<<20) })
		}
	}
}

// BackupOptions say how one database is dumped and wrapped.
type BackupOptions struct {
	Dump        DumpOptions
	Compression format.Compression
	Level       int
	// Password encrypts the backup in the chunked AES format; empty
	// means not encrypted, unless Recipients are set.
	Password string
	// Recipients, when set, encrypt the backup as an age stream instead.
	Recipients format.Recipients
	// Sealer, when set, is Password's key derived ahead (the KDF's memory
	// returned before the pipeline's buffers exist).
	Sealer *format.Sealer
}

// Ext is the key suffix of a backup made with these options.
func (o BackupOptions) Ext() format.Ext {
	e := format.Ext{Compression: o.Compression}
	if e.Compression == "" {
		e.Compression = format.None
	}
	switch {
	case o.Recipients.Len() > 0:
		e.Encryption = format.Age
	case o.Password != "":
		e.Encryption = format.Enc
	}
	return e
}

// DumpResult is what a backup's dump was.
type DumpResult struct {
	Bytes int64 // what pg_dump wrote
	// Archive is the walk of pg_dump's stream: its table of contents,
	// and the rows of every table counted from the data itself.
	Archive *format.ArchiveInfo
	// NoRolePasswords: a globals dump without role passwords.
	NoRolePasswords bool
}

// Backup streams pg_dump → compression → encryption into w. On the way
// the archive is walked to its end (its table of contents read, its rows
// counted): a dump whose stream does not read as a whole archive fails.
// Memory is bounded by the stages' buffers. On error, what was written to
// w is not a complete backup.
func Backup(ctx context.Context, o BackupOptions, w io.Writer) (DumpResult, error) {
	var res DumpResult
	var dst io.Writer = w
	var enc io.WriteCloser
	var err error
	switch {
	case o.Recipients.Len() > 0:
		enc, err = format.NewAgeEncrypter(w, o.Recipients)
	case o.Sealer != nil:
		enc, err = o.Sealer.Encrypter(w)
	case o.Password != "":
		enc, err = format.NewEncrypter(w, o.Password)
	}
	if err != nil {
		return res, err
	}
	if enc != nil {
		dst = enc
	}
	comp, err := format.NewCompressor(dst, o.Compression, o.Level)
	if err != nil {
		return res, err
	}
	d := o.Dump
	if d.Globals {
		return res, backupGlobals(ctx, d, comp, enc, &res)
	}
	d.Compress = o.Compression == format.None || o.Compression == ""
	d.Coalesce = !d.Compress
	walk := newWalkTee()
	res.Bytes, err = Dump(ctx, d, io.MultiWriter(comp, walk))
	info, werr := walk.finish(err)
	if cerr := comp.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("compress: %w", cerr)
	}
	if err != nil {
		return res, err
	}
	if werr != nil {
		return res, fmt.Errorf("pg_dump's output does not read as a whole archive: %w", werr)
	}
	res.Archive = info
	if enc != nil {
		if err := enc.Close(); err != nil {
			return res, fmt.Errorf("encrypt: %w", err)
		}
	}
	return res, nil
}

// backupGlobals streams pg_dumpall --globals-only through the codec and
// encryption; the SQL must read as a whole cluster dump (its header and
// its "complete" footer), else it is not a backup.
func backupGlobals(ctx context.Context, d DumpOptions, comp, enc io.WriteCloser, res *DumpResult) error {
	ends := &endsWriter{}
	res.NoRolePasswords = d.NoRolePasswords
	var err error
	res.Bytes, err = Dump(ctx, d, io.MultiWriter(comp, ends))
	if cerr := comp.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("compress: %w", cerr)
	}
	if err != nil {
		return err
	}
	if err := format.CheckGlobalsDump(ends.head, ends.tail); err != nil {
		return fmt.Errorf("pg_dumpall's output: %w", err)
	}
	if enc != nil {
		if err := enc.Close(); err != nil {
			return fmt.Errorf("encrypt: %w", err)
		}
	}
	return nil
}

// endsWriter keeps the first and last bytes written to it.
type endsWriter struct{ head, tail []byte }

const endsKeep = 256

func (e *endsWriter) Write(p []byte) (int, error) {
	if room := endsKeep - len(e.head); room > 0 {
		e.head = append(e.head, p[:min(room, len(p))]...)
	}
	e.tail = append(e.tail, p...)
	if len(e.tail) > endsKeep {
		e.tail = append(e.tail[:0], e.tail[len(e.tail)-endsKeep:]...)
	}
	return len(p), nil
}

// walkTee walks the archive that is written to it, in a goroutine; a
// walk that fails keeps draining, so the dump is never held up.
type walkTee struct {
	pw   *io.PipeWriter
	done chan walked
}

type walked struct {
	info *format.ArchiveInfo
	err  error
}

func newWalkTee() *walkTee {
	pr, pw := io.Pipe()
	t := &walkTee{pw: pw, done: make(chan walked, 1)}
	go func() {
		info, err := format.WalkArchive(pr)
		if err == nil {
			var b [1]byte
			if n, _ := pr.Read(b[:]); n > 0 {
				err = fmt.Errorf("%w: bytes after the archive's end", format.ErrArchive)
			}
		}
		io.Copy(io.Discard, pr)
		t.done <- walked{info, err}
	}()
	return t
}

func (t *walkTee) Write(p []byte) (int, error) { return t.pw.Write(p) }

// finish ends the stream (with the dump's error, if any) and returns
// the walk.
func (t *walkTee) finish(dumpErr error) (*format.ArchiveInfo, error) {
	t.pw.CloseWithError(dumpErr)
	w := <-t.done
	return w.info, w.err
}

type countingWriter struct {
	w io.Writer
	f func(int)
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.f(n)
	return n, err
}
