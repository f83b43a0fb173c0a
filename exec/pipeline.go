package exec

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
)

// BackupOptions says how one database is dumped.
type BackupOptions struct {
	Conn        Conn
	Compression Compression
	Level       int
	// Password encrypts the backup; empty means not encrypted.
	Password string
}

// Ext is the backup file extension: ".dump[.gz|.zst][.enc]".
func (o BackupOptions) Ext() string {
	ext := ".dump" + o.Compression.Ext()
	if o.Password != "" {
		ext += ".enc"
	}
	return ext
}

// Backup streams pg_dump → compression → encryption into w and returns
// the number of bytes pg_dump produced. Memory is bounded by the stages'
// buffers. On error, what was written to w is not a complete backup.
func Backup(ctx context.Context, o BackupOptions, w io.Writer) (int64, error) {
	var dst io.Writer = w
	var enc io.WriteCloser
	if o.Password != "" {
		var err error
		if enc, err = NewEncrypter(w, o.Password); err != nil {
			return 0, err
		}
		dst = enc
	}
	comp, err := newCompressor(dst, o.Compression, o.Level)
	if err != nil {
		return 0, err
	}
	n, err := Dump(ctx, o.Conn, comp, o.Compression == None || o.Compression == "")
	if cerr := comp.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("compress: %w", cerr)
	}
	if err != nil {
		return n, err
	}
	if enc != nil {
		if err := enc.Close(); err != nil {
			return n, fmt.Errorf("encrypt: %w", err)
		}
	}
	return n, nil
}

// Opener opens a stored backup from its start; it may be called more than
// once (restore reads a backup twice: to verify, then to restore).
type Opener func(ctx context.Context) (io.ReadCloser, error)

// VerifyResult is what reading a whole backup proved.
type VerifyResult struct {
	Layers     Layers
	Bytes      int64 // decoded payload bytes
	TOCEntries int   // pg_restore --list entries (custom archives)
}

// Verify reads a whole backup: it decrypts and decompresses every byte
// (the opener checks the stored checksum) and, for a custom archive, has
// `pg_restore --list` read its table of contents. It changes nothing.
func Verify(ctx context.Context, open Opener, password string) (VerifyResult, error) {
	rc, err := open(ctx)
	if err != nil {
		return VerifyResult{}, err
	}
	defer rc.Close()
	dec, err := Decode(rc, password)
	if err != nil {
		return VerifyResult{}, err
	}
	defer dec.Close()
	res := VerifyResult{Layers: dec.Layers}
	if dec.Layers.Kind != KindCustom {
		res.Bytes, err = io.Copy(io.Discard, dec)
		return res, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd, stderr := command(ctx, Conn{}, "pg_restore", "--list")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return res, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	if err := cmd.Start(); err != nil {
		return res, toolError("pg_restore", err, stderr)
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
	// pg_restore --list stops reading after the TOC; keep draining so
	// every byte is decrypted, decompressed and checksummed.
	res.Bytes, err = io.CopyBuffer(&stopOnPipe{w: stdin}, dec, make([]byte, copyBufSize))
	stdin.Close()
	res.TOCEntries = <-entries
	werr := cmd.Wait()
	if err != nil {
		return res, err
	}
	if werr != nil {
		return res, fmt.Errorf("%w: %v", ErrCorrupted, toolError("pg_restore --list", werr, stderr))
	}
	if res.TOCEntries == 0 {
		return res, fmt.Errorf("%w: pg_restore --list found no entries", ErrCorrupted)
	}
	return res, nil
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

// RestoreOptions says how a backup is restored.
type RestoreOptions struct {
	Target            Conn // Database is the target database
	Password          string
	Clean             bool
	SingleTransaction bool
	Jobs              int
	AllowSQL          bool
	// Expect, with Strict, is the pipeline the config implies; a
	// different payload is refused (without Strict: a warning).
	Expect  *Layers
	Strict  bool
	TempDir string
	Log     *slog.Logger
	// Checksummed says the opener verifies a recorded SHA-256 of the
	// stored bytes. The check pass then reads the stored bytes once for
	// the checksum and decodes only the start (password, layers) instead
	// of decoding everything twice: bytes that match the checksum are the
	// ones a complete, successful backup wrote.
	Checksummed bool
}

// ErrRefused marks a backup refused before the target was touched.
var ErrRefused = errors.New("restore refused; the target database was not changed")

// CheckBackup is the first pass of a restore: it reads and decodes the
// whole backup and checks it fits the options, before the target is
// touched. With Jobs > 1 it also spools the archive to a temp file for
// pg_restore -j and returns its path (the caller removes it).
func CheckBackup(ctx context.Context, open Opener, o RestoreOptions) (Layers, string, error) {
	if o.Checksummed && o.Jobs <= 1 {
		return quickCheck(ctx, open, o)
	}
	rc, err := open(ctx)
	if err != nil {
		return Layers{}, "", err
	}
	defer rc.Close()
	dec, err := Decode(rc, o.Password)
	if err != nil {
		return Layers{}, "", fmt.Errorf("%w: %w", ErrRefused, err)
	}
	defer dec.Close()
	if err := checkLayers(dec.Layers, o); err != nil {
		return dec.Layers, "", fmt.Errorf("%w: %w", ErrRefused, err)
	}
	var dst io.Writer = io.Discard
	var spool *os.File
	if o.Jobs > 1 && dec.Layers.Kind == KindCustom {
		spool, err = os.CreateTemp(o.TempDir, "backupkit-restore-*.dump")
		if err != nil {
			return dec.Layers, "", fmt.Errorf("temp file for --jobs: %w", err)
		}
		dst = spool
	}
	_, err = io.CopyBuffer(onlyWriter{dst}, dec, make([]byte, copyBufSize))
	if spool != nil {
		if cerr := spool.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(spool.Name())
		}
	}
	if err != nil {
		return dec.Layers, "", fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if spool != nil {
		return dec.Layers, spool.Name(), nil
	}
	return dec.Layers, "", nil
}

// quickCheck decodes the start of the backup, then reads the stored bytes
// through the checksum-verifying opener.
func quickCheck(ctx context.Context, open Opener, o RestoreOptions) (Layers, string, error) {
	layers, err := func() (Layers, error) {
		rc, err := open(ctx)
		if err != nil {
			return Layers{}, err
		}
		defer rc.Close()
		dec, err := Decode(rc, o.Password)
		if err != nil {
			return Layers{}, err
		}
		defer dec.Close()
		if _, err := io.CopyN(io.Discard, dec, 1<<20); err != nil && err != io.EOF {
			return dec.Layers, err
		}
		return dec.Layers, nil
	}()
	if err != nil {
		return layers, "", fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if err := checkLayers(layers, o); err != nil {
		return layers, "", fmt.Errorf("%w: %w", ErrRefused, err)
	}
	rc, err := open(ctx)
	if err != nil {
		return layers, "", err
	}
	defer rc.Close()
	if _, err := io.CopyBuffer(onlyWriter{io.Discard}, rc, make([]byte, copyBufSize)); err != nil {
		return layers, "", fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return layers, "", nil
}

func checkLayers(got Layers, o RestoreOptions) error {
	if got.Kind == KindSQL && !o.AllowSQL {
		return fmt.Errorf("the backup holds SQL text, not a pg_dump archive: pass --allow-sql-fallback to restore it with psql")
	}
	if o.Expect == nil {
		return nil
	}
	e := *o.Expect
	if got.Encrypted != e.Encrypted || got.Compression != e.Compression {
		msg := fmt.Sprintf("payload is %s but the config says %s", got, e)
		if o.Strict {
			return fmt.Errorf("--strict-sniff: %s", msg)
		}
		if o.Log != nil {
			o.Log.Warn("pipeline mismatch; restoring what the bytes say", "detail", msg)
		}
	}
	return nil
}

// Restore runs pg_restore (or psql for SQL text) on a backup that
// CheckBackup accepted. spool is CheckBackup's temp file for --jobs, or
// empty to stream the backup again through open.
func Restore(ctx context.Context, open Opener, spool string, layers Layers, o RestoreOptions) error {
	if spool != "" {
		args := append(restoreArgs(o), "--jobs", fmt.Sprint(o.Jobs), spool)
		cmd, stderr := command(ctx, o.Target, "pg_restore", args...)
		if err := cmd.Run(); err != nil {
			return toolError("pg_restore", err, stderr)
		}
		return nil
	}
	rc, err := open(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	dec, err := Decode(rc, o.Password)
	if err != nil {
		return err
	}
	defer dec.Close()
	if dec.Layers != layers {
		return fmt.Errorf("%w: the backup changed between the check and the restore", ErrCorrupted)
	}
	name, args := "pg_restore", restoreArgs(o)
	if layers.Kind == KindSQL {
		name, args = "psql", []string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "-d", o.Target.Database}
		if o.SingleTransaction {
			args = append(args, "--single-transaction")
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd, stderr := command(ctx, o.Target, name, args...)
	if layers.Kind == KindSQL {
		cmd.Stdout = io.Discard
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return toolError(name, err, stderr)
	}
	_, copyErr := io.CopyBuffer(onlyWriter{stdin}, dec, make([]byte, copyBufSize))
	if copyErr != nil && !errors.Is(copyErr, syscall.EPIPE) {
		cancel() // a bad stream: stop the tool before it sees the end
	}
	stdin.Close()
	waitErr := cmd.Wait()
	if copyErr != nil && !errors.Is(copyErr, syscall.EPIPE) {
		return fmt.Errorf("reading the backup: %w", copyErr)
	}
	if waitErr != nil {
		return toolError(name, waitErr, stderr)
	}
	return nil
}

func restoreArgs(o RestoreOptions) []string {
	args := []string{"--exit-on-error", "--no-password", "--dbname", o.Target.Database}
	if o.Clean {
		args = append(args, "--clean", "--if-exists")
	}
	if o.SingleTransaction && o.Jobs <= 1 {
		args = append(args, "--single-transaction")
	}
	return args
}
