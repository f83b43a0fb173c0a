package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/reconcile"
	"github.com/backupkit/backupkit/schema"
	"github.com/backupkit/backupkit/sinks"
)

// openSinks builds every configured storage.
func openSinks(ctx context.Context, cfg *schema.Config) (map[string]sinks.Sink, error) {
	out := map[string]sinks.Sink{}
	for _, s := range cfg.Storage {
		switch s.Type {
		case "local":
			out[s.Name] = sinks.NewLocal(s.Name, s.Local.Path)
		case "s3":
			sk, err := sinks.NewS3(ctx, s.Name, s3Options(s.S3))
			if err != nil {
				return nil, fmt.Errorf("storage %s: %w", s.Name, err)
			}
			out[s.Name] = sk
		}
	}
	return out, nil
}

func s3Options(c *schema.S3) sinks.S3Options {
	return sinks.S3Options{
		Bucket: c.Bucket, Region: c.Region, Prefix: c.Prefix, Endpoint: c.Endpoint,
		ForcePathStyle: c.ForcePathStyle, StorageClass: c.StorageClass, Checksum: c.Checksum,
		AccessKey: c.AccessKey.Reveal(), SecretKey: c.SecretKey.Reveal(),
		PartSize: int64(c.PartSizeMiB) << 20, Concurrency: c.Concurrency,
	}
}

// env is what the reconcile commands share: config, storages, runner.
type env struct {
	cfg    *schema.Config
	stores map[string]sinks.Sink
}

func (g *globals) env(ctx context.Context, db string) (*env, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	if db != "" && cfg.Database(db) == nil {
		return nil, usagef("--db %s: no such database in %s", db, cfg.File)
	}
	stores, err := openSinks(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &env{cfg: cfg, stores: stores}, nil
}

func (g *globals) runner(e *env, parallel int, timeout time.Duration) *reconcile.Runner {
	r := &reconcile.Runner{Config: e.cfg, Sinks: e.stores, Log: g.log, Parallel: parallel, RunTimeout: timeout, Lock: true}
	r.Observer = newNotifier(g, e.cfg, nil)
	if isTerminal(g.stderr) {
		r.Progress = g.progress
	}
	return r
}

// progress shows bytes and rate of a stream on the terminal.
func (g *globals) progress(db string) func(int) {
	var n atomic.Int64
	start := time.Now()
	var once sync.Once
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				b := n.Load()
				rate := float64(b) / time.Since(start).Seconds()
				fmt.Fprintf(g.stderr, "\r\033[K%s: %s, %s/s", db, humanBytes(b), humanBytes(int64(rate)))
			case <-done:
				fmt.Fprint(g.stderr, "\r\033[K")
				return
			}
		}
	}()
	return func(k int) {
		if k < 0 {
			once.Do(func() { close(done) })
			return
		}
		n.Add(int64(k))
	}
}

func humanBytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

func newPlanCmd(g *globals) *cobra.Command {
	var db, at, output string
	var detailed bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Observe storage and show what apply would do; change nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			now := time.Now()
			if at != "" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return usagef("--at: want an RFC 3339 time such as 2026-11-25T02:00:00Z, got %q", at)
				}
				now = t
			}
			if output != "text" && output != "json" {
				return usagef("-o must be text or json, got %q", output)
			}
			e, err := g.env(cmd.Context(), db)
			if err != nil {
				return err
			}
			obs := reconcile.Observe(cmd.Context(), e.cfg, e.stores, db)
			p := reconcile.MakePlan(e.cfg, obs, now, reconcile.PlanOptions{Database: db, RunTimeout: timeout})
			if output == "json" {
				if err := writePlanJSON(g.stdout, p); err != nil {
					return err
				}
			} else {
				renderPlan(g.stdout, p)
			}
			if len(p.Unobserved) > 0 {
				return fmt.Errorf("%d storage listing(s) failed: %s", len(p.Unobserved), strings.Join(p.Unobserved, ", "))
			}
			if detailed && !p.Empty() {
				return exitCodeError{2}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&db, "db", "", "only this database")
	f.StringVar(&at, "at", "", "plan as of this time (RFC 3339) instead of now")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	f.BoolVar(&detailed, "detailed-exitcode", false, "exit 0 when nothing is to do, 2 when changes are pending, 1 on error")
	f.DurationVar(&timeout, "run-timeout", 0, "leftovers older than this are cleaned up (default 6h)")
	return cmd
}

// writePlanJSON streams the plan as JSON, one action per line: readable,
// and fast for plans with 100,000 prunes.
func writePlanJSON(w io.Writer, p reconcile.Plan) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	head := p
	head.Actions = nil
	b, err := json.Marshal(head)
	if err != nil {
		return err
	}
	// {"version":1,"now":"…","actions":null,…} → open the actions array.
	hs := strings.Replace(string(b), `"actions":null`, `"actions":[`, 1)
	i := strings.Index(hs, `"actions":[`) + len(`"actions":[`)
	bw.WriteString(hs[:i])
	for k, a := range p.Actions {
		if k > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n  ")
		ab, err := json.Marshal(a)
		if err != nil {
			return err
		}
		bw.Write(ab)
	}
	if len(p.Actions) > 0 {
		bw.WriteByte('\n')
	}
	bw.WriteString("]" + hs[i:] + "\n")
	return bw.Flush()
}

func renderPlan(w io.Writer, p reconcile.Plan) {
	for _, a := range p.Actions {
		switch a.Type {
		case reconcile.ActBackup:
			fmt.Fprintf(w, "+ backup %s → %s (%s)\n", a.Database, a.Storage, a.Reason)
		case reconcile.ActPrune:
			fmt.Fprintf(w, "- prune %s:%s (%s)\n", a.Storage, a.Key, a.Reason)
		case reconcile.ActCleanup:
			fmt.Fprintf(w, "~ cleanup %s:%s (%s)\n", a.Storage, a.Key, a.Reason)
		}
	}
	for _, wn := range p.Warnings {
		fmt.Fprintf(w, "! %s\n", wn)
	}
	if p.Empty() {
		fmt.Fprintln(w, "No changes: every backup is up to date and retention is satisfied.")
		return
	}
	fmt.Fprintf(w, "Plan: %s.\n", p.Summary())
}

func newApplyCmd(g *globals) *cobra.Command {
	return newRunCmd(g, "apply", "Plan, then run the plan: backups that are due, prunes, cleanups", false)
}

// newBackupCmd is v0's backup: a forced apply (back up now), retention
// included.
func newBackupCmd(g *globals) *cobra.Command {
	return newRunCmd(g, "backup", "Back up now (all databases, or --db), then apply retention", true)
}

func newRunCmd(g *globals, use, short string, forced bool) *cobra.Command {
	var db string
	var force bool
	var parallel int
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.apply(cmd.Context(), db, forced || force, parallel, timeout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&db, "db", "", "only this database")
	if !forced {
		f.BoolVar(&force, "force", false, "back up even when no backup is due")
	}
	f.IntVar(&parallel, "parallel", 2, "databases to work on at once")
	f.DurationVar(&timeout, "run-timeout", 0, "bound on each database's run (0 = none)")
	return cmd
}

func (g *globals) apply(ctx context.Context, db string, force bool, parallel int, timeout time.Duration) error {
	e, err := g.env(ctx, db)
	if err != nil {
		return err
	}
	obs := reconcile.Observe(ctx, e.cfg, e.stores, db)
	p := reconcile.MakePlan(e.cfg, obs, time.Now(), reconcile.PlanOptions{Database: db, Force: force, RunTimeout: timeout})
	for _, w := range p.Warnings {
		g.log.Warn(w)
	}
	r := g.runner(e, parallel, timeout)
	rep := r.Apply(ctx, p)
	renderReport(g.stdout, rep)
	if n := len(rep.Failed()); n > 0 || len(p.Unobserved) > 0 {
		return fmt.Errorf("%d action(s) failed, %d storage listing(s) failed", n, len(p.Unobserved))
	}
	return nil
}

func renderReport(w io.Writer, rep reconcile.Report) {
	ok, failed, skipped := 0, 0, 0
	for _, o := range rep.Outcomes {
		switch {
		case o.Skipped != "":
			skipped++
			fmt.Fprintf(w, "  %s %s %s: %s\n", o.Type, o.Database, o.Storage, o.Skipped)
		case o.Err != nil:
			failed++
			fmt.Fprintf(w, "✗ %s %s → %s: FAILED: %v\n", o.Type, o.Database, o.Storage, o.Err)
		case o.Type == reconcile.ActBackup:
			ok++
			fmt.Fprintf(w, "✓ backup %s → %s:%s (%s, %s)\n", o.Database, o.Storage, o.Written, humanBytes(o.Bytes), o.Duration.Round(time.Millisecond))
		default:
			ok++
			fmt.Fprintf(w, "✓ %s %s:%s\n", o.Type, o.Storage, o.Key)
		}
	}
	if len(rep.Outcomes) == 0 {
		fmt.Fprintln(w, "Nothing to do.")
		return
	}
	fmt.Fprintf(w, "Applied: %d succeeded, %d failed, %d skipped.\n", ok, failed, skipped)
}
