package reconcile

import (
	"time"

	"github.com/robfig/cron/v3"
)

// cronParser reads backup schedules: 5 fields, or @daily-style
// descriptors (the schema validates with the same settings).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// nextSlot returns the first cron slot strictly after t, in loc. ok is
// false for an empty schedule (on demand only).
func nextSlot(expr string, loc *time.Location, t time.Time) (time.Time, bool) {
	if expr == "" {
		return time.Time{}, false
	}
	s, err := cronParser.Parse(expr)
	if err != nil {
		return time.Time{}, false
	}
	if loc == nil {
		loc = time.UTC
	}
	t = t.In(loc)
	next := s.Next(t)
	// When clocks fall back, a wall-clock time repeats; like cron, run
	// that slot once: skip a slot with the same wall-clock minute as t.
	if wallMinute(next) == wallMinute(t) {
		next = s.Next(next)
	}
	if next.IsZero() {
		return time.Time{}, false // a schedule that never fires (31 February)
	}
	return next, true
}

func wallMinute(t time.Time) string { return t.Format("2006-01-02 15:04") }

// Interval is the gap between the two slots after t: the schedule's
// period near t (used for "overdue" = 2 × interval).
func Interval(expr string, loc *time.Location, t time.Time) (time.Duration, bool) {
	a, ok := nextSlot(expr, loc, t)
	if !ok {
		return 0, false
	}
	b, _ := nextSlot(expr, loc, a)
	return b.Sub(a), true
}

// due decides whether a backup is due: when there is none, or when the
// next slot after the newest one is at or before now. Missed slots are
// caught up once, since only the newest backup counts.
func due(expr string, loc *time.Location, newest time.Time, now time.Time) (bool, string) {
	if expr == "" {
		return false, ""
	}
	if newest.IsZero() {
		return true, "due: no backup yet"
	}
	slot, ok := nextSlot(expr, loc, newest)
	if !ok || slot.After(now) {
		return false, ""
	}
	return true, "due: slot " + fmtTime(slot) + ", newest backup " + fmtTime(newest)
}

func fmtTime(t time.Time) string { return t.Format(time.RFC3339) }
