package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/internal/fault"
	"github.com/backupkit/backupkit/reconcile"
)

type daemonOptions struct {
	interval, runTimeout time.Duration
	listen               string
	parallel             int
}

func newDaemonCmd(g *globals) *cobra.Command {
	var o daemonOptions
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the reconcile loop: observe, plan, apply every --interval",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.daemon(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.interval, "interval", time.Minute, "time between reconcile ticks")
	f.DurationVar(&o.runTimeout, "run-timeout", reconcile.DefaultCleanupAge, "bound on each database's run; leftovers older than this are cleaned up (0 = no bound, cleanup after 6h)")
	f.StringVar(&o.listen, "listen", os.Getenv("BACKUPKIT_LISTEN"), "serve /livez, /healthz and /metrics on this address, e.g. :9090 (default $BACKUPKIT_LISTEN)")
	f.IntVar(&o.parallel, "parallel", 2, "databases to work on at once")
	return cmd
}

func (g *globals) daemon(ctx context.Context, o daemonOptions) error {
	if o.interval <= 0 {
		return usagef("--interval must be positive")
	}
	a, err := g.open(ctx, "")
	if err != nil {
		return err
	}
	m := newMetrics()
	n := newNotifier(g, a.cfg, m)
	r := g.runner(a, o.parallel, o.runTimeout, n)
	h := &health{}
	d := &reconcile.Daemon{Runner: r, Interval: o.interval, OnTick: func(ctx context.Context, t reconcile.Tick) {
		g.logTick(t)
		m.tick(t)
		h.update(t)
		n.tick(ctx, t)
	}}
	if o.listen != "" {
		ln, err := net.Listen("tcp", o.listen)
		if err != nil {
			return usagef("--listen %s: %v", o.listen, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.Handle("/healthz", h)
		mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		if err := os.WriteFile(addrFile(), []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			g.log.Warn("cannot record the listen address for healthcheck", "err", err)
		}
		g.log.Info("serving health and metrics", "addr", ln.Addr().String())
	}
	g.log.Info("daemon started", "interval", o.interval, "databases", len(a.dbs))
	d.Run(ctx)
	g.log.Info("daemon stopped")
	return nil
}

// logTick logs what a tick did: warnings, failures and skips (the
// runner returns them; it does not log them).
func (g *globals) logTick(t reconcile.Tick) {
	for _, w := range t.Plan.Warnings {
		g.log.Warn(w)
	}
	for _, o := range t.Report.Outcomes {
		switch {
		case o.Err != nil:
			g.log.Error(string(o.Type)+" failed", "database", o.Database, "storage", o.Storage, "key", o.Key,
				"kind", fault.KindOf(o.Err).String(), "err", o.Err)
		case o.Skip != "":
			g.log.Info(string(o.Type)+" skipped", "database", o.Database, "storage", o.Storage, "key", o.Key,
				"skip", string(o.Skip), "reason", o.Skip.Text())
		}
	}
}
