package main

import (
	"github.com/backupkit/backupkit/reconcile"
	"github.com/backupkit/backupkit/schema"
)

// newNotifier returns the runner's observer for the config's routes.
func newNotifier(g *globals, cfg *schema.Config) reconcile.Observer { return nil }
