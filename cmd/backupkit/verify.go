package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/restore"
)

type verifyOptions struct {
	db, from, output string
	allowSQL         bool
	allowUnencrypted bool
}

func newVerifyCmd(g *globals) *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify --from SOURCE [--db NAME]",
		Short: "Read a whole backup: checksum, decrypt, decompress, pg_restore --list; change nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.verify(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "database in the config (required when there are several)")
	f.StringVar(&o.from, "from", "", "backup to verify: a file path, STORAGE:KEY, or latest")
	f.BoolVar(&o.allowSQL, "allow-sql-fallback", false, "accept a pg_dump plain-SQL dump")
	f.BoolVar(&o.allowUnencrypted, "allow-unencrypted", false, "accept an unencrypted backup although the config encrypts")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (g *globals) verify(ctx context.Context, o verifyOptions) error {
	if err := outputFlag(o.output); err != nil {
		return err
	}
	db, src, err := g.source(ctx, o.db, o.from, nil)
	if err != nil {
		return err
	}
	co := checkOptions(g.cfg, db)
	co.AllowSQL, co.AllowUnencrypted = o.allowSQL, o.allowUnencrypted
	res, err := restore.Verify(ctx, src, co)
	if err != nil {
		return fmt.Errorf("verify %s: %w", src.Desc, err)
	}
	for _, w := range res.Warnings {
		g.log.Warn(w)
	}
	if o.output == "json" {
		return writeJSON(g.stdout, struct {
			envelope
			From    string `json:"from"`
			OK      bool   `json:"ok"`
			Layers  string `json:"layers"`
			Stored  int64  `json:"stored_bytes"`
			Decoded int64  `json:"decoded_bytes"`
			Entries int    `json:"archive_entries"`
		}{v1, src.Desc, true, res.Layers.String(), res.Stored, res.Decoded, res.Entries})
	}
	fmt.Fprintf(g.stdout, "ok: %s: %s, %s decoded, %d archive entries\n", src.Desc, res.Layers, humanBytes(res.Decoded), res.Entries)
	return nil
}
