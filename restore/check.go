package restore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/repo"
)

// ErrRefused marks a backup refused before any database was touched.
var ErrRefused = errors.New("restore refused; the target database was not changed")

// CheckOptions say what a backup of this database must look like.
type CheckOptions struct {
	Keys format.Keys
	// Encrypted: the config encrypts this database's backups, so a payload
	// that is not encrypted (not authenticated) is refused unless
	// AllowUnencrypted.
	Encrypted        bool
	AllowUnencrypted bool
	// Encryption is what new backups use (enc or age): another is a
	// pipeline mismatch (a warning, or refused with Strict).
	Encryption format.Encryption
	// IdentityErr is why the configured identity file could not be used;
	// it is reported when an age backup needs it.
	IdentityErr error
	// Compression is the config's codec; with Strict a backup whose
	// layers differ from the config is refused, else it is a warning.
	Compression format.Compression
	Strict      bool
	// AllowSQL allows SQL-text payloads (restored with psql).
	AllowSQL bool
	// BinDir is searched first for pg_restore (pg_bin_dir).
	BinDir string
	// Target, when set, is the major version of the server restored into:
	// the pg_restore chosen must talk to it (0: any that reads the archive).
	Target int

	progress func(n int) // stored bytes read (a spooled restore's progress)
}

// Checked is what the check pass proved about a backup.
type Checked struct {
	Layers  format.Layers
	Stored  int64 // bytes read from storage
	Decoded int64 // bytes of the pg_dump archive or SQL text
	Entries int   // table-of-contents entries of a custom archive
	// Archive is what the walk of a custom archive found (nil for SQL).
	Archive  *format.ArchiveInfo
	Manifest *format.Manifest // verify: the manifest it was compared with
	// Tool is the pg_restore chosen for the archive and the target.
	Tool     exec.Client
	Warnings []string
}

// check is the first pass: it reads every stored byte (checking the
// recorded SHA-256), decrypts and authenticates every chunk, decompresses
// to the end, and has pg_restore read the archive's table of contents, or
// checks SQL text is a pg_dump plain dump. With spool set it also writes
// the decoded archive there, for the restore to read. Nothing is touched,
// except by a stage: an encrypted archive is restored into a staging
// database as it is read (see stage).
func check(ctx context.Context, src Source, p *repo.Pinned, o CheckOptions, spool *spoolWriter, st *stage) (Checked, error) {
	var c Checked
	rc, err := p.Open(ctx)
	if err != nil {
		return c, err
	}
	defer rc.Close()
	var stored io.Reader = rc
	if o.progress != nil {
		stored = progressReader{rc, o.progress}
	}
	counted := &countReader{r: stored}
	// The pg_restore binaries here and their versions, found while the
	// key is derived (a process each): the archive's header picks one.
	clients := make(chan []exec.Client, 1)
	go func() { clients <- exec.Clients(ctx, "pg_restore", o.BinDir) }()
	dec, err := format.Decode(counted, o.Keys)
	if errors.Is(err, format.ErrNeedIdentity) && o.IdentityErr != nil {
		err = fmt.Errorf("%w: %w", err, o.IdentityErr)
	}
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	defer dec.Close()
	c.Layers = dec.Layers
	if err := c.fits(src, o); err != nil {
		return c, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	br := bufio.NewReaderSize(dec, 64<<10)
	decoded := &countReader{r: br}
	var r io.Reader = decoded
	if c.Layers.Kind == format.KindCustom {
		// What pg_restore reads (from the spool, the stage or the
		// second pass) has each table's rows in 64 KiB chunks, not one
		// chunk and one COPY message per row; the walk below checks the
		// very bytes handed on.
		r = format.Coalesce(decoded)
	}
	switch {
	case spool == nil:
	case c.Layers.Kind == format.KindCustom:
		r = io.TeeReader(r, spool)
	default:
		spool.giveUp() // SQL text goes to psql from the backup itself
	}
	switch c.Layers.Kind {
	case format.KindCustom:
		// The pg_restore that reads what this pg_dump wrote and talks to
		// the target: chosen before anything is touched.
		head, _ := br.Peek(4 << 10)
		h, herr := format.ArchiveHeader(head)
		if herr != nil {
			return c, fmt.Errorf("%w: %w", ErrRefused, herr)
		}
		dumpMajor := exec.MajorOf(h.DumpVersion)
		if c.Tool, err = exec.Pick(<-clients, "pg_restore", o.Target, dumpMajor); err != nil {
			return c, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		var w io.Writer
		if w, err = st.begin(ctx, &c, spool); err != nil {
			return c, err
		}
		if w != nil {
			r = io.TeeReader(r, w)
			if !spool.needed() {
				spool.giveUp() // the staged restore reads nothing again
			}
		}
		c.Archive, c.Entries, err = checkArchive(ctx, c.Tool.Path, r, spool.hooks())
		if f := spool.file(); err == nil && f != nil && !st.started() {
			// Tell pg_restore where each block is (--jobs seeks to them).
			err = format.PatchOffsets(f, c.Archive)
		}
	default:
		err = checkSQL(r)
	}
	c.Stored, c.Decoded = counted.n, decoded.n
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return c, nil
}

// fits checks the payload's layers against the key and the config.
func (c *Checked) fits(src Source, o CheckOptions) error {
	got := c.Layers
	if !got.Encrypted() {
		switch {
		case got.Kind == format.KindSQL && o.Encrypted:
			return fmt.Errorf("the backup is unencrypted SQL text, but this database's backups are encrypted: the SQL fallback runs only on authenticated payloads")
		case o.Encrypted && !o.AllowUnencrypted:
			return fmt.Errorf("the backup is not encrypted, but this database's backups are: its bytes cannot be authenticated (pass --allow-unencrypted only if you trust where it came from)")
		case src.Name.Ext.Encryption != format.Unencrypted && !o.AllowUnencrypted:
			return fmt.Errorf("%s is named as encrypted, but its bytes are not: refusing it (pass --allow-unencrypted only if you trust where it came from)", src.Desc)
		}
	}
	if got.Kind == format.KindSQL && !o.AllowSQL {
		return fmt.Errorf("the backup holds SQL text, not a pg_dump archive: pass --allow-sql-fallback to restore it with psql")
	}
	want := format.Layers{Encryption: format.Unencrypted, Compression: o.Compression}
	if o.Encrypted {
		want.Encryption = o.Encryption
	}
	if want.Compression == "" {
		want.Compression = format.None
	}
	if got.Encryption != want.Encryption || got.Compression != want.Compression {
		msg := fmt.Sprintf("payload is %s but the config says %s", got, format.Layers{Encryption: want.Encryption, Compression: want.Compression, Kind: got.Kind})
		if o.Strict {
			return fmt.Errorf("--strict-sniff: %s", msg)
		}
		c.Warnings = append(c.Warnings, "pipeline mismatch; restoring what the bytes say: "+msg)
	}
	return nil
}

// checkArchive reads a custom archive to its end twice over at once:
// pg_restore --list reads its table of contents (so the pg_restore that
// will restore it can), and the walk checks every data block is there,
// whole, to the end of the stream.
func checkArchive(ctx context.Context, tool string, r io.Reader, hooks format.WalkHooks) (*format.ArchiveInfo, int, error) {
	pr, pw := io.Pipe()
	type walked struct {
		info *format.ArchiveInfo
		err  error
	}
	done := make(chan walked, 1)
	go func() {
		info, err := format.WalkArchiveWith(pr, hooks)
		if err == nil {
			err = errors.New("the archive ended before the stream did")
			if _, rerr := pr.Read(make([]byte, 1)); rerr == io.EOF {
				err = nil
			}
		}
		pr.CloseWithError(err)
		done <- walked{info, err}
	}()
	entries, lerr := exec.ListArchive(ctx, tool, io.TeeReader(r, pw))
	pw.CloseWithError(lerr)
	w := <-done
	if w.err != nil {
		return nil, entries, w.err
	}
	return w.info, entries, lerr
}

// ErrNotADump means SQL text that is not a pg_dump plain-text dump.
var ErrNotADump = errors.New("the SQL text is not a pg_dump plain-text dump")

// checkSQL reads SQL text to its end and checks it starts like a pg_dump
// plain dump ("-- PostgreSQL database dump" in its first lines).
func checkSQL(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(4 << 10)
	if !bytes.Contains(head, []byte("-- PostgreSQL database dump")) {
		return ErrNotADump
	}
	_, err := io.Copy(io.Discard, br)
	return err
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
