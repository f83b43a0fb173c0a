package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/reconcile"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/restore"
	"github.com/backupkit/backupkit/schema"
)

// schemaDrill is the drill of a database without one configured.
var schemaDrill = schema.Drill{}

type drillOptions struct{ db, from, output string }

func newDrillCmd(g *globals) *cobra.Command {
	var o drillOptions
	cmd := &cobra.Command{
		Use:   "drill [--db NAME] [--from SOURCE]",
		Short: "Restore backups into a scratch database, check them, drop it: prove they restore",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.drill(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "only this database (required with --from when there are several)")
	f.StringVar(&o.from, "from", "", "drill this backup (a SOURCE as restore takes) instead of each storage's newest")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (g *globals) drill(ctx context.Context, o drillOptions) error {
	if err := outputFlag(o.output); err != nil {
		return err
	}
	a, err := g.open(ctx, o.db)
	if err != nil {
		return err
	}
	var p reconcile.Plan
	survey := a.survey(ctx, o.db)
	for i := range survey.Databases {
		d := &survey.Databases[i]
		if d.Role != reconcile.RoleDatabase {
			continue
		}
		if d.Drill == nil { // on demand: the source server, no probes
			d.Drill = drillOf(a.cfg, lookup(a.cfg, d.Name), &schemaDrill)
		}
		if o.from != "" {
			db, err := a.pickDatabase(o.db)
			if err != nil {
				return err
			}
			src, err := restore.Resolve(ctx, a.storagesOf(db), o.from, time.Now())
			if err != nil {
				return err
			}
			if src.Storage == "" {
				return usagef("--from %s: drills run on backups in a storage (STORAGE:KEY, an ID, a time or latest)", o.from)
			}
			p.Actions = []reconcile.Action{{Type: reconcile.ActDrill, Database: db.Name, Storage: src.Storage, Key: src.Key, Reason: "on demand"}}
			break
		}
		for _, st := range d.Storages {
			bs, err := repo.List(ctx, a.stores[st], d.Name)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", d.Name, st, err)
			}
			if b, ok := repo.Newest(bs, time.Now()); ok {
				p.Actions = append(p.Actions, reconcile.Action{Type: reconcile.ActDrill, Database: d.Name, Storage: st, Key: b.Key, Reason: "on demand"})
			}
		}
	}
	if len(p.Actions) == 0 {
		return fmt.Errorf("no backup to drill")
	}
	r := g.runner(a, 1, 0, newNotifier(g, a.cfg, nil))
	r.Databases = survey.Databases
	rep := r.Apply(ctx, p)
	failed := len(rep.Failed())
	if o.output == "json" {
		if err := writeJSON(g.stdout, struct {
			envelope
			OK     bool          `json:"ok"`
			Drills []outcomeJSON `json:"drills"`
		}{v1, failed == 0, outcomesJSON(rep)}); err != nil {
			return err
		}
	} else {
		for _, r := range rep.Outcomes {
			if r.Err != nil {
				fmt.Fprintf(g.stdout, "✗ drill %s ← %s:%s FAILED: %v\n", r.Database, r.Storage, r.Key, r.Err)
				continue
			}
			fmt.Fprintf(g.stdout, "✓ drill %s ← %s:%s: restored in %s, %d tables and %d rows as recorded, every check true\n",
				r.Database, r.Storage, r.Key, (time.Duration(r.Drill.RestoreMS) * time.Millisecond).Round(time.Millisecond), r.Tables, r.Rows)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d drill(s) failed", failed)
	}
	return nil
}
