package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/pg"
	"github.com/backupkit/backupkit/repo"
)

// Options say where and how a backup is restored.
type Options struct {
	Target pg.Conn // Database is the target database
	Check  CheckOptions
	// Clean drops the target's objects first (pg_restore --clean);
	// without it a target that holds objects is refused.
	Clean             bool
	SingleTransaction bool
	Jobs              int
	// TempDir is where the decoded archive is spooled (created 0700).
	TempDir string
	// NoSpool reads the backup a second time for a one-job restore
	// instead of spooling the decoded archive.
	NoSpool bool
	// NoStage checks an encrypted backup whole before restoring it into a
	// new target, instead of restoring it into a staging database while
	// checking it (see stage).
	NoStage bool
	// Force allows restoring into postgres, template0 or template1.
	Force bool
	// Tool is the pg_restore to run ("" = the one the check pass chose for
	// the archive and the target's major version).
	Tool string
	// Progress, when set, is told the stored bytes read by the restore.
	Progress func(n int)
	Log      *slog.Logger

	// Before, when set, runs once the backup is checked and before the
	// target is created or touched (restore --globals applies roles
	// there); its error stops the restore.
	Before func(ctx context.Context) error

	afterCheck func()            // tests: runs between the check pass and the restore
	onStaging  func(name string) // tests: a staging database was made
}

// Result is what a restore did.
type Result struct {
	Checked
	Created  bool
	Duration time.Duration
}

// ErrUsage marks options that cannot go together.
var ErrUsage = errors.New("invalid restore options")

// maintenance databases are refused as targets without Force.
var maintenance = map[string]bool{"postgres": true, "template0": true, "template1": true}

// Run restores src into o.Target: it inspects the target, refuses what
// would lose data, checks the whole backup, creates a missing target,
// restores the bytes it checked, and drops a target it created when the
// restore fails. An error says what state the target is in.
func Run(ctx context.Context, src Source, o Options) (Result, error) {
	start := time.Now()
	var res Result
	if o.SingleTransaction && o.Jobs > 1 {
		return res, fmt.Errorf("%w: --single-transaction cannot be combined with --jobs > 1 (pg_restore runs the jobs in separate sessions)", ErrUsage)
	}
	if maintenance[o.Target.Database] && !o.Force {
		return res, fmt.Errorf("%w: %s is a maintenance database; restoring into it needs --force", ErrRefused, o.Target.Database)
	}
	t, err := pg.InspectTarget(ctx, o.Target)
	if err != nil {
		return res, fmt.Errorf("inspect target database %s: %w", o.Target.Database, err)
	}
	if t.Exists && t.Objects > 0 && !o.Clean {
		return res, fmt.Errorf("%w: target database %s already holds %d object(s) (tables, views, functions, types…): pass --clean to replace them, or --to-database NEW",
			ErrRefused, o.Target.Database, t.Objects)
	}
	var st *stage
	if o.stages(t.Exists) {
		st = &stage{o: o}
		defer st.drop(ctx)
		if src.Name.Ext.Encryption != format.Unencrypted && !src.Name.Ext.SQL {
			// Made while the rest is looked up and the key derived.
			st.prepare(ctx)
		}
	}
	o.Check.Target = t.ServerMajor
	p, err := src.pin(ctx)
	if err != nil {
		return res, fmt.Errorf("open %s: %w", src.Desc, err)
	}
	defer p.Close()
	if st != nil && o.Jobs > 1 {
		// The manifest's table sizes (bytes, or rows in an older one)
		// share the tables out among the jobs: only a hint, so an
		// unreadable manifest just leaves them unsized.
		if m, err := repo.ReadManifest(ctx, src.sink, src.Key); err == nil && m != nil {
			st.sizes = tableSizes(m)
		}
	}
	// The decoded archive is spooled for the restore to read: required
	// for --jobs, and for one job whenever the disk has room, so the
	// restore reads the very bytes the check authenticated, decoded once.
	var spool *spoolWriter
	if o.Jobs > 1 || !o.NoSpool && !src.Name.Ext.SQL {
		f, err := newSpool(o.TempDir)
		switch {
		case err == nil:
			defer os.Remove(f.Name())
			defer f.Close()
			spool = &spoolWriter{f: f, required: o.Jobs > 1}
		case o.Jobs > 1:
			return res, err
		default:
			o.log().Info("reading the backup twice: no spool", "err", err)
		}
	}
	o.log().Info("checking backup", "from", src.Desc)
	if spool != nil || st != nil {
		o.Check.progress = o.Progress // the restore reads the spool, or stages
	}
	res.Checked, err = check(ctx, src, p, o.Check, spool, st)
	if st.started() {
		return o.staged(ctx, st, res, err, spool.file(), start)
	}
	if derr := st.drop(ctx); derr != nil { // prepared, but not staged after all
		o.log().Warn("could not drop the unused staging database", "err", derr)
	}
	if err != nil {
		return res, err
	}
	for _, w := range res.Warnings {
		o.log().Warn(w)
	}
	if o.afterCheck != nil {
		o.afterCheck()
	}
	if res.Layers.Kind == format.KindSQL && o.Jobs > 1 {
		return res, fmt.Errorf("%w: --jobs needs a pg_dump archive; this backup is SQL text", ErrRefused)
	}
	if spool != nil && spool.gaveUp && res.Layers.Kind == format.KindCustom {
		o.log().Info("not enough free space to spool the archive; the restore reads the backup again", "dir", filepath.Dir(spool.f.Name()))
	}
	if !res.Layers.Encrypted() && res.Layers.Compression == format.None && p.SHA256 == "" && o.Jobs <= 1 && !o.SingleTransaction {
		// Nothing in these bytes proves they are complete: make the
		// restore all-or-nothing instead.
		o.log().Info("backup has no checksum, compression or encryption to prove it complete; restoring in one transaction")
		o.SingleTransaction = true
	}
	if o.Before != nil {
		if err := o.Before(ctx); err != nil {
			return res, err
		}
	}
	if !t.Exists {
		if err := pg.CreateDatabase(ctx, o.Target); err != nil {
			return res, fmt.Errorf("create database %s: %w", o.Target.Database, err)
		}
		res.Created = true
		o.setOwner(ctx, res.Archive, nil)
	}
	o.log().Info("restoring", "from", src.Desc, "layers", res.Layers.String(), "database", o.Target.Database)
	if err := o.restore(ctx, p, res.Checked, spool.file()); err != nil {
		return res, o.failed(ctx, err, res.Created)
	}
	res.Duration = time.Since(start)
	return res, nil
}

// staged ends a restore that ran into a staging database during the
// check pass: it is renamed to the target only when the check and the
// restore both succeeded, and dropped otherwise.
func (o Options) staged(ctx context.Context, st *stage, res Result, checkErr error, spool *os.File, start time.Time) (Result, error) {
	err, failed := st.finish(checkErr)
	if err == nil {
		for _, w := range res.Warnings {
			o.log().Warn(w)
		}
		if err = st.complete(ctx, res.Checked, spool); err == nil {
			res.Created = true
			o.setOwner(ctx, res.Archive, st.lock)
			res.Duration = time.Since(start)
			return res, nil
		}
		failed = true
	}
	if !failed {
		st.drop(ctx)
		return res, err // a refusal: the target was never created
	}
	if errors.Is(err, errTargetAppeared) {
		st.drop(ctx)
		return res, fmt.Errorf("%w (the staging database was dropped)", err)
	}
	if derr := st.drop(ctx); derr != nil {
		return res, fmt.Errorf("%w; database %s was not created; the staging database %s could not be dropped: %v", err, o.Target.Database, st.conn.Database, derr)
	}
	return res, fmt.Errorf("%w; database %s was not created (the restore ran into a staging database, which was dropped)", err, o.Target.Database)
}

// setOwner gives a database the restore created to the backup's owner,
// as the source was (when that role exists here: restore --globals):
// over the lock's session when there is one (a staged restore's), else a
// connection of its own.
func (o Options) setOwner(ctx context.Context, a *format.ArchiveInfo, lock *pg.Lock) {
	if a == nil || a.DatabaseOwner() == "" {
		return
	}
	owner := a.DatabaseOwner()
	var ok bool
	var err error
	if lock != nil {
		ok, err = lock.SetOwner(ctx, o.Target.Database, owner)
	} else {
		ok, err = pg.SetOwner(ctx, o.Target, owner)
	}
	if err != nil {
		o.log().Warn("the new database keeps its creator as owner: giving it to the backup's owner failed", "owner", owner, "err", err)
	} else if !ok {
		o.log().Info("the backup's database owner does not exist here; the new database keeps its creator as owner", "owner", owner)
	}
}

// restore is the second pass, over the pinned bytes (or the spool).
func (o Options) restore(ctx context.Context, p pinned, c Checked, spool *os.File) error {
	args := exec.RestoreArgs{Clean: o.Clean, SingleTransaction: o.SingleTransaction, Jobs: o.Jobs, Tool: o.Tool}
	if args.Tool == "" {
		args.Tool = c.Tool.Path
	}
	if spool != nil {
		return exec.PgRestore(ctx, o.Target, args, spool.Name(), nil)
	}
	rc, err := p.Open(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	var r io.Reader = rc
	if o.Progress != nil {
		r = progressReader{rc, o.Progress}
	}
	dec, err := format.Decode(r, o.Check.Keys)
	if err != nil {
		return err
	}
	defer dec.Close()
	if dec.Layers != c.Layers {
		return fmt.Errorf("%w: the backup changed between the check and the restore", format.ErrCorrupted)
	}
	if c.Layers.Kind == format.KindSQL {
		return exec.Psql(ctx, o.Target, o.SingleTransaction, dec)
	}
	return exec.PgRestore(ctx, o.Target, args, "", format.Coalesce(dec))
}

type pinned interface {
	Open(ctx context.Context) (io.ReadCloser, error)
}

// failed says what state the target is in after a failed restore.
func (o Options) failed(ctx context.Context, err error, created bool) error {
	switch {
	case created:
		if derr := pg.DropDatabase(context.WithoutCancel(ctx), o.Target); derr != nil {
			return fmt.Errorf("%w; database %s, which this restore created, is partially restored and could not be dropped: %v", err, o.Target.Database, derr)
		}
		return fmt.Errorf("%w; database %s, which this restore created, was dropped again", err, o.Target.Database)
	case o.SingleTransaction:
		return fmt.Errorf("%w; the restore ran in one transaction, which was rolled back: %s is unchanged", err, o.Target.Database)
	default:
		return fmt.Errorf("%w; database %s may be PARTIALLY restored (use --single-transaction for all-or-nothing restores)", err, o.Target.Database)
	}
}

// Verify reads a whole backup as a restore's check pass does, and
// compares the archive with the backup's manifest (its tables and their
// rows); it changes nothing.
func Verify(ctx context.Context, src Source, o CheckOptions) (Checked, error) {
	p, err := src.pin(ctx)
	if err != nil {
		return Checked{}, fmt.Errorf("open %s: %w", src.Desc, err)
	}
	defer p.Close()
	c, err := check(ctx, src, p, o, nil, nil)
	if err != nil || c.Archive == nil {
		return c, err
	}
	m, err := repo.ReadManifest(ctx, src.sink, src.Key)
	if err != nil {
		c.Warnings = append(c.Warnings, "manifest unreadable: "+err.Error())
		return c, nil
	}
	if m != nil {
		c.Manifest = m
		return c, matchManifest(c.Archive, m)
	}
	return c, nil
}

// ErrManifest means an archive differs from the manifest written with it.
var ErrManifest = errors.New("the archive differs from its manifest")

func matchManifest(a *format.ArchiveInfo, m *format.Manifest) error {
	got := a.Tables()
	for name, want := range m.Tables {
		rows, ok := got[name]
		switch {
		case !ok:
			return fmt.Errorf("%w: table %s is missing", ErrManifest, name)
		case want >= 0 && rows >= 0 && rows != want:
			return fmt.Errorf("%w: table %s has %d rows, the manifest records %d", ErrManifest, name, rows, want)
		}
	}
	if len(got) != len(m.Tables) {
		return fmt.Errorf("%w: %d tables, the manifest records %d", ErrManifest, len(got), len(m.Tables))
	}
	return nil
}

func (o Options) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log
}

type progressReader struct {
	r io.Reader
	f func(int)
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.f(n)
	return n, err
}

// Decrypt writes the decoded payload of a backup (decrypted, every chunk
// authenticated, decompressed) to w. A backup that fails to decode stops
// with an error; what was written before is then not a whole archive.
func Decrypt(ctx context.Context, src Source, o CheckOptions, w io.Writer) (int64, error) {
	p, err := src.pin(ctx)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", src.Desc, err)
	}
	defer p.Close()
	rc, err := p.Open(ctx)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	dec, err := format.Decode(rc, o.Keys)
	if errors.Is(err, format.ErrNeedIdentity) && o.IdentityErr != nil {
		err = fmt.Errorf("%w: %w", err, o.IdentityErr)
	}
	if err != nil {
		return 0, err
	}
	defer dec.Close()
	return io.Copy(w, dec)
}

// tableSizes is what shares tables out among --jobs: each table's bytes
// in the archive, or its rows where the manifest predates sizes.
func tableSizes(m *format.Manifest) map[string]int64 {
	if len(m.TableBytes) > 0 {
		return m.TableBytes
	}
	return m.Tables
}
