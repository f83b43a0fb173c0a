package main

import (
	"fmt"
	"strings"
)

// line is one target: the limit and what the rounds measured.
type line struct {
	what, unit string
	limit      float64
	med        float64
	lo, hi     float64
}

// targets prints every performance target of the project with what this
// run measured: the median, the spread across rounds, and whether it is
// met. Ratios pair the rounds of two rows (they ran side by side).
func targets(table []*row) {
	find := func(name string) *row {
		for _, r := range table {
			if r.name == name && len(r.results) > 0 {
				return r
			}
		}
		return nil
	}
	wall := func(x result) float64 { return x.wall.Seconds() }
	size := func(x result) float64 { return float64(x.bytes) }
	rss := func(x result) float64 { return float64(x.rssKiB) / 1024 }
	var lines []line
	ratio := func(what, a, b string, f func(result) float64, limit float64) {
		ra, rb := find(a), find(b)
		if ra == nil || rb == nil {
			return
		}
		l := line{what: what, unit: "×", limit: limit, med: median(rb.results, f) / median(ra.results, f), lo: 1e9, hi: 0}
		for i := range min(len(ra.results), len(rb.results)) {
			v := f(rb.results[i]) / f(ra.results[i])
			l.lo, l.hi = min(l.lo, v), max(l.hi, v)
		}
		lines = append(lines, l)
	}
	abs := func(what, name string, f func(result) float64, unit string, limit float64) {
		r := find(name)
		if r == nil {
			return
		}
		l := line{what: what, unit: unit, limit: limit, med: median(r.results, f), lo: 1e18}
		for _, x := range r.results {
			l.lo, l.hi = min(l.lo, f(x)), max(l.hi, f(x))
		}
		lines = append(lines, l)
	}
	ratio("restore --jobs 2 wall / pg_restore -j 2", "pg_restore -j 2", "backupkit restore gzip+enc --jobs 2", wall, 1.05)
	ratio("  the same, zstd+enc backup", "pg_restore -j 2", "backupkit restore zstd+enc --jobs 2", wall, 1.05)
	ratio("restore wall / pg_restore", "pg_restore -d (plain -Fc file)", "backupkit restore gzip+enc", wall, 1.00)
	ratio("restore zstd+enc wall / pg_restore", "pg_restore -d (plain -Fc file)", "backupkit restore zstd+enc", wall, 1.00)
	abs("peak RSS, backup zstd+enc (local)", "backupkit backup zstd+enc (local)", rss, " MiB", 96)
	abs("peak RSS, backup gzip+enc (local)", "backupkit backup gzip+enc (local)", rss, " MiB", 96)
	abs("peak RSS, backup zstd+enc (S3)", "backupkit backup zstd+enc (S3)", rss, " MiB", 96)
	ratio("backup zstd+enc wall / pg_dump -Fc -Z0", "pg_dump -Fc -Z0 > file", "backupkit backup zstd+enc (local)", wall, 1.15)
	ratio("backup gzip+enc output / pg_dump -Fc", "pg_dump -Fc > file", "backupkit backup gzip+enc (local)", size, 1.05)
	ratio("backup gzip+enc wall / pg_dump -Fc", "pg_dump -Fc > file", "backupkit backup gzip+enc (local)", wall, 0.40)
	for _, r := range table {
		if r.group == "plan" {
			abs(r.name+" wall", r.name, wall, " s", 0.3)
			abs(r.name+" peak RSS", r.name, rss, " MiB", 100)
		}
	}
	fmt.Printf("\nTargets (median of the rounds; spread = lowest–highest round)\n\n")
	fmt.Printf("| %-44s | %10s | %19s | %8s | %-6s |\n", "target", "median", "spread", "limit", "")
	fmt.Printf("|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 46), strings.Repeat("-", 12), strings.Repeat("-", 21), strings.Repeat("-", 10), strings.Repeat("-", 8))
	for _, l := range lines {
		fmt.Println(l.row())
	}
}

// row renders one target. A median that rounds to the limit shows a
// third decimal, so a miss never reads as the limit itself (1.052×
// against ≤ 1.05×).
func (l line) row() string {
	verdict := "met"
	if l.med > l.limit {
		verdict = "MISSED"
	}
	f := func(v float64) string { return fmt.Sprintf("%.2f%s", v, l.unit) }
	med := f(l.med)
	if med == f(l.limit) && l.med != l.limit {
		med = fmt.Sprintf("%.3f%s", l.med, l.unit)
	}
	return fmt.Sprintf("| %-44s | %10s | %19s | %8s | %-6s |", l.what, med, f(l.lo)+" – "+f(l.hi), "≤ "+f(l.limit), verdict)
}
