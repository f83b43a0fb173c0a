package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/reconcile"
)

// metrics are the daemon's Prometheus series (SPEC §5).
type metrics struct {
	reg         *prometheus.Registry
	lastSuccess *prometheus.GaugeVec
	duration    *prometheus.GaugeVec
	bytes       *prometheus.GaugeVec
	backups     *prometheus.CounterVec
	prunes      *prometheus.CounterVec
	notifs      *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.lastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backupkit_last_success_timestamp_seconds",
		Help: "Time of the newest complete backup, from storage."}, []string{"database", "storage"})
	m.duration = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backupkit_backup_duration_seconds",
		Help: "Duration of the last backup."}, []string{"database", "storage"})
	m.bytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backupkit_backup_bytes",
		Help: "Stored size of the last backup."}, []string{"database", "storage"})
	m.backups = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backupkit_backups_total",
		Help: "Backups attempted, by result."}, []string{"database", "storage", "result"})
	m.prunes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backupkit_prunes_total",
		Help: "Backups pruned, by result."}, []string{"database", "result"})
	m.notifs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backupkit_notifications_total",
		Help: "Notification deliveries, by route type and result."}, []string{"type", "result"})
	m.reg.MustRegister(m.lastSuccess, m.duration, m.bytes, m.backups, m.prunes, m.notifs,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) notification(typ, result string) { m.notifs.WithLabelValues(typ, result).Inc() }

func (m *metrics) prune(db string, ok bool) { m.prunes.WithLabelValues(db, status(ok)).Inc() }

func (m *metrics) tick(t reconcile.Tick) {
	for _, o := range t.Report.Outcomes {
		switch {
		case o.Skipped != "":
		case o.Type == reconcile.ActBackup:
			m.backups.WithLabelValues(o.Database, o.Storage, status(o.Err == nil)).Inc()
			if o.Err == nil {
				m.duration.WithLabelValues(o.Database, o.Storage).Set(o.Duration.Seconds())
				m.bytes.WithLabelValues(o.Database, o.Storage).Set(float64(o.Bytes))
			}
		case o.Type == reconcile.ActPrune && o.Err == nil:
			m.prune(o.Database, true)
		}
	}
	for _, s := range t.Statuses {
		for st, last := range s.LastSuccess {
			if !last.IsZero() {
				m.lastSuccess.WithLabelValues(s.Database, st).Set(float64(last.UnixNano()) / 1e9)
			}
		}
	}
}

// health is what /healthz answers.
type health struct {
	mu     sync.Mutex
	ticked bool
	reason []string
}

func (h *health) update(t reconcile.Tick) {
	var reasons []string
	for _, u := range t.Unobserved {
		reasons = append(reasons, "storage listing failed: "+u)
	}
	for _, s := range t.Statuses {
		if s.Overdue {
			reasons = append(reasons, fmt.Sprintf("%s is overdue: no successful backup within %s", s.Database, s.Limit))
		}
	}
	h.mu.Lock()
	h.ticked, h.reason = true, reasons
	h.mu.Unlock()
}

func (h *health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	switch {
	case !h.ticked:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "starting: no reconcile tick has finished yet")
	case len(h.reason) > 0:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(h.reason, "\n"))
	default:
		fmt.Fprintln(w, "ok")
	}
}

func newDaemonCmd(g *globals) *cobra.Command {
	var interval, timeout time.Duration
	var listen string
	var parallel int
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the reconcile loop: observe, plan, apply every --interval",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.daemon(cmd.Context(), interval, timeout, listen, parallel)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&interval, "interval", time.Minute, "time between reconcile ticks")
	f.DurationVar(&timeout, "run-timeout", 0, "bound on each database's run (0 = none; leftovers are cleaned after 6h then)")
	f.StringVar(&listen, "listen", "", "serve /livez, /healthz and /metrics on this address (e.g. :9090)")
	f.IntVar(&parallel, "parallel", 2, "databases to work on at once")
	return cmd
}

func (g *globals) daemon(ctx context.Context, interval, timeout time.Duration, listen string, parallel int) error {
	if interval <= 0 {
		return usagef("--interval must be positive")
	}
	e, err := g.env(ctx, "")
	if err != nil {
		return err
	}
	m := newMetrics()
	n := newNotifier(g, e.cfg, m)
	r := &reconcile.Runner{Config: e.cfg, Sinks: e.stores, Log: g.log, Observer: n, Parallel: parallel, RunTimeout: timeout, Lock: true}
	h := &health{}
	d := &reconcile.Daemon{Runner: r, Interval: interval, OnTick: func(ctx context.Context, t reconcile.Tick) {
		for _, o := range t.Report.Outcomes {
			if o.Skipped != "" {
				g.log.Info("action skipped", "type", o.Type, "database", o.Database, "storage", o.Storage, "key", o.Key, "reason", o.Skipped)
			}
		}
		m.tick(t)
		h.update(t)
		n.tick(ctx, t)
	}}
	if listen != "" {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return usagef("--listen %s: %v", listen, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.Handle("/healthz", h)
		mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		g.log.Info("serving health and metrics", "addr", ln.Addr().String())
	}
	g.log.Info("daemon started", "interval", interval, "databases", len(e.cfg.Databases))
	err = d.Run(ctx)
	g.log.Info("daemon stopped")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
