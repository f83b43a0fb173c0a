package reconcile

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDue(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	ny, _ := time.LoadLocation("America/New_York")
	cases := []struct {
		name, cron string
		loc        *time.Location
		newest     string
		now        string
		want       bool
	}{
		{"no backup yet", "0 2 * * *", time.UTC, "", "2026-11-25T00:00:00Z", true},
		{"empty schedule, no backup: on demand only", "", time.UTC, "", "2026-11-25T00:00:00Z", false},
		{"empty schedule never due", "", time.UTC, "2026-01-01T00:00:00Z", "2026-11-25T00:00:00Z", false},
		{"daily: before the slot", "0 2 * * *", time.UTC, "2026-11-24T02:00:07Z", "2026-11-25T01:59:59Z", false},
		{"daily: at the slot", "0 2 * * *", time.UTC, "2026-11-24T02:00:07Z", "2026-11-25T02:00:00Z", true},
		{"daily: after the slot", "0 2 * * *", time.UTC, "2026-11-24T02:00:07Z", "2026-11-25T09:00:00Z", true},
		{"daily: taken today", "0 2 * * *", time.UTC, "2026-11-25T02:00:07Z", "2026-11-25T09:00:00Z", false},
		{"hourly at :15", "15 * * * *", time.UTC, "2026-11-25T10:15:02Z", "2026-11-25T11:14:00Z", false},
		{"hourly at :15, due", "15 * * * *", time.UTC, "2026-11-25T10:15:02Z", "2026-11-25T11:15:00Z", true},
		{"every 5 minutes", "*/5 * * * *", time.UTC, "2026-11-25T10:00:30Z", "2026-11-25T10:05:00Z", true},
		{"weekly on Sunday", "0 3 * * 0", time.UTC, "2026-11-22T03:00:00Z", "2026-11-28T23:00:00Z", false},
		{"weekly on Sunday, due", "0 3 * * 0", time.UTC, "2026-11-22T03:00:00Z", "2026-11-29T03:00:00Z", true},
		{"descriptor @daily", "@daily", time.UTC, "2026-11-24T00:00:01Z", "2026-11-25T00:00:00Z", true},
		{"berlin 02:00 is 01:00 UTC in winter", "0 2 * * *", berlin, "2026-11-24T01:00:05Z", "2026-11-25T00:59:00Z", false},
		{"berlin 02:00 is 01:00 UTC in winter, due", "0 2 * * *", berlin, "2026-11-24T01:00:05Z", "2026-11-25T01:00:00Z", true},
		// 2026-03-29: Berlin skips 02:00-03:00. The 02:30 slot does not
		// exist that day; the next slot is the day after.
		{"DST spring forward: skipped slot", "30 2 * * *", berlin, "2026-03-28T01:30:05Z", "2026-03-29T12:00:00Z", false},
		{"DST spring forward: next day", "30 2 * * *", berlin, "2026-03-28T01:30:05Z", "2026-03-30T00:30:00Z", true},
		// 2026-10-25: Berlin repeats 02:00-03:00; one backup that day.
		{"DST fall back: first 02:30", "30 2 * * *", berlin, "2026-10-24T00:30:05Z", "2026-10-25T00:30:00Z", true},
		{"DST fall back: no second backup", "30 2 * * *", berlin, "2026-10-25T00:30:05Z", "2026-10-25T01:45:00Z", false},
		{"new york daily 00:00 across DST", "0 0 * * *", ny, "2026-03-07T05:00:01Z", "2026-03-08T05:00:00Z", true},
		{"new york after spring forward", "0 0 * * *", ny, "2026-03-08T05:00:01Z", "2026-03-09T03:59:00Z", false},
		{"new york after spring forward, due", "0 0 * * *", ny, "2026-03-08T05:00:01Z", "2026-03-09T04:00:00Z", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var newest time.Time
			if c.newest != "" {
				newest = ts(c.newest)
			}
			got, reason := due(c.cron, c.loc, newest, ts(c.now))
			if got != c.want {
				t.Fatalf("due = %v (%s), want %v", got, reason, c.want)
			}
		})
	}
}

// cfgWith is one database writing to "local".
func cfgWith(schedule string, r *Retention, loc *time.Location) []Database {
	if loc == nil {
		loc = time.UTC
	}
	return []Database{{Name: "app", Storages: []string{"local"}, Schedule: schedule, Location: loc, Retention: r}}
}

func keyAt(t time.Time) string { return format.Key("app", t, format.Ext{Compression: format.None}) }

func history(times ...time.Time) *Observed {
	o := &Observed{}
	for _, t := range times {
		o.Backups = append(o.Backups, repo.Backup{Name: format.Name{Database: "app", Time: t}, Key: keyAt(t)})
	}
	sort.Slice(o.Backups, func(i, j int) bool { return o.Backups[i].Time.After(o.Backups[j].Time) })
	return o
}

func TestCatchUpAfterLongGapIsOneBackup(t *testing.T) {
	cfg := cfgWith("0 * * * *", nil, nil)
	obs := Observation{{"app", "local"}: history(ts("2026-11-01T00:00:10Z"))}
	p := MakePlan(cfg, obs, ts("2026-11-25T12:34:00Z"), PlanOptions{})
	if p.Count(ActBackup) != 1 {
		t.Fatalf("after 24 days down: %d backups planned, want 1: %+v", p.Count(ActBackup), p.Actions)
	}
	if p.Actions[0].Reason != "due: slot 2026-11-01T01:00:00Z, newest backup 2026-11-01T00:00:10Z" {
		t.Fatalf("reason %q", p.Actions[0].Reason)
	}
	// Applied: the next plan is empty until the next slot.
	obs[Slot{"app", "local"}] = history(ts("2026-11-01T00:00:10Z"), ts("2026-11-25T12:34:01Z"))
	if p := MakePlan(cfg, obs, ts("2026-11-25T12:59:59Z"), PlanOptions{}); !p.Empty() {
		t.Fatalf("second plan not empty: %+v", p.Actions)
	}
}

func TestUnobservedStoragePlansNothing(t *testing.T) {
	r := &Retention{KeepLast: 1}
	cfg := cfgWith("0 * * * *", r, nil)
	obs := Observation{{"app", "local"}: {Err: fmt.Errorf("permission denied")}}
	p := MakePlan(cfg, obs, ts("2026-11-25T12:00:00Z"), PlanOptions{Force: true})
	if !p.Empty() || len(p.Unobserved) != 1 {
		t.Fatalf("plan for an unobserved storage: %+v", p)
	}
}

func TestFutureBackupNeverPruned(t *testing.T) {
	cfg := cfgWith("0 * * * *", &Retention{KeepLast: 1}, nil)
	now := ts("2026-11-25T12:00:00Z")
	obs := Observation{{"app", "local"}: history(now.Add(-3*time.Hour), now.Add(-2*time.Hour), now.Add(48*time.Hour))}
	p := MakePlan(cfg, obs, now, PlanOptions{})
	for _, a := range p.Actions {
		if a.Type == ActPrune && a.Key == keyAt(now.Add(48*time.Hour)) {
			t.Fatal("future backup planned for pruning")
		}
	}
	if len(p.Warnings) == 0 {
		t.Fatal("no clock-skew warning")
	}
}

func TestLeftoversCleanedWhenOld(t *testing.T) {
	cfg := cfgWith("", nil, nil)
	now := ts("2026-11-25T12:00:00Z")
	o := history(now.Add(-time.Hour))
	o.Leftovers = []sinks.Leftover{{Key: "app/.x.tmp-1", Started: now.Add(-2 * time.Hour)}, {Key: "app/.y.tmp-2", Started: now.Add(-time.Minute)}}
	p := MakePlan(cfg, Observation{{"app", "local"}: o}, now, PlanOptions{RunTimeout: 30 * time.Minute})
	if p.Count(ActCleanup) != 1 || p.Actions[0].Key != "app/.x.tmp-1" {
		t.Fatalf("cleanups: %+v", p.Actions)
	}
}

// The v0 example (keep_daily 7, weekly 4, monthly 3) over a year of daily
// 02:00 backups keeps exactly this set.
func TestRetentionV0ExampleOverAYear(t *testing.T) {
	r := &Retention{KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 3}
	var times []time.Time
	for d := ts("2026-12-31T02:00:00Z"); !d.Before(ts("2026-01-01T02:00:00Z")); d = d.AddDate(0, 0, -1) {
		times = append(times, d)
	}
	kept := Retain(times, r, time.UTC)
	var got []string
	for i, k := range kept {
		if len(k) > 0 {
			got = append(got, times[i].Format("01-02")+"="+fmt.Sprint(k))
		}
	}
	want := []string{
		"12-31=[keep_daily keep_weekly keep_monthly]", "12-30=[keep_daily]", "12-29=[keep_daily]",
		"12-28=[keep_daily]", "12-27=[keep_daily keep_weekly]", "12-26=[keep_daily]", "12-25=[keep_daily]",
		"12-20=[keep_weekly]", "12-13=[keep_weekly]", "11-30=[keep_monthly]", "10-31=[keep_monthly]",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("kept:\n%v\nwant:\n%v", got, want)
	}
}

func TestRetentionKeepLastAndTimezone(t *testing.T) {
	times := []time.Time{ts("2026-11-25T10:00:00Z"), ts("2026-11-25T09:00:00Z"), ts("2026-11-25T08:00:00Z"), ts("2026-11-24T23:30:00Z")}
	kept := Retain(times, &Retention{KeepLast: 2}, time.UTC)
	if len(kept[0]) == 0 || len(kept[1]) == 0 || len(kept[2]) != 0 || len(kept[3]) != 0 {
		t.Fatalf("keep_last=2: %v", kept)
	}
	// 23:30 UTC on the 24th is the 25th in Tokyo: one day bucket.
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	kept = Retain(times, &Retention{KeepDaily: 2}, tokyo)
	if len(kept[0]) == 0 || len(kept[3]) != 0 {
		t.Fatalf("keep_daily=2 in Tokyo: %v", kept)
	}
	kept = Retain(times, &Retention{KeepDaily: 2}, time.UTC)
	if len(kept[3]) == 0 {
		t.Fatalf("keep_daily=2 in UTC: %v", kept)
	}
}

func TestPruneReasonNamesRules(t *testing.T) {
	cfg := cfgWith("", &Retention{KeepDaily: 1, KeepWeekly: 2}, nil)
	now := ts("2026-11-25T12:00:00Z")
	obs := Observation{{"app", "local"}: history(now.Add(-time.Hour), now.Add(-2*time.Hour))}
	p := MakePlan(cfg, obs, now, PlanOptions{})
	if p.Count(ActPrune) != 1 || p.Actions[0].Reason != "not kept by keep_daily=1, keep_weekly=2" {
		t.Fatalf("plan %+v", p.Actions)
	}
}

// apply simulates a successful apply on an observation.
func apply(obs Observation, p Plan) Observation {
	out := Observation{}
	for s, o := range obs {
		c := &Observed{Backups: append([]repo.Backup(nil), o.Backups...)}
		out[s] = c
	}
	for _, a := range p.Actions {
		o := out[Slot{a.Database, a.Storage}]
		switch a.Type {
		case ActBackup:
			o.Backups = append([]repo.Backup{{Name: format.Name{Database: a.Database, Time: p.Now}, Key: keyAt(p.Now)}}, o.Backups...)
		case ActPrune:
			for i, b := range o.Backups {
				if b.Key == a.Key {
					o.Backups = append(o.Backups[:i], o.Backups[i+1:]...)
					break
				}
			}
		}
	}
	return out
}

func randomPolicy(rng *rand.Rand) *Retention {
	return &Retention{KeepLast: rng.Intn(4), KeepHourly: rng.Intn(5), KeepDaily: rng.Intn(8),
		KeepWeekly: rng.Intn(5), KeepMonthly: rng.Intn(4), KeepYearly: rng.Intn(3)}
}

func randomHistory(rng *rand.Rand, now time.Time) *Observed {
	n := 1 + rng.Intn(60)
	var times []time.Time
	for i := 0; i < n; i++ {
		times = append(times, now.Add(-time.Duration(rng.Int63n(int64(400*24*time.Hour)))))
	}
	return history(times...)
}

// oracleKept is an independent statement of the retention rules (restic
// semantics), written differently from Retain on purpose: for each rule
// with count n, walk the backups newest first and keep the first one seen
// in each of the first n distinct periods, periods being formatted
// strings rather than integer buckets.
func oracleKept(times []time.Time, r *Retention, loc *time.Location) map[int]bool {
	kept := map[int]bool{}
	if r == nil {
		for i := range times {
			kept[i] = true
		}
		return kept
	}
	for i := 0; i < r.KeepLast && i < len(times); i++ {
		kept[i] = true
	}
	rules := []struct {
		n      int
		period func(time.Time) string
	}{
		{r.KeepHourly, func(t time.Time) string { return t.Format("2006-01-02 15h") }},
		{r.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{r.KeepWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%04d-W%02d", y, w) }},
		{r.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") }},
		{r.KeepYearly, func(t time.Time) string { return t.Format("2006") }},
	}
	for _, ru := range rules {
		seen := map[string]bool{}
		for i, t := range times {
			p := ru.period(t.In(loc))
			if seen[p] {
				continue
			}
			if len(seen) == ru.n {
				break
			}
			seen[p] = true
			kept[i] = true
		}
	}
	return kept
}

// oraclePrunes is what retention must prune from a slot's usable backups
// (newest first): everything the oracle does not keep, except the newest
// complete backup; with a planned backup at now, that one is the newest.
func oraclePrunes(bs []repo.Backup, r *Retention, loc *time.Location, planned *time.Time) []string {
	if r == nil {
		return nil
	}
	var times []time.Time
	if planned != nil {
		times = append(times, *planned)
	}
	for _, b := range bs {
		times = append(times, b.Time)
	}
	kept := oracleKept(times, r, loc)
	off := len(times) - len(bs)
	var out []string
	for i, b := range bs {
		if kept[i+off] || (i == 0 && planned == nil) {
			continue
		}
		out = append(out, b.Key)
	}
	sort.Strings(out)
	return out
}

func prunesOf(p Plan) []string {
	var out []string
	for _, a := range p.Actions {
		if a.Type == ActPrune {
			out = append(out, a.Key)
		}
	}
	sort.Strings(out)
	return out
}

func TestRetentionProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	now := ts("2026-11-25T12:00:00Z")
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	schedules := []string{"", "0 * * * *", "0 2 * * *"}
	for i := 0; i < 2000; i++ {
		r := randomPolicy(rng)
		loc := []*time.Location{time.UTC, tokyo}[rng.Intn(2)]
		cfg := cfgWith(schedules[rng.Intn(3)], r, loc)
		hist := randomHistory(rng, now)
		if rng.Intn(4) == 0 {
			// Clock skew: a backup from the future never counts.
			hist = history(append(timesOf(hist), now.Add(time.Duration(1+rng.Intn(72))*time.Hour))...)
		}
		obs := Observation{{"app", "local"}: hist}
		p := MakePlan(cfg, obs, now, PlanOptions{})
		usable := repo.Usable(hist.Backups, now)
		// Exactly the oracle's prunes, no more and no fewer.
		var planned *time.Time
		if p.Count(ActBackup) > 0 {
			planned = &now
		}
		if got, want := prunesOf(p), oraclePrunes(usable, r, loc, planned); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("case %d (policy %+v, %s, backup planned %v): pruned %v, oracle says %v", i, r, loc, planned != nil, got, want)
		}
		// Conditional prunes are exactly those only the planned backup licenses.
		anyway := map[string]bool{}
		for _, k := range oraclePrunes(usable, r, loc, nil) {
			anyway[k] = true
		}
		for _, a := range p.Actions {
			if a.Type == ActPrune && a.Conditional == anyway[a.Key] {
				t.Fatalf("case %d: prune %s conditional=%v, but without the backup it is prunable=%v", i, a.Key, a.Conditional, anyway[a.Key])
			}
		}
		// A future-dated backup is never pruned.
		for _, a := range p.Actions {
			for _, b := range hist.Backups {
				if a.Type == ActPrune && a.Key == b.Key && b.Time.After(now) {
					t.Fatalf("case %d: future-dated %s pruned", i, b.Key)
				}
			}
		}
		// A second plan after applying the first prunes nothing.
		after := apply(obs, p)
		if p2 := MakePlan(cfg, after, now, PlanOptions{}); p2.Count(ActPrune) != 0 || p2.Count(ActBackup) != 0 {
			t.Fatalf("case %d: second plan not empty: %+v (policy %+v)", i, p2.Actions, r)
		}
		// Adding a keep rule never prunes more.
		more := *r
		switch rng.Intn(6) {
		case 0:
			more.KeepLast++
		case 1:
			more.KeepHourly++
		case 2:
			more.KeepDaily++
		case 3:
			more.KeepWeekly++
		case 4:
			more.KeepMonthly++
		case 5:
			more.KeepYearly++
		}
		p3 := MakePlan(cfgWith(cfg[0].Schedule, &more, loc), obs, now, PlanOptions{})
		pruned := map[string]bool{}
		for _, k := range prunesOf(p) {
			pruned[k] = true
		}
		for _, k := range prunesOf(p3) {
			if !pruned[k] {
				t.Fatalf("case %d: adding a rule (%+v → %+v) pruned %s in addition", i, r, more, k)
			}
		}
	}
}

func timesOf(o *Observed) []time.Time {
	var out []time.Time
	for _, b := range o.Backups {
		out = append(out, b.Time)
	}
	return out
}

func TestPlanAt100kBackups(t *testing.T) {
	cfg := cfgWith("0 * * * *", &Retention{KeepDaily: 7, KeepWeekly: 4}, nil)
	now := ts("2026-11-25T12:00:00Z")
	var times []time.Time
	for i := 0; i < 100000; i++ {
		times = append(times, now.Add(-time.Duration(i)*time.Minute))
	}
	obs := Observation{{"app", "local"}: history(times...)}
	p := MakePlan(cfg, obs, now, PlanOptions{})
	// 7 daily (Nov 25 … Nov 19) and 4 weekly, of which 2 are daily ones:
	// 9 kept, 99,991 pruned, and the newest is one of the kept.
	if p.Count(ActPrune) != 99991 || p.Count(ActBackup) != 0 {
		t.Fatalf("%d prunes and %d backups, want 99991 and 0", p.Count(ActPrune), p.Count(ActBackup))
	}
	if got, want := prunesOf(p), oraclePrunes(obs[Slot{"app", "local"}].Backups, cfg[0].Retention, time.UTC, nil); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("the prunes differ from the oracle's")
	}
}

func TestPlanEdges(t *testing.T) {
	now := ts("2026-11-25T12:00:00Z")
	two := append(cfgWith("0 * * * *", nil, nil), Database{Name: "other", Storages: []string{"local"}, Schedule: "0 * * * *", Location: time.UTC})
	empty := Observation{{"app", "local"}: {}, {"other", "local"}: {}}
	// An empty storage: a backup is due, for each database ...
	p := MakePlan(two, empty, now, PlanOptions{})
	if p.Count(ActBackup) != 2 || p.Actions[0].Reason != "due: no backup yet" {
		t.Fatalf("empty storage: %+v", p.Actions)
	}
	// ... or only the one asked for.
	p = MakePlan(two, empty, now, PlanOptions{Database: "other"})
	if len(p.Actions) != 1 || p.Actions[0].Database != "other" {
		t.Fatalf("--db other: %+v", p.Actions)
	}
	// A listing that failed says why, and plans nothing.
	p = MakePlan(two, Observation{{"app", "local"}: {Err: fmt.Errorf("permission denied")}, {"other", "local"}: {}}, now, PlanOptions{})
	if len(p.Unobserved) != 1 || !strings.Contains(p.Warnings[0], "permission denied") || p.Actions[0].Database != "other" {
		t.Fatalf("unobserved: %+v", p)
	}
	// Leftovers: without a run timeout, only those older than 6 hours
	// are cleaned up (a younger one may be a write in progress); exactly
	// the age is not older.
	o := history(now.Add(-time.Minute))
	o.Leftovers = []sinks.Leftover{{Key: "app/.a.tmp-1", Started: now.Add(-7 * time.Hour)},
		{Key: "app/.b.tmp-2", Started: now.Add(-time.Hour)}, {Key: "app/.c.tmp-3", Started: now.Add(-DefaultCleanupAge)}}
	p = MakePlan(cfgWith("", nil, nil), Observation{{"app", "local"}: o}, now, PlanOptions{})
	if p.Count(ActCleanup) != 1 || p.Actions[0].Key != "app/.a.tmp-1" {
		t.Fatalf("cleanups without a run timeout: %+v", p.Actions)
	}
}

func TestObserveOnlyOneDatabase(t *testing.T) {
	root := t.TempDir()
	dbs := append(cfgWith("", nil, nil), Database{Name: "other", Storages: []string{"local"}, Location: time.UTC})
	obs := Observe(context.Background(), dbs, map[string]sinks.Sink{"local": sinks.NewLocal("local", root)}, "other")
	if len(obs) != 1 || obs[Slot{"other", "local"}] == nil {
		t.Fatalf("observed %v", obs)
	}
	if obs := Observe(context.Background(), dbs, map[string]sinks.Sink{"local": sinks.NewLocal("local", root)}, ""); len(obs) != 2 {
		t.Fatalf("observed %v", obs)
	}
}

// A database's due backups come first, storage by storage, then its
// prunes, storage by storage; a second database's after the first's.
func TestPlanOrderBackupsBeforePrunes(t *testing.T) {
	now := ts("2026-11-25T12:30:00Z")
	keepLast := &Retention{KeepLast: 1}
	cfg := []Database{
		{Name: "app", Storages: []string{"local", "s3"}, Schedule: "0 * * * *", Location: time.UTC, Retention: keepLast},
		{Name: "web", Storages: []string{"local"}, Schedule: "0 * * * *", Location: time.UTC, Retention: keepLast},
	}
	h := func(db string) *Observed {
		o := &Observed{}
		for i := 1; i <= 3; i++ {
			at := now.Add(-time.Duration(i) * time.Hour)
			o.Backups = append(o.Backups, repo.Backup{Name: format.Name{Database: db, Time: at}, Key: format.Key(db, at, format.Ext{Compression: format.None})})
		}
		return o
	}
	obs := Observation{{"app", "local"}: h("app"), {"app", "s3"}: h("app"), {"web", "local"}: h("web")}
	p := MakePlan(cfg, obs, now, PlanOptions{})
	var got []string
	for _, a := range p.Actions {
		got = append(got, fmt.Sprintf("%s %s:%s", a.Type, a.Database, a.Storage))
	}
	want := []string{
		"backup app:local", "backup app:s3",
		"prune app:local", "prune app:local", "prune app:local",
		"prune app:s3", "prune app:s3", "prune app:s3",
		"backup web:local", "prune web:local", "prune web:local", "prune web:local",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("actions in this order:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDrillPlanning: a drill of the slot's newest usable backup is due
// when the slot was never drilled or the drill schedule's next slot after
// the last drill (of any backup) has come; never without a schedule, a
// backup, or for a database that is gone; a drill dated in the future
// does not count.
func TestDrillPlanning(t *testing.T) {
	now := ts("2026-11-25T12:30:00Z")
	drilled := func(o *Observed, i int, at string) *Observed {
		o.Backups[i].Drills = append(o.Backups[i].Drills, format.DrillMark{Time: ts(at), OK: true})
		return o
	}
	cases := []struct {
		name     string
		schedule string // drill schedule; "-" = no drill configured
		gone     bool
		obs      *Observed
		want     string // key of the backup drilled, "" = none
		reason   string
	}{
		{"never drilled", "0 3 * * *", false, history(ts("2026-11-25T11:00:00Z"), ts("2026-11-25T10:00:00Z")), keyAt(ts("2026-11-25T11:00:00Z")), "never drilled"},
		{"drilled after today's slot", "0 3 * * *", false, drilled(history(ts("2026-11-25T11:00:00Z"), ts("2026-11-25T10:00:00Z")), 1, "2026-11-25T03:10:00Z"), "", ""},
		{"last drill before today's slot", "0 3 * * *", false, drilled(history(ts("2026-11-25T11:00:00Z"), ts("2026-11-25T10:00:00Z")), 1, "2026-11-24T03:10:00Z"), keyAt(ts("2026-11-25T11:00:00Z")), "slot 2026-11-25"},
		{"a future drill does not count", "0 3 * * *", false, drilled(history(ts("2026-11-25T11:00:00Z")), 0, "2026-11-26T03:10:00Z"), keyAt(ts("2026-11-25T11:00:00Z")), "never drilled"},
		{"a future backup is not drilled", "0 3 * * *", false, history(ts("2026-11-26T11:00:00Z"), ts("2026-11-25T11:00:00Z")), keyAt(ts("2026-11-25T11:00:00Z")), "never drilled"},
		{"on demand only", "", false, history(ts("2026-11-25T11:00:00Z")), "", ""},
		{"no drill configured", "-", false, history(ts("2026-11-25T11:00:00Z")), "", ""},
		{"no backup", "0 3 * * *", false, history(), "", ""},
		{"database gone", "0 3 * * *", true, history(ts("2026-11-25T11:00:00Z")), "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dbs := cfgWith("", nil, nil)
			if c.schedule != "-" {
				dbs[0].Drill = &Drill{Schedule: c.schedule}
			}
			dbs[0].Gone, dbs[0].Why = c.gone, "gone from the server"
			p := MakePlan(dbs, Observation{{"app", "local"}: c.obs}, now, PlanOptions{})
			var got []Action
			for _, a := range p.Actions {
				if a.Type == ActDrill {
					got = append(got, a)
				}
			}
			if c.want == "" {
				if len(got) != 0 {
					t.Fatalf("drill planned: %+v", got)
				}
				return
			}
			if len(got) != 1 || got[0].Key != c.want || got[0].Storage != "local" || got[0].Code != "drill_due" || !strings.Contains(got[0].Reason, c.reason) {
				t.Fatalf("drills %+v, want one of %s (%q)", got, c.want, c.reason)
			}
		})
	}
}
