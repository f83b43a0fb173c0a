package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/restore"
	"github.com/backupkit/backupkit/schema"
)

type restoreOptions struct {
	db, from, to, tempDir, output string
	clean, strict, allowSQL       bool
	single, allowUnencrypted      bool
	force, globals, noSpool       bool
	noStage                       bool
	jobs                          int
}

func newRestoreCmd(g *globals) *cobra.Command {
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore --from SOURCE [--db NAME]",
		Short: "Restore a backup (a file, STORAGE:KEY, or latest) into a database",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.restore(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "database in the config (required when there are several)")
	f.StringVar(&o.from, "from", "", "backup to restore: a file path, STORAGE:KEY, or latest")
	f.StringVar(&o.to, "to-database", "", "restore into this database (created when missing) instead of the configured one")
	f.BoolVar(&o.clean, "clean", false, "drop existing objects before restoring (pg_restore --clean --if-exists)")
	f.BoolVar(&o.strict, "strict-sniff", false, "refuse a backup whose layers differ from what the config says")
	f.BoolVar(&o.allowSQL, "allow-sql-fallback", false, "restore SQL text backups with psql (in restricted mode: no backslash commands)")
	f.BoolVar(&o.single, "single-transaction", false, "restore in one transaction: all or nothing")
	f.BoolVar(&o.allowUnencrypted, "allow-unencrypted", false, "accept an unencrypted backup although the config encrypts (its bytes cannot be authenticated)")
	f.BoolVar(&o.force, "force", false, "allow --clean over the configured database without asking, and restoring into postgres, template0 or template1")
	f.BoolVar(&o.globals, "globals", false, "first create the roles, memberships and tablespaces stored with the backup's cycle (whole-server entries with globals: true); existing roles are left alone, or with --clean altered to match (never dropped)")
	f.IntVar(&o.jobs, "jobs", 1, "parallel pg_restore jobs (spools the decoded archive to --temp-dir)")
	f.StringVar(&o.tempDir, "temp-dir", "", "folder for the spool of the decoded archive (created 0700; default the system temp folder)")
	f.BoolVar(&o.noSpool, "no-spool", false, "one job: read the backup twice (check, then restore) instead of spooling the decoded archive to --temp-dir")
	f.BoolVar(&o.noStage, "no-stage", false, "encrypted backup into a new database: check it whole first, then restore, instead of restoring into a staging database while checking and renaming it when the check passes")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (g *globals) restore(ctx context.Context, o restoreOptions) error {
	if o.jobs < 1 {
		return usagef("--jobs must be at least 1")
	}
	if o.single && o.jobs > 1 {
		return usagef("--single-transaction cannot be combined with --jobs %d: pg_restore runs parallel jobs in separate sessions", o.jobs)
	}
	if err := outputFlag(o.output); err != nil {
		return err
	}
	db, src, err := g.source(ctx, o.db, o.from, func(db *schema.Database) error {
		if o.to == "" && o.clean && !o.force {
			return g.confirmOverwrite(db.Name, db.Connection.Database)
		}
		return nil
	})
	if err != nil {
		return err
	}
	ro := restore.Options{Target: connOf(db.Connection), Check: checkOptions(g.cfg, db), Clean: o.clean, SingleTransaction: o.single,
		Jobs: o.jobs, TempDir: o.tempDir, NoSpool: o.noSpool, NoStage: o.noStage, Force: o.force, Log: g.log}
	ro.Check.Strict, ro.Check.AllowSQL, ro.Check.AllowUnencrypted = o.strict, o.allowSQL, o.allowUnencrypted
	if o.to != "" {
		ro.Target.Database = o.to
	}
	var gres *restore.GlobalsResult
	if o.globals {
		if ro.Before, err = g.globalsStep(ctx, db, src, ro.Check, o.clean, &gres); err != nil {
			if errors.Is(err, restore.ErrBadSource) {
				return usageError{err}
			}
			return err
		}
	}
	if p := g.progress("restore "+ro.Target.Database, 0); p != nil {
		defer p(-1)
		ro.Progress = p
	}
	res, err := restore.Run(ctx, src, ro)
	if gres != nil && o.output == "text" {
		renderGlobals(g, gres)
	}
	if err != nil {
		if errors.Is(err, restore.ErrUsage) {
			return usageError{err}
		}
		return err
	}
	if o.output == "json" {
		return writeJSON(g.stdout, struct {
			envelope
			From       string                 `json:"from"`
			Database   string                 `json:"database"`
			Layers     string                 `json:"layers"`
			Created    bool                   `json:"created"`
			Entries    int                    `json:"archive_entries"`
			DurationMS int64                  `json:"duration_ms"`
			Globals    *restore.GlobalsResult `json:"globals,omitempty"`
		}{v1, src.Desc, ro.Target.Database, res.Layers.String(), res.Created, res.Entries, res.Duration.Milliseconds(), gres})
	}
	fmt.Fprintf(g.stdout, "restored %s into %s (%s) in %s\n", src.Desc, ro.Target.Database, res.Layers, res.Duration.Round(time.Millisecond))
	return nil
}

// confirmOverwrite asks before --clean replaces the configured (usually
// production) database: on a terminal the user types its name; without
// one, --force is needed.
func (g *globals) confirmOverwrite(name, database string) error {
	if !isTerminal(g.stdin) {
		return usagef("--clean without --to-database replaces %s, the configured database of %s: pass --force to confirm (there is no terminal to ask on), or restore elsewhere with --to-database NEW", database, name)
	}
	fmt.Fprintf(g.stderr, "This replaces the contents of database %s (the configured database of %s).\nType its name to go on: ", database, name)
	line, _ := bufio.NewReader(g.stdin).ReadString('\n')
	if strings.TrimSpace(line) != database {
		return usagef("not confirmed: %s was left as it is", database)
	}
	return nil
}
