package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/reconcile"
	"github.com/backupkit/backupkit/repo"
)

type listOptions struct{ db, output string }

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
	for i := range a.dbs {
		d := &a.dbs[i]
		if o.db != "" && d.Name != o.db {
			continue
		}
		for _, st := range d.Storages {
			bs, err := repo.List(ctx, a.stores[st], d.Name)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s/%s: %w", d.Name, st, err))
				continue
			}
			kept := reconcile.KeptBy(d, bs, now)
			for j, b := range bs {
				le := listEntry{Database: d.Name, Storage: st, Key: b.Key, Time: b.Time, Size: b.Size, KeptBy: kept[j], hasSum: b.HasChecksum}
				if le.KeptBy == nil {
					le.KeptBy = []string{}
				}
				if b.HasChecksum && o.output == "json" {
					le.SHA256, _ = repo.ReadChecksum(ctx, a.stores[st], b.Key)
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
	return errors.Join(errs...)
}
