package alerting

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/backupkit/backupkit/internal/secret"
)

// Route is one notification route, as the caller (cmd) builds it from the
// config: its type and subscriptions, and the settings of that type.
type Route struct {
	Type string   // "webhook", "email", "healthchecks"
	On   []string // success, failure, both, overdue, recovered
	// webhook and healthchecks
	URL     secret.Secret
	Headers map[string]secret.Secret
	Slack   bool // format: slack
	// email
	SMTPHost string
	SMTPPort int
	From     string
	To       []string
	Username string
	Password secret.Secret
	TLS      string // "starttls" (default), "tls", "none"
	// every route: attempts and total time per event
	MaxAttempts int
	MaxWait     time.Duration
}

// Wants reports whether the route subscribes to an outcome ("success",
// "failure", "overdue", "recovered", "drill_success", "drill_failure").
func (r Route) Wants(outcome string) bool {
	for _, o := range r.On {
		if o == outcome || (o == "both" && (outcome == "success" || outcome == "failure")) {
			return true
		}
	}
	return false
}

// Event kinds.
const (
	KindBackup    = "backup"
	KindPrune     = "prune"
	KindOverdue   = "overdue"
	KindRecovered = "recovered"
	KindTest      = "test"
	KindDrill     = "drill"
	// KindStart is sent to healthchecks routes only (the /start ping).
	KindStart = "start"
)

// Event is what a notification says (v0 fields plus event, time, host).
type Event struct {
	DB       string    `json:"db"`
	Status   string    `json:"status"` // "success" or "failure"
	Bytes    int64     `json:"bytes"`
	Dest     string    `json:"dest"`
	Duration string    `json:"duration"`
	Error    string    `json:"error,omitempty"`
	Tables   int       `json:"tables,omitempty"` // backups and drills: tables and rows
	Rows     int64     `json:"rows,omitempty"`
	Key      string    `json:"key,omitempty"`   // drills: the backup drilled
	Check    string    `json:"check,omitempty"` // drills: the check that failed
	Event    string    `json:"event"`
	Time     time.Time `json:"time"`
	Host     string    `json:"host"`
}

// outcome is the `on:` value an event matches.
func (e Event) outcome() string {
	switch e.Event {
	case KindOverdue, KindRecovered:
		return e.Event
	case KindDrill:
		return "drill_" + e.Status
	}
	return e.Status
}

// Summary is a one-line description: "app_db backup failed".
func (e Event) Summary() string {
	switch e.Event {
	case KindOverdue:
		return e.DB + " is overdue: no successful backup"
	case KindRecovered:
		return e.DB + " recovered: backups succeed again"
	case KindTest:
		return "test notification"
	case KindPrune:
		return e.DB + " prune " + verb(e.Status)
	case KindDrill:
		if e.Status == "success" {
			return e.DB + " restore drill passed"
		}
		return e.DB + " restore drill FAILED"
	}
	return e.DB + " backup " + verb(e.Status)
}

func verb(status string) string {
	if status == "success" {
		return "succeeded"
	}
	return "failed"
}

// NewEvent fills in time and host.
func NewEvent(kind, db, status string) Event {
	host, _ := os.Hostname()
	return Event{Event: kind, DB: db, Status: status, Time: time.Now().UTC(), Host: host}
}

// sender delivers one event on one route, retrying within its bound.
type sender interface {
	send(ctx context.Context, e Event) error
}

type route struct {
	Route
	sender sender
}

// wants reports whether the route takes the event.
func (r route) wants(e Event) bool {
	if e.Event == KindTest {
		return true
	}
	if e.Event == KindStart {
		return r.Type == "healthchecks"
	}
	return r.Wants(e.outcome())
}

// Options tune delivery (tests shorten the waits).
type Options struct {
	RetryWaitMin time.Duration // default 1s
	RetryWaitMax time.Duration // default 30s
	// ShutdownWait bounds delivery once the caller's context is done
	// (a cancelled run still reports its failure). Default 5s.
	ShutdownWait time.Duration
	// Count is called once per route delivery with its type and result
	// ("success" or "failure"), for metrics.
	Count func(typ, result string)
	// RootCAs verifies SMTP servers' certificates (nil: the system's).
	RootCAs *x509.CertPool
}

// Dispatcher sends events to every route that wants them.
type Dispatcher struct {
	routes []route
	opt    Options
}

// New builds a dispatcher for the routes.
func New(routes []Route, o Options) *Dispatcher {
	if o.RetryWaitMin == 0 {
		o.RetryWaitMin = time.Second
	}
	if o.RetryWaitMax == 0 {
		o.RetryWaitMax = 30 * time.Second
	}
	if o.ShutdownWait == 0 {
		o.ShutdownWait = 5 * time.Second
	}
	d := &Dispatcher{opt: o}
	for _, n := range routes {
		r := route{Route: n}
		switch n.Type {
		case "webhook":
			r.sender = newWebhook(n, o)
		case "healthchecks":
			r.sender = newHealthchecks(n, o)
		case "email":
			r.sender = newEmail(n, o)
		default:
			continue
		}
		d.routes = append(d.routes, r)
	}
	return d
}

// Send delivers e to every route that wants it, concurrently, and
// returns their errors joined (the caller logs them). Each route is
// bounded by its max_wait; a done ctx still gets ShutdownWait so failures
// are reported.
func (d *Dispatcher) Send(ctx context.Context, e Event) error {
	var wg sync.WaitGroup
	errs := make([]error, len(d.routes))
	for i, r := range d.routes {
		if !r.wants(e) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := boundedContext(ctx, r.MaxWait, d.opt.ShutdownWait)
			defer cancel()
			err := r.sender.send(rctx, e)
			result := "success"
			if err != nil {
				result = "failure"
				errs[i] = fmt.Errorf("%s notification: %w", r.Type, err)
			}
			if d.opt.Count != nil && e.Event != KindStart {
				d.opt.Count(r.Type, result)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func boundedContext(ctx context.Context, maxWait, shutdown time.Duration) (context.Context, context.CancelFunc) {
	if maxWait <= 0 {
		maxWait = 2 * time.Minute
	}
	if ctx.Err() != nil {
		return context.WithTimeout(context.WithoutCancel(ctx), min(shutdown, maxWait))
	}
	return context.WithTimeout(ctx, maxWait)
}

// Tracker decides when overdue and recovered are announced: once per
// episode, not every tick.
type Tracker struct {
	mu    sync.Mutex
	state map[string]*episode
}

type episode struct {
	failing bool // a backup failed since the last success
	overdue bool // overdue was announced
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{state: map[string]*episode{}} }

func (t *Tracker) get(db string) *episode {
	e := t.state[db]
	if e == nil {
		e = &episode{}
		t.state[db] = e
	}
	return e
}

// Result records a backup outcome; it returns a recovered event on the
// first success after a failure or an overdue.
func (t *Tracker) Result(db string, ok bool) *Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.get(db)
	if !ok {
		e.failing = true
		return nil
	}
	if e.failing || e.overdue {
		e.failing, e.overdue = false, false
		ev := NewEvent(KindRecovered, db, "success")
		return &ev
	}
	return nil
}

// Check returns an overdue event the first time db has had no success
// for longer than limit (lastSuccess zero: never).
func (t *Tracker) Check(db string, lastSuccess time.Time, limit time.Duration, now time.Time) *Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.get(db)
	if limit <= 0 || now.Sub(lastSuccess) <= limit || e.overdue {
		if limit > 0 && now.Sub(lastSuccess) <= limit && e.overdue && !e.failing {
			// A success appeared without us taking it (another process).
			e.overdue = false
		}
		return nil
	}
	e.overdue = true
	ev := NewEvent(KindOverdue, db, "failure")
	if lastSuccess.IsZero() {
		ev.Error = fmt.Sprintf("no successful backup at all, and the limit is %s", limit)
	} else {
		ev.Error = fmt.Sprintf("last successful backup %s ago (limit %s)", now.Sub(lastSuccess).Round(time.Second), limit)
	}
	return &ev
}

// text renders an event as plain text lines (email body, slack text).
func text(e Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", e.Summary())
	fmt.Fprintf(&b, "event:    %s\n", e.Event)
	fmt.Fprintf(&b, "db:       %s\n", e.DB)
	fmt.Fprintf(&b, "status:   %s\n", e.Status)
	if e.Dest != "" {
		fmt.Fprintf(&b, "dest:     %s\n", e.Dest)
	}
	if e.Bytes > 0 {
		fmt.Fprintf(&b, "bytes:    %d\n", e.Bytes)
	}
	if e.Duration != "" {
		fmt.Fprintf(&b, "duration: %s\n", e.Duration)
	}
	if e.Tables > 0 {
		fmt.Fprintf(&b, "tables:   %d (%d rows)\n", e.Tables, e.Rows)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "backup:   %s\n", e.Key)
	}
	if e.Check != "" {
		fmt.Fprintf(&b, "check:    %s\n", e.Check)
	}
	if e.Error != "" {
		fmt.Fprintf(&b, "error:    %s\n", e.Error)
	}
	fmt.Fprintf(&b, "time:     %s\n", e.Time.Format(time.RFC3339))
	fmt.Fprintf(&b, "host:     %s\n", e.Host)
	return b.String()
}
