package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func notYet(name, short string) func(*globals) *cobra.Command {
	return func(g *globals) *cobra.Command {
		return &cobra.Command{Use: name, Short: short, RunE: func(*cobra.Command, []string) error {
			return errors.New(name + ": not implemented yet")
		}}
	}
}

var (
	newInitCmd   = notYet("init", "Write a starter config")
	newTestCmd   = notYet("test", "Check the setup")
)
