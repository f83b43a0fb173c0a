package main

import (
	"context"
	"strings"
	"time"

	"github.com/backupkit/backupkit/alerting"
	"github.com/backupkit/backupkit/reconcile"
	"github.com/backupkit/backupkit/schema"
)

// notifier turns runner events into notifications and metrics.
type notifier struct {
	g       *globals
	d       *alerting.Dispatcher
	tracker *alerting.Tracker
	metrics *metrics // nil outside the daemon
}

func newNotifier(g *globals, cfg *schema.Config, m *metrics) *notifier {
	o := alerting.Options{ShutdownWait: 3 * time.Second}
	if m != nil {
		o.Count = m.notification
	}
	return &notifier{g: g, d: alerting.New(routesOf(cfg), o), tracker: alerting.NewTracker(), metrics: m}
}

// send delivers an event; a failed delivery is logged here, and never
// changes an outcome.
func (n *notifier) send(ctx context.Context, ev alerting.Event) {
	if err := n.d.Send(ctx, ev); err != nil {
		n.g.log.Warn("notification failed", "event", ev.Event, "db", ev.DB, "err", err)
	}
}

// Event implements reconcile.Observer.
func (n *notifier) Event(ctx context.Context, e reconcile.Event) {
	var ev alerting.Event
	switch e.Kind {
	case reconcile.EventStart:
		ev = alerting.NewEvent(alerting.KindStart, e.Database, "")
	case reconcile.EventBackup:
		ev = alerting.NewEvent(alerting.KindBackup, e.Database, status(e.Success))
	case reconcile.EventPrune:
		ev = alerting.NewEvent(alerting.KindPrune, e.Database, status(e.Success))
	case reconcile.EventDrill:
		ev = alerting.NewEvent(alerting.KindDrill, e.Database, status(e.Success))
		ev.Dest, ev.Key, ev.Check = e.Storage, e.Key, e.Check
		if m := n.metrics; m != nil {
			m.drill(e)
		}
	default:
		return
	}
	ev.Bytes, ev.Tables, ev.Rows = e.Bytes, e.Tables, e.Rows
	if len(e.Dest) > 0 {
		ev.Dest = strings.Join(e.Dest, ", ")
	}
	if e.Duration > 0 {
		ev.Duration = e.Duration.Round(time.Millisecond).String()
	}
	if e.Err != nil {
		ev.Error = e.Err.Error()
	}
	n.send(ctx, ev)
	if e.Kind == reconcile.EventBackup {
		if rec := n.tracker.Result(e.Database, e.Success); rec != nil {
			n.send(ctx, *rec)
		}
	}
}

// tick announces overdue episodes once.
func (n *notifier) tick(ctx context.Context, t reconcile.Tick) {
	for _, s := range t.Statuses {
		if !s.Overdue {
			n.tracker.Check(s.Database, t.Time, s.Limit, t.Time) // clears a stale episode
			continue
		}
		if ev := n.tracker.Check(s.Database, s.Oldest(), s.Limit, t.Time); ev != nil {
			n.g.log.Warn("database is overdue", "database", s.Database, "detail", ev.Error)
			n.send(ctx, *ev)
		}
	}
}

func status(ok bool) string {
	if ok {
		return "success"
	}
	return "failure"
}
