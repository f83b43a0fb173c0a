package reconcile

import (
	"fmt"
	"strings"
	"time"
)

// rule is one keep rule: how many buckets, and the bucket of a time.
type rule struct {
	name   string
	count  int
	bucket func(t time.Time) int
}

func rules(r *Retention) []rule {
	return []rule{
		{"keep_last", r.KeepLast, nil},
		{"keep_hourly", r.KeepHourly, func(t time.Time) int { y, m, d := t.Date(); return ((y*100+int(m))*100+d)*100 + t.Hour() }},
		{"keep_daily", r.KeepDaily, func(t time.Time) int { y, m, d := t.Date(); return (y*100+int(m))*100 + d }},
		{"keep_weekly", r.KeepWeekly, func(t time.Time) int { y, w := t.ISOWeek(); return y*100 + w }},
		{"keep_monthly", r.KeepMonthly, func(t time.Time) int { y, m, _ := t.Date(); return y*100 + int(m) }},
		{"keep_yearly", r.KeepYearly, func(t time.Time) int { return t.Year() }},
	}
}

// Retain applies restic-style keep rules to backup times sorted newest
// first, evaluated in loc. It returns, for each index, the rules that keep
// it (empty: not kept). A nil policy keeps everything. The caller still
// applies the safety rules (the newest backup is always kept).
func Retain(times []time.Time, r *Retention, loc *time.Location) [][]string {
	kept := make([][]string, len(times))
	if r == nil || *r == (Retention{}) {
		// No rule set: nothing asks for a prune.
		for i := range kept {
			kept[i] = []string{"no retention"}
		}
		return kept
	}
	if loc == nil {
		loc = time.UTC
	}
	for _, ru := range rules(r) {
		if ru.count <= 0 {
			continue
		}
		n, last := 0, -1
		for i, t := range times {
			if n >= ru.count {
				break
			}
			b := i // keep_last: every backup is its own bucket
			if ru.bucket != nil {
				b = ru.bucket(t.In(loc))
			}
			if b == last {
				continue
			}
			last = b
			kept[i] = append(kept[i], ru.name)
			n++
		}
	}
	return kept
}

// policy describes the rules in a prune reason: "keep_daily=7, keep_weekly=4".
func policy(r *Retention) string {
	var parts []string
	for _, ru := range rules(r) {
		if ru.count > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", ru.name, ru.count))
		}
	}
	if len(parts) == 0 {
		return "an empty retention policy"
	}
	return strings.Join(parts, ", ")
}
