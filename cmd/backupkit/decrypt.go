package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/restore"
)

type decryptOptions struct{ db, from string }

func newDecryptCmd(g *globals) *cobra.Command {
	var o decryptOptions
	cmd := &cobra.Command{
		Use:   "decrypt --from SOURCE [--db NAME] > plain.dump",
		Short: "Write a backup as a plain pg_dump archive (decrypted, decompressed) to stdout",
		Long: `decrypt turns a backup into what pg_dump wrote: every chunk authenticated on
the way, decompressed, written to stdout (never to a terminal). The output is
usable with pg_restore alone, so a backup can always be read without BackupKit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.decrypt(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.db, "db", "", "database in the config (required when there are several)")
	cmd.Flags().StringVar(&o.from, "from", "", "the backup: a file path, STORAGE:KEY, an ID, a time, or latest")
	return cmd
}

func (g *globals) decrypt(ctx context.Context, o decryptOptions) error {
	if isTerminal(g.stdout) {
		return usagef("decrypt writes a database dump to stdout: redirect it to a file or a pipe, not a terminal")
	}
	db, src, err := g.source(ctx, o.db, o.from, nil)
	if err != nil {
		return err
	}
	n, err := restore.Decrypt(ctx, src, checkOptions(g.cfg, db), g.stdout)
	if err != nil {
		if errors.Is(err, io.ErrShortWrite) {
			return err
		}
		return fmt.Errorf("decrypt %s: %w (what was written is not a complete archive)", src.Desc, err)
	}
	g.log.Info("decrypted", "from", src.Desc, "bytes", n)
	return nil
}
