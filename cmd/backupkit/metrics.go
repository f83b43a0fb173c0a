package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

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
	overdue     *prometheus.GaugeVec
	listFails   *prometheus.CounterVec
	nextDue     *prometheus.GaugeVec
	lastDrill   *prometheus.GaugeVec
	drillDur    *prometheus.GaugeVec
	drills      *prometheus.CounterVec
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
	m.overdue = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backupkit_overdue",
		Help: "1 when the database has had no successful backup for longer than alert_after (or twice its interval)."}, []string{"database"})
	m.listFails = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backupkit_storage_listing_failures_total",
		Help: "Listings of a database's storage that failed (nothing is decided for it then)."}, []string{"database", "storage"})
	m.nextDue = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backupkit_next_backup_timestamp_seconds",
		Help: "When the next backup is due; 0 when on demand only, or when none exists yet (due now)."}, []string{"database", "storage"})
	m.lastDrill = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backupkit_last_drill_success_timestamp_seconds",
		Help: "When a restore drill last passed."}, []string{"database", "storage"})
	m.drillDur = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backupkit_drill_duration_seconds",
		Help: "Duration of the last restore drill."}, []string{"database", "storage"})
	m.drills = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backupkit_drills_total",
		Help: "Restore drills, by result."}, []string{"database", "result"})
	m.reg.MustRegister(m.lastSuccess, m.duration, m.bytes, m.backups, m.prunes, m.notifs, m.overdue, m.listFails, m.nextDue,
		m.lastDrill, m.drillDur, m.drills,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) notification(typ, result string) { m.notifs.WithLabelValues(typ, result).Inc() }

func (m *metrics) prune(db string, ok bool) { m.prunes.WithLabelValues(db, status(ok)).Inc() }

func (m *metrics) drill(e reconcile.Event) {
	m.drills.WithLabelValues(e.Database, status(e.Success)).Inc()
	m.drillDur.WithLabelValues(e.Database, e.Storage).Set(e.Duration.Seconds())
	if e.Success {
		m.lastDrill.WithLabelValues(e.Database, e.Storage).Set(float64(time.Now().UnixNano()) / 1e9)
	}
}

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
		case o.Type == reconcile.ActPrune:
			m.prune(o.Database, o.Err == nil)
		}
	}
	for _, u := range t.Unobserved {
		db, st, _ := strings.Cut(u, "/")
		m.listFails.WithLabelValues(db, st).Inc()
	}
	for _, n := range t.Plan.Next {
		m.nextDue.WithLabelValues(n.Database, n.Storage).Set(seconds(n.Due))
	}
	for _, s := range t.Statuses {
		// A database that never succeeded exports 0 (1970), so "time() -
		// last success > limit" fires for it too.
		for st, last := range s.LastSuccess {
			m.lastSuccess.WithLabelValues(s.Database, st).Set(seconds(last))
		}
		over := 0.0
		if s.Overdue {
			over = 1
		}
		m.overdue.WithLabelValues(s.Database).Set(over)
	}
}

func seconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// health is what /healthz answers.
type health struct {
	mu     sync.Mutex
	ticked bool
	reason []string
	drills map[string]bool // database/storage → last drill passed
}

func (h *health) update(t reconcile.Tick) {
	if h.drills == nil {
		h.drills = map[string]bool{}
	}
	var reasons []string
	for _, u := range t.Unobserved {
		reasons = append(reasons, "storage listing failed: "+u)
	}
	for _, s := range t.Statuses {
		if s.Overdue {
			reasons = append(reasons, fmt.Sprintf("%s is overdue: no successful backup within %s", s.Database, s.Limit))
		}
	}
	for _, o := range t.Report.Outcomes {
		if o.Type == reconcile.ActDrill && o.Drill != nil {
			h.drills[o.Database+"/"+o.Storage] = o.Drill.OK
		}
	}
	for slot, ok := range h.drills {
		if !ok {
			reasons = append(reasons, "the last restore drill of "+slot+" failed")
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
		// Healthy unless something is actually wrong: a first backup
		// that takes an hour is not a reason to mark the container sick.
		fmt.Fprintln(w, "ok: the first reconcile tick is still running")
	case len(h.reason) > 0:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(h.reason, "\n"))
	default:
		fmt.Fprintln(w, "ok")
	}
}
