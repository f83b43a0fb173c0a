package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/reconcile"
	"github.com/backupkit/backupkit/repo"
)

// Shell completion (`backupkit completion bash|zsh|fish|powershell`)
// completes --db with the configured databases and --from with latest,
// backup IDs and STORAGE:KEYs, read from the config and the storages.

func (g *globals) completeDatabases(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	server := false
	for _, d := range cfg.Databases {
		out = append(out, d.Name)
		server = server || d.Discover != nil
	}
	if server { // the databases whole-server entries have backed up
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if a, err := g.open(ctx, ""); err == nil {
			for _, d := range a.survey(ctx, "").Databases {
				if d.Entry != "" && d.Role == reconcile.RoleDatabase {
					out = append(out, d.Show())
				}
			}
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func (g *globals) completeSources(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := g.open(ctx, "")
	if err != nil {
		return []string{"latest"}, cobra.ShellCompDirectiveDefault
	}
	db, _ := cmd.Flags().GetString("db")
	out := []string{"latest\tthe newest backup"}
	for _, d := range a.survey(ctx, db).Databases {
		for _, st := range d.Storages {
			bs, err := repo.List(ctx, a.stores[st], d.Name)
			if err != nil {
				continue
			}
			for _, b := range bs {
				id, desc := format.ID(b.Key), st+":"+b.Key
				if prefix != "" && strings.HasPrefix(desc, prefix) {
					out = append(out, desc)
				} else if strings.HasPrefix(id, prefix) {
					out = append(out, id+"\t"+b.Time.UTC().Format(time.RFC3339)+" in "+st)
				}
			}
		}
	}
	return out, cobra.ShellCompDirectiveDefault
}

// completions registers the completion functions on the commands' flags.
func (g *globals) completions(root *cobra.Command) {
	for _, c := range root.Commands() {
		if c.Flags().Lookup("db") != nil {
			c.RegisterFlagCompletionFunc("db", g.completeDatabases)
		}
		if c.Flags().Lookup("from") != nil {
			c.RegisterFlagCompletionFunc("from", g.completeSources)
		}
	}
}
