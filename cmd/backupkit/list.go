package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/reconcile"
	"github.com/backupkit/backupkit/repo"
)

type listOptions struct{ db, output string }

// listEntry is one backup in `list -o json`.
type listEntry struct {
	ID       string    `json:"id"`
	Database string    `json:"database"`
	Storage  string    `json:"storage"`
	Key      string    `json:"key"`
	Time     time.Time `json:"time"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"`
	KeptBy   []string  `json:"kept_by"`
	// LastDrill is the newest restore drill of the backup, if any.
	LastDrill *format.DrillResult `json:"last_drill,omitempty"`
	Manifest  *format.Manifest    `json:"manifest,omitempty"`
	hasSum    bool
	drill     *format.DrillMark
}

func newListCmd(g *globals) *cobra.Command {
	var o listOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List backups per database and storage",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.list(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.db, "db", "", "only this database")
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}

// keysText says which keys can read a backup: "password", "-", or the
// age recipients' fingerprints, * marking one whose identity is here.
func keysText(le listEntry, mine map[string]bool) string {
	n, _ := format.ParseKey(le.Key)
	switch n.Ext.Encryption {
	case format.Enc:
		return "password"
	case format.Unencrypted:
		return "-"
	}
	if le.Manifest == nil || len(le.Manifest.Recipients) == 0 {
		return "age"
	}
	var out []string
	for _, f := range le.Manifest.Recipients {
		short := f[:min(len(f), 8)]
		if mine[f] {
			short += "*"
		}
		out = append(out, short)
	}
	return "age " + strings.Join(out, ",")
}

// drillText says how the last drill of a backup went: "ok 3h ago,
// restored in 12s", "FAILED 2d ago", "-".
func drillText(le listEntry, now time.Time) string {
	if le.drill == nil {
		return "-"
	}
	s := "ok "
	if !le.drill.OK {
		s = "FAILED "
	}
	s += age(now.Sub(le.drill.Time))
	if le.LastDrill != nil && le.drill.OK {
		s += fmt.Sprintf(", restored in %s", (time.Duration(le.LastDrill.RestoreMS) * time.Millisecond).Round(time.Second))
	}
	return s
}

// age says how long ago, roughly: "42s ago", "3h ago", "5d ago".
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func (g *globals) list(ctx context.Context, o listOptions) error {
	if err := outputFlag(o.output); err != nil {
		return err
	}
	a, err := g.open(ctx, o.db)
	if err != nil {
		return err
	}
	entries := []listEntry{}
	var errs []error
	now := time.Now()
	survey := a.survey(ctx, o.db)
	errs = append(errs, surveyErrors(survey)...)
	for i := range survey.Databases {
		d := &survey.Databases[i]
		for _, st := range d.Storages {
			if ob := survey.Obs[reconcile.Slot{Database: d.Name, Storage: st}]; ob != nil && ob.Err != nil && d.Entry != "" {
				errs = append(errs, fmt.Errorf("%s/%s: %w", d.Show(), st, ob.Err))
				continue
			}
			bs, err := repo.List(ctx, a.stores[st], d.Name)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s/%s: %w", d.Name, st, err))
				continue
			}
			kept := reconcile.KeptBy(d, bs, now)
			for j, b := range bs {
				le := listEntry{ID: format.ID(b.Key), Database: d.Show(), Storage: st, Key: b.Key, Time: b.Time, Size: b.Size, KeptBy: kept[j], hasSum: b.HasChecksum}
				if le.KeptBy == nil {
					le.KeptBy = []string{}
				}
				if b.HasChecksum && o.output == "json" {
					le.SHA256, _ = repo.ReadChecksum(ctx, a.stores[st], b.Key)
				}
				if b.HasManifest && (o.output == "json" || b.Ext.Encryption == format.Age) {
					le.Manifest, _ = repo.ReadManifest(ctx, a.stores[st], b.Key)
				}
				if m, ok := b.LastDrill(); ok {
					le.drill = &m
					le.LastDrill, _ = repo.ReadDrill(ctx, a.stores[st], m)
				}
				entries = append(entries, le)
			}
		}
	}
	if o.output == "json" {
		if err := writeJSON(g.stdout, struct {
			envelope
			Backups []listEntry `json:"backups"`
		}{v1, entries}); err != nil {
			return err
		}
		return errors.Join(errs...)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	mine := map[string]bool{} // fingerprints of the identities configured here
	for _, d := range a.cfg.Databases {
		for _, f := range checkOptions(a.cfg, &d).Keys.Identities.Fingerprints {
			mine[f] = true
		}
	}
	fmt.Fprintln(tw, "ID\tDATABASE\tSTORAGE\tTIME (UTC)\tLOCAL TIME\tAGE\tSIZE\tSHA256\tKEPT BY\tLAST DRILL\tKEYS\t")
	for _, le := range entries {
		sum := "-"
		if le.hasSum {
			sum = "yes"
		}
		kb := strings.Join(le.KeptBy, ",")
		if kb == "" {
			kb = "(prunable)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", le.ID, le.Database, le.Storage,
			le.Time.UTC().Format("2006-01-02 15:04:05"), le.Time.Local().Format("2006-01-02 15:04 MST"), age(now.Sub(le.Time)),
			humanBytes(le.Size), sum, kb, drillText(le, now), keysText(le, mine))
	}
	tw.Flush()
	fmt.Fprintf(g.stdout, "%d backup(s)\n", len(entries))
	return errors.Join(errs...)
}

// surveyErrors are the entries whose survey failed.
func surveyErrors(s reconcile.Survey) []error {
	var out []error
	for _, w := range s.Warnings {
		out = append(out, errors.New(w))
	}
	return out
}
