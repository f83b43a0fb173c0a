package main

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/schema"
)

type problemJSON struct {
	Path     string `json:"path"`
	Position string `json:"position"`
	Message  string `json:"message"`
}

func newValidateCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Load and validate the config; print every problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFlag(output); err != nil {
				return err
			}
			cfg, err := g.loadConfig()
			if output == "json" {
				doc := struct {
					envelope
					Valid         bool          `json:"valid"`
					File          string        `json:"file"`
					Databases     int           `json:"databases"`
					Storages      int           `json:"storages"`
					Notifications int           `json:"notifications"`
					Problems      []problemJSON `json:"problems"`
				}{envelope: v1, Valid: err == nil, File: g.configPath, Problems: []problemJSON{}}
				var se *schema.Error
				if errors.As(err, &se) {
					for _, p := range se.Problems {
						doc.Problems = append(doc.Problems, problemJSON{p.Path, p.Pos, p.Msg})
					}
				} else if err != nil {
					return err
				}
				if cfg != nil {
					doc.Databases, doc.Storages, doc.Notifications = len(cfg.Databases), len(cfg.Storage), len(cfg.Notifications)
				}
				if werr := writeJSON(g.stdout, doc); werr != nil {
					return werr
				}
				return err
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s: valid (%d database(s), %d storage(s), %d notification route(s))\n",
				cfg.File, len(cfg.Databases), len(cfg.Storage), len(cfg.Notifications))
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newSchemaCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the embedded CUE schema",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := io.WriteString(g.stdout, schema.Source())
			return err
		},
	}
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return v
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(g.stdout, "backupkit %s\n%s\n%s\n", versionString(), format.ZstdEncoders(), format.GzipDecoders())
			return nil
		},
	}
}
