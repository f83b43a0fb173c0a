package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

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
		case o.Skip != "":
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
