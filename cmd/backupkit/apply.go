package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/internal/fault"
	"github.com/backupkit/backupkit/reconcile"
)

type applyOptions struct {
	db         string
	force      bool
	dryRun     bool
	parallel   int
	runTimeout time.Duration
	output     string
}

func newApplyCmd(g *globals) *cobra.Command {
	return newRunCmd(g, "apply", "Plan, show the plan, then run it: backups that are due, prunes, cleanups", false)
}

// newBackupCmd is v0's backup: a forced apply (back up now), retention
// included.
func newBackupCmd(g *globals) *cobra.Command {
	return newRunCmd(g, "backup", "Back up now (all databases, or --db), then apply retention", true)
}

func newRunCmd(g *globals, use, short string, forced bool) *cobra.Command {
	o := applyOptions{force: forced}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.dryRun {
				return g.plan(cmd, planOptions{db: o.db, output: o.output, runTimeout: o.runTimeout})
			}
			return g.apply(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "only this database")
	if !forced {
		f.BoolVar(&o.force, "force", false, "back up even when no backup is due")
		f.BoolVar(&o.dryRun, "dry-run", false, "show the plan and stop (the same as plan)")
	}
	f.IntVar(&o.parallel, "parallel", 2, "databases to work on at once")
	f.DurationVar(&o.runTimeout, "run-timeout", reconcile.DefaultCleanupAge, "bound on each database's run; leftovers older than this are cleaned up (0 = no bound, cleanup after 6h)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (g *globals) apply(ctx context.Context, o applyOptions) error {
	if err := outputFlag(o.output); err != nil {
		return err
	}
	a, err := g.open(ctx, o.db)
	if err != nil {
		return err
	}
	n := newNotifier(g, a.cfg, nil)
	r := g.runner(a, o.parallel, o.runTimeout, n)
	if o.force {
		// Every selected database is backed up: derive the keys before
		// the survey opens storage connections.
		r.DeriveKeys(ctx, a.selection(o.db))
	}
	p, _ := r.Plan(ctx, time.Now(), reconcile.PlanOptions{Database: a.selection(o.db), Force: o.force, RunTimeout: o.runTimeout})
	if o.output == "text" {
		renderPlan(g.stdout, p)
		if !p.Empty() {
			fmt.Fprintln(g.stdout)
		}
	}
	rep := r.Apply(ctx, p)
	if o.output == "json" {
		err = writeJSON(g.stdout, struct {
			envelope
			Plan     planDoc       `json:"plan"`
			Outcomes []outcomeJSON `json:"outcomes"`
		}{v1, planJSON(p), outcomesJSON(rep)})
	} else {
		renderReport(g.stdout, rep)
	}
	if err != nil {
		return err
	}
	if n := len(rep.Failed()); n > 0 || len(p.Unobserved) > 0 {
		return fmt.Errorf("%d action(s) failed, %d listing(s) failed", n, len(p.Unobserved))
	}
	return nil
}

// outcomeJSON is one action's outcome in -o json: status is "ok",
// "failed" or "skipped"; skip is a stable code, reason its text.
type outcomeJSON struct {
	actionJSON
	Status     string `json:"status"`
	Written    string `json:"written,omitempty"`
	Bytes      int64  `json:"bytes,omitempty"`
	SHA256     string `json:"sha256,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Tables     int    `json:"tables,omitempty"`
	Rows       int64  `json:"rows,omitempty"`
	Error      string `json:"error,omitempty"`
	ErrorKind  string `json:"error_kind,omitempty"` // transient, permanent or unknown
	Skip       string `json:"skip,omitempty"`
	SkipReason string `json:"skip_reason,omitempty"`
}

func outcomesJSON(rep reconcile.Report) []outcomeJSON {
	out := []outcomeJSON{}
	for _, o := range rep.Outcomes {
		j := outcomeJSON{actionJSON: actionOf(o.Action), Status: "ok", Written: o.Written, Bytes: o.Bytes, SHA256: o.SHA256,
			DurationMS: o.Duration.Milliseconds(), Tables: o.Tables, Rows: o.Rows}
		switch {
		case o.Err != nil:
			j.Status, j.Error, j.ErrorKind = "failed", o.Err.Error(), fault.KindOf(o.Err).String()
		case o.Skip != "":
			j.Status, j.Skip, j.SkipReason = "skipped", string(o.Skip), o.Skip.Text()
		}
		out = append(out, j)
	}
	return out
}

func renderReport(w io.Writer, rep reconcile.Report) {
	ok, failed, skipped := 0, 0, 0
	for _, o := range rep.Outcomes {
		switch {
		case o.Skip != "":
			skipped++
			fmt.Fprintf(w, "  %s %s → %s skipped: %s\n", o.Type, o.Database, o.Storage, o.Skip.Text())
		case o.Err != nil:
			failed++
			fmt.Fprintf(w, "✗ %s %s → %s: FAILED: %v\n", o.Type, o.Database, o.Storage, o.Err)
		case o.Type == reconcile.ActDrill:
			ok++
			fmt.Fprintf(w, "✓ drill %s ← %s:%s (restored in %s, %d tables, %d rows as recorded)\n", o.Database, o.Storage, o.Key,
				(time.Duration(o.Drill.RestoreMS) * time.Millisecond).Round(time.Millisecond), o.Tables, o.Rows)
		case o.Type == reconcile.ActBackup:
			ok++
			fmt.Fprintf(w, "✓ backup %s → %s:%s (%s, %d tables, %d rows, %s)\n", o.Database, o.Storage, o.Written, humanBytes(o.Bytes),
				o.Tables, o.Rows, o.Duration.Round(time.Millisecond))
		default:
			ok++
			fmt.Fprintf(w, "✓ %s %s:%s\n", o.Type, o.Storage, o.Key)
		}
	}
	if len(rep.Outcomes) == 0 {
		return // the plan above said why
	}
	fmt.Fprintf(w, "Applied: %d succeeded, %d failed, %d skipped.\n", ok, failed, skipped)
}
