package reconcile

import (
	"fmt"
	"strings"
	"time"

	"github.com/backupkit/backupkit/internal/populate"
)

// bucket names a period: (year, month, day, hour), the fields a rule
// does not look at left zero; ISO weeks are (ISO year, week).
type bucket [4]int

// rule is one keep rule: how many buckets, and the bucket of a time.
type rule struct {
	name   string
	count  int
	bucket func(t time.Time) bucket
}

func rules(r *Retention) []rule {
	return []rule{
		{"keep_last", r.KeepLast, nil},
		{"keep_hourly", r.KeepHourly, func(t time.Time) bucket { y, m, d := t.Date(); return bucket{y, int(m), d, t.Hour()} }},
		{"keep_daily", r.KeepDaily, func(t time.Time) bucket { y, m, d := t.Date(); return bucket{y, int(m), d} }},
		{"keep_weekly", r.KeepWeekly, func(t time.Time) bucket { y, w := t.ISOWeek(); return bucket{y, w} }},
		{"keep_monthly", r.KeepMonthly, func(t time.Time) bucket { y, m, _ := t.Date(); return bucket{y, int(m)} }},
		{"keep_yearly", r.KeepYearly, func(t time.Time) bucket { return bucket{t.Year()} }},
	}
}

// Retain applies restic-style keep rules to backup times sorted newest
// first, evaluated in loc. It returns, for each index, the rules that keep
// it (empty: not kept). A nil policy keeps everything. The caller still
// applies the safety rules (the newest backup is always kept).
func Retain(times []time.Time, r *Retention, loc *time.Location) [][]string {
	kept := make([][]string, len(times))
	populate.Slice(kept)
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
		n := 0
		var last bucket
		for i, t := range times {
			if n >= ru.count {
				break
			}
			b := bucket{i} // keep_last: every backup is its own bucket
			if ru.bucket != nil {
				b = ru.bucket(t.In(loc))
			}
			if n > 0 && b == last {
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
