package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/reconcile"
	"github.com/backupkit/backupkit/schema"
	"github.com/backupkit/backupkit/sinks"
)

// source is a resolved --from.
type source struct {
	desc string
	open exec.Opener
	// checksummed: the opener verifies a recorded SHA-256.
	checksummed bool
}

// resolveSource turns --from (a local path, STORAGE:KEY or "latest") into
// an opener that checks the stored checksum.
func resolveSource(ctx context.Context, e *env, db *schema.Database, from string) (source, error) {
	if from == "latest" {
		var best sinks.Backup
		var bestStore string
		var errs []error
		for _, st := range db.Backup.Storage {
			bs, err := sinks.ListBackups(ctx, e.stores[st], db.Name)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", st, err))
				continue
			}
			now := time.Now()
			for _, b := range bs {
				if !b.Time.After(now) && b.Time.After(best.Time) {
					best, bestStore = b, st
				}
				break
			}
		}
		if bestStore == "" {
			if len(errs) > 0 {
				return source{}, fmt.Errorf("no backup of %s found: %w", db.Name, errors.Join(errs...))
			}
			return source{}, fmt.Errorf("no backup of %s found in %s", db.Name, strings.Join(db.Backup.Storage, ", "))
		}
		from = bestStore + ":" + best.Key
	}
	if st, key, ok := strings.Cut(from, ":"); ok {
		if s := e.stores[st]; s != nil {
			sum, err := sinks.ReadChecksum(ctx, s, key)
			if err != nil {
				return source{}, err
			}
			return source{desc: from, checksummed: sum != "", open: func(ctx context.Context) (io.ReadCloser, error) {
				return sinks.OpenVerified(ctx, s, key)
			}}, nil
		}
	}
	if _, err := os.Stat(from); err != nil {
		return source{}, usagef("--from %s: not a file, a STORAGE:KEY of a configured storage, or \"latest\"", from)
	}
	_, serr := os.Stat(from + sinks.SumExt)
	return source{desc: from, checksummed: serr == nil, open: func(ctx context.Context) (io.ReadCloser, error) {
		return openLocalFile(from)
	}}, nil
}

// openLocalFile opens a backup file by path, checking its sidecar when
// there is one.
func openLocalFile(path string) (io.ReadCloser, error) {
	dir, base := path, path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		dir, base = path[:i], path[i+1:]
	} else {
		dir = "."
	}
	return sinks.OpenVerified(context.Background(), sinks.NewLocal("file", dir), base)
}

// countingReader reports bytes read to a progress display.
type countingReader struct {
	io.ReadCloser
	f func(int)
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.f(n)
	return n, err
}

func pickDatabase(cfg *schema.Config, name string) (*schema.Database, error) {
	if name == "" {
		return &cfg.Databases[0], nil
	}
	db := cfg.Database(name)
	if db == nil {
		return nil, usagef("--db %s: no such database in %s", name, cfg.File)
	}
	return db, nil
}

func newRestoreCmd(g *globals) *cobra.Command {
	var o struct {
		db, from, to                   string
		clean, strict, allowSQL, singl bool
		jobs                           int
	}
	cmd := &cobra.Command{
		Use:   "restore --from SOURCE [--db NAME]",
		Short: "Restore a backup (a file, STORAGE:KEY, or latest) into a database",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if o.from == "" {
				return usagef("--from is required: a file, STORAGE:KEY, or latest")
			}
			if o.jobs < 1 {
				return usagef("--jobs must be at least 1")
			}
			e, err := g.env(ctx, "")
			if err != nil {
				return err
			}
			db, err := pickDatabase(e.cfg, o.db)
			if err != nil {
				return err
			}
			src, err := resolveSource(ctx, e, db, o.from)
			if err != nil {
				return err
			}
			target := reconcile.ConnOf(db)
			if o.to != "" {
				target.Database = o.to
			}
			expect := reconcile.Expected(db)
			ro := exec.RestoreOptions{Target: target, Clean: o.clean, SingleTransaction: o.singl, Jobs: o.jobs,
				AllowSQL: o.allowSQL, Expect: &expect, Strict: o.strict, Log: g.log, Checksummed: src.checksummed}
			if db.Backup.Encryption != nil {
				ro.Password = db.Backup.Encryption.Password.Reveal()
			}
			return g.restore(ctx, src, ro)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "database in the config (default: the first)")
	f.StringVar(&o.from, "from", "", "backup to restore: a file path, STORAGE:KEY, or latest")
	f.StringVar(&o.to, "to-database", "", "restore into this database (created when missing) instead of the configured one")
	f.BoolVar(&o.clean, "clean", false, "drop existing objects before restoring (pg_restore --clean --if-exists)")
	f.BoolVar(&o.strict, "strict-sniff", false, "refuse a backup whose layers differ from what the config says")
	f.BoolVar(&o.allowSQL, "allow-sql-fallback", false, "restore SQL text backups with psql")
	f.BoolVar(&o.singl, "single-transaction", false, "restore in one transaction: all or nothing")
	f.IntVar(&o.jobs, "jobs", 1, "parallel pg_restore jobs (spools the archive to a temp file)")
	return cmd
}

func (g *globals) restore(ctx context.Context, src source, o exec.RestoreOptions) error {
	t, err := exec.InspectTarget(ctx, o.Target)
	if err != nil {
		return fmt.Errorf("inspect target database %s: %w", o.Target.Database, err)
	}
	if t.Exists && t.UserTables > 0 && !o.Clean {
		return fmt.Errorf("%w: target database %s already holds %d table(s): pass --clean to replace them, or --to-database NEW",
			exec.ErrRefused, o.Target.Database, t.UserTables)
	}
	start := time.Now()
	g.log.Info("checking backup", "from", src.desc)
	layers, spool, err := exec.CheckBackup(ctx, src.open, o)
	if spool != "" {
		defer os.Remove(spool)
	}
	if err != nil {
		return err
	}
	if !layers.Encrypted && layers.Compression == exec.None && !o.Checksummed && o.Jobs <= 1 && !o.SingleTransaction {
		// Nothing in these bytes proves they are complete: make the
		// restore all-or-nothing instead.
		g.log.Info("backup has no checksum, compression or encryption to prove it complete; restoring in one transaction")
		o.SingleTransaction = true
	}
	created := false
	if !t.Exists {
		if err := exec.CreateDatabase(ctx, o.Target); err != nil {
			return fmt.Errorf("create database %s: %w", o.Target.Database, err)
		}
		created = true
	}
	g.log.Info("restoring", "from", src.desc, "layers", layers.String(), "database", o.Target.Database)
	open := src.open
	if isTerminal(g.stderr) {
		p := g.progress("restore " + o.Target.Database)
		defer p(-1)
		open = func(ctx context.Context) (io.ReadCloser, error) {
			rc, err := src.open(ctx)
			if err != nil {
				return nil, err
			}
			return countingReader{rc, p}, nil
		}
	}
	if err := exec.Restore(ctx, open, spool, layers, o); err != nil {
		switch {
		case created:
			if derr := exec.DropDatabase(context.WithoutCancel(ctx), o.Target); derr != nil {
				return fmt.Errorf("%w; database %s, which this restore created, is partially restored and could not be dropped: %v", err, o.Target.Database, derr)
			}
			return fmt.Errorf("%w; database %s, which this restore created, was dropped again", err, o.Target.Database)
		case o.SingleTransaction && o.Jobs <= 1:
			return fmt.Errorf("%w; the restore ran in one transaction, which was rolled back: %s is unchanged", err, o.Target.Database)
		default:
			return fmt.Errorf("%w; database %s may be PARTIALLY restored (use --single-transaction for all-or-nothing restores)", err, o.Target.Database)
		}
	}
	fmt.Fprintf(g.stdout, "restored %s into %s (%s) in %s\n", src.desc, o.Target.Database, layers, time.Since(start).Round(time.Millisecond))
	return nil
}

func newVerifyCmd(g *globals) *cobra.Command {
	var db, from string
	cmd := &cobra.Command{
		Use:   "verify --from SOURCE [--db NAME]",
		Short: "Read a whole backup: checksum, decrypt, decompress, pg_restore --list; change nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if from == "" {
				return usagef("--from is required: a file, STORAGE:KEY, or latest")
			}
			e, err := g.env(ctx, "")
			if err != nil {
				return err
			}
			d, err := pickDatabase(e.cfg, db)
			if err != nil {
				return err
			}
			src, err := resolveSource(ctx, e, d, from)
			if err != nil {
				return err
			}
			pw := ""
			if d.Backup.Encryption != nil {
				pw = d.Backup.Encryption.Password.Reveal()
			}
			res, err := exec.Verify(ctx, src.open, pw)
			if err != nil {
				return fmt.Errorf("verify %s: %w", src.desc, err)
			}
			fmt.Fprintf(g.stdout, "ok: %s: %s, %s decoded, %d archive entries\n", src.desc, res.Layers, humanBytes(res.Bytes), res.TOCEntries)
			return nil
		},
	}
	cmd.Flags().StringVar(&db, "db", "", "database in the config (default: the first)")
	cmd.Flags().StringVar(&from, "from", "", "backup to verify: a file path, STORAGE:KEY, or latest")
	return cmd
}

// listEntry is one backup in `list -o json`.
type listEntry struct {
	Database string    `json:"database"`
	Storage  string    `json:"storage"`
	Key      string    `json:"key"`
	Time     time.Time `json:"time"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"`
	KeptBy   []string  `json:"kept_by"`
	hasSum   bool
}

func newListCmd(g *globals) *cobra.Command {
	var db, output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List backups per database and storage",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if output != "text" && output != "json" {
				return usagef("-o must be text or json, got %q", output)
			}
			e, err := g.env(ctx, db)
			if err != nil {
				return err
			}
			entries := []listEntry{}
			var errs []error
			now := time.Now()
			for i := range e.cfg.Databases {
				d := &e.cfg.Databases[i]
				if db != "" && d.Name != db {
					continue
				}
				for _, st := range d.Backup.Storage {
					bs, err := sinks.ListBackups(ctx, e.stores[st], d.Name)
					if err != nil {
						errs = append(errs, fmt.Errorf("%s/%s: %w", d.Name, st, err))
						continue
					}
					kept := reconcile.KeptBy(*d, bs, now)
					for j, b := range bs {
						le := listEntry{Database: d.Name, Storage: st, Key: b.Key, Time: b.Time, Size: b.Size, KeptBy: kept[j], hasSum: b.HasChecksum}
						if le.KeptBy == nil {
							le.KeptBy = []string{}
						}
						if b.HasChecksum && output == "json" {
							le.SHA256, _ = sinks.ReadChecksum(ctx, e.stores[st], b.Key)
						}
						entries = append(entries, le)
					}
				}
			}
			if output == "json" {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(map[string]any{"version": 1, "backups": entries}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.stdout, "%-16s %-10s %-22s %10s %-8s %s\n", "DATABASE", "STORAGE", "TIME (UTC)", "SIZE", "SHA256", "KEPT BY")
				for _, le := range entries {
					sum := "-"
					if le.hasSum {
						sum = "yes"
					}
					kb := strings.Join(le.KeptBy, ",")
					if kb == "" {
						kb = "(prunable)"
					}
					fmt.Fprintf(g.stdout, "%-16s %-10s %-22s %10s %-8s %s\n", le.Database, le.Storage, le.Time.Format("2006-01-02 15:04:05"), humanBytes(le.Size), sum, kb)
				}
				fmt.Fprintf(g.stdout, "%d backup(s)\n", len(entries))
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&db, "db", "", "only this database")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
