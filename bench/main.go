// Command bench measures BackupKit against plain pg_dump/pg_restore on a
// reproducible dataset, side by side and alternating, and prints a table
// of medians: wall time, CPU, peak RSS, output size, ratio to pg_dump -Fc.
//
//	go run ./bench [-scale 50] [-rows 2000000] [-rounds 3] [-only backup,restore,plan]
package main

import (
	"flag"
	"fmt"
	"io/fs"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/procmem"
	"golang.org/x/sys/unix"
)

var (
	scale   = flag.Int("scale", 50, "pgbench scale factor")
	rows    = flag.Int("rows", 2000000, "rows of the prose-like text table")
	rounds  = flag.Int("rounds", 3, "alternating rounds (medians are reported)")
	only    = flag.String("only", "backup,restore,plan", "which groups to run")
	dbName  = flag.String("db", "", "benchmark database (default bk_bench_<scale>_<rows>)")
	binPath = flag.String("bin", "bin/backupkit", "backupkit binary")
	workDir = flag.String("dir", "", "work folder (default a temp folder; needs ~3 GB)")
	planN   = flag.Int("plan-backups", 100000, "stored backups for the plan benchmark")
)

// result is one measured run.
type result struct {
	wall, cpu time.Duration
	sys       time.Duration // the kernel's part of cpu
	rssKiB    int64         // peak RSS of the measured process (not its children)
	bytes     int64
}

type row struct {
	name    string
	group   string
	results []result
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

func main() {
	flag.Parse()
	log.SetFlags(log.Ltime)
	if os.Getenv("PGHOST") == "" {
		os.Setenv("PGHOST", "127.0.0.1")
	}
	if os.Getenv("PGUSER") == "" {
		os.Setenv("PGUSER", "postgres")
	}
	if *dbName == "" {
		*dbName = fmt.Sprintf("bk_bench_%d_%d", *scale, *rows)
	}
	bin, err := filepath.Abs(*binPath)
	must(err)
	if _, err := os.Stat(bin); err != nil {
		log.Fatalf("%s missing: run `make build` first", bin)
	}
	if err := readFromDisk(bin); err != nil {
		log.Printf("%s stays in the page cache as written: %v", bin, err)
	}
	dir := *workDir
	if dir == "" {
		dir, err = os.MkdirTemp("", "backupkit-bench")
		must(err)
		defer os.RemoveAll(dir)
	}
	groups := map[string]bool{}
	for _, g := range strings.Split(*only, ",") {
		groups[strings.TrimSpace(g)] = true
	}
	ensureDataset()
	s3 := startS3(dir)
	defer s3.stop()
	cfg := writeConfig(dir, s3)

	var rowsOut []*row
	add := func(name, group string) *row {
		r := &row{name: name, group: group}
		rowsOut = append(rowsOut, r)
		return r
	}
	ref := add("pg_dump -Fc > file", "backup")
	raw := add("pg_dump -Fc -Z0 > file", "backup")
	gz := add("backupkit backup gzip+enc (local)", "backup")
	gz7 := add("backupkit backup gzip level 7+enc (local)", "backup")
	zs := add("backupkit backup zstd+enc (local)", "backup")
	s3r := add("backupkit backup zstd+enc (S3)", "backup")
	pgr := add("pg_restore -d (plain -Fc file)", "restore")
	bkr := add("backupkit restore gzip+enc", "restore")
	bkn := add("backupkit restore gzip+enc --no-stage", "restore")
	ver := add("backupkit verify gzip+enc (the check pass)", "restore")
	bkz := add("backupkit restore zstd+enc", "restore")
	pgr2 := add("pg_restore -j 2", "restore")
	bkr2 := add("backupkit restore gzip+enc --jobs 2", "restore")
	bkz2 := add("backupkit restore zstd+enc --jobs 2", "restore")
	plan := add(fmt.Sprintf("backupkit plan (%d backups, one due)", *planN), "plan")

	plainFile := filepath.Join(dir, "plain.dump")
	if groups["backup"] || groups["restore"] {
		for i := 0; i < *rounds; i++ {
			log.Printf("backup round %d/%d", i+1, *rounds)
			// Alternate the order each round so drift hits all rows alike.
			steps := []func(){
				func() {
					ref.results = append(ref.results, shellRun("pg_dump -Fc -d "+*dbName+" > "+plainFile, plainFile))
				},
				func() {
					f := filepath.Join(dir, "raw.dump")
					raw.results = append(raw.results, shellRun("pg_dump -Fc -Z0 -d "+*dbName+" > "+f, f))
					os.Remove(f)
				},
				func() { gz.results = append(gz.results, bkBackup(bin, cfg, "gz", filepath.Join(dir, "store"))) },
				func() { gz7.results = append(gz7.results, bkBackup(bin, cfg, "gz7", filepath.Join(dir, "store"))) },
				func() { zs.results = append(zs.results, bkBackup(bin, cfg, "zs", filepath.Join(dir, "store"))) },
				func() { s3r.results = append(s3r.results, bkBackup(bin, cfg, "s3", filepath.Join(s3.dir, "bench"))) },
			}
			if i%2 == 1 {
				for l, r := 0, len(steps)-1; l < r; l, r = l+1, r-1 {
					steps[l], steps[r] = steps[r], steps[l]
				}
			}
			for _, s := range steps {
				s()
			}
		}
	}
	if groups["restore"] {
		target := *dbName + "_restore"
		// Each step starts on a clean server: the target dropped and a
		// checkpoint taken, so none pays for writing out the pages and WAL
		// the one before it left (without it the one-job restore's ratio
		// spread over 0.78-1.06× in one run).
		fresh := func() {
			dropdb(target)
			psql("postgres", "CHECKPOINT")
		}
		for i := 0; i < *rounds; i++ {
			log.Printf("restore round %d/%d", i+1, *rounds)
			steps := []func(){
				func() {
					pgr.results = append(pgr.results, shellRun("createdb "+target+" && pg_restore --exit-on-error -d "+target+" "+plainFile, ""))
				},
				func() {
					bkr.results = append(bkr.results, run(bin, "", "restore", "-c", cfg, "--db", "gz", "--from", "latest", "--to-database", target))
				},
				func() {
					bkn.results = append(bkn.results, run(bin, "", "restore", "-c", cfg, "--db", "gz", "--from", "latest", "--to-database", target, "--no-stage"))
				},
				func() {
					ver.results = append(ver.results, run(bin, "", "verify", "-c", cfg, "--db", "gz", "--from", "latest"))
				},
				func() {
					bkz.results = append(bkz.results, run(bin, "", "restore", "-c", cfg, "--db", "zs", "--from", "latest", "--to-database", target))
				},
				func() {
					pgr2.results = append(pgr2.results, shellRun("createdb "+target+" && pg_restore --exit-on-error -j 2 -d "+target+" "+plainFile, ""))
				},
				func() {
					bkr2.results = append(bkr2.results, run(bin, "", "restore", "-c", cfg, "--db", "gz", "--from", "latest", "--to-database", target, "--jobs", "2"))
				},
				func() {
					bkz2.results = append(bkz2.results, run(bin, "", "restore", "-c", cfg, "--db", "zs", "--from", "latest", "--to-database", target, "--jobs", "2"))
				},
			}
			if i%2 == 1 {
				for l, r := 0, len(steps)-1; l < r; l, r = l+1, r-1 {
					steps[l], steps[r] = steps[r], steps[l]
				}
			}
			for _, s := range steps {
				fresh()
				s()
			}
		}
		dropdb(target)
	}
	if groups["plan"] {
		pcfg, at := planFixture(dir)
		for i := 0; i < *rounds; i++ {
			plan.results = append(plan.results, run(bin, "", "plan", "-c", pcfg, "-o", "json", "--at", at))
		}
	}
	report(rowsOut, ref)
	targets(rowsOut)
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func psql(db, sql string) string {
	out, err := exec.Command("psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql).CombinedOutput()
	if err != nil {
		log.Fatalf("psql: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func dropdb(name string) { exec.Command("dropdb", "--if-exists", "--force", name).Run() }

// ensureDataset creates pgbench tables and a deterministic prose-like
// text table, once per (scale, rows).
func ensureDataset() {
	exists := psql("postgres", "SELECT count(*) FROM pg_database WHERE datname = '"+*dbName+"'")
	if exists == "1" && psql(*dbName, "SELECT coalesce(obj_description(to_regclass('prose')), '')") == "complete" {
		log.Printf("dataset %s is ready (%s)", *dbName, psql(*dbName, "SELECT pg_size_pretty(pg_database_size(current_database()))"))
		return
	}
	log.Printf("creating dataset %s: pgbench scale %d + %d prose rows", *dbName, *scale, *rows)
	dropdb(*dbName)
	must(exec.Command("createdb", *dbName).Run())
	out, err := exec.Command("pgbench", "-i", "-q", "-s", strconv.Itoa(*scale), *dbName).CombinedOutput()
	if err != nil {
		log.Fatalf("pgbench: %v: %s", err, out)
	}
	// Deterministic prose: words picked by a hash of the row and position.
	psql(*dbName, fmt.Sprintf(`
CREATE TABLE prose (id bigint PRIMARY KEY, title text, body text);
INSERT INTO prose
SELECT g,
  initcap(w[1 + (hashint4(g) & 1023) %% array_length(w,1)]) || ' ' || w[1 + (hashint4(g+7) & 1023) %% array_length(w,1)],
  (SELECT string_agg(w[1 + (hashint4(g*31+k) & 1023) %% array_length(w,1)], ' ')
     FROM generate_series(1, 40 + (g %% 30)) k)
FROM generate_series(1, %d) g
  CROSS JOIN (SELECT string_to_array('the of and to in is was that for it with as his on be at by had are but from or have an they which one you were her all she there would their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three himself few house use during without again place american around however home small found mrs thought went say part once general high upon school every', ' ') AS w) words;
COMMENT ON TABLE prose IS 'complete';
ANALYZE;`, *rows))
	log.Printf("dataset ready: %s", psql(*dbName, "SELECT pg_size_pretty(pg_database_size(current_database()))"))
}

type s3srv struct {
	cmd        *exec.Cmd
	dir, addr  string
	access, sk string
}

func (s *s3srv) stop() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

func startS3(dir string) *s3srv {
	s := &s3srv{dir: filepath.Join(dir, "s3"), access: "benchaccess", sk: "benchsecret"}
	os.MkdirAll(filepath.Join(s.dir, "bench"), 0o755)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	s.addr = l.Addr().String()
	l.Close()
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		bin = ".tools/versitygw"
	}
	s.cmd = exec.Command(bin, "--access", s.access, "--secret", s.sk, "--port", s.addr, "posix", s.dir)
	must(s.cmd.Start())
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Fatal("versitygw did not start")
	return nil
}

func writeConfig(dir string, s3 *s3srv) string {
	cfg := fmt.Sprintf(`version: 1
storage:
  - name: local
    type: local
    local: {path: %s}
  - name: s3
    type: s3
    s3: {bucket: bench, region: us-east-1, endpoint: "http://%s", force_path_style: true, access_key: %s, secret_key: %s}
databases:
  - name: gz
    type: postgres
    connection: {host: 127.0.0.1, database: %s, user: postgres}
    backup: {storage: local, compression: gzip, encryption: {enabled: true, password: bench-password}}
  - name: gz7
    type: postgres
    connection: {host: 127.0.0.1, database: %s, user: postgres}
    backup: {storage: local, compression: gzip, compression_level: 7, encryption: {enabled: true, password: bench-password}}
  - name: zs
    type: postgres
    connection: {host: 127.0.0.1, database: %s, user: postgres}
    backup: {storage: local, compression: zstd, encryption: {enabled: true, password: bench-password}}
  - name: s3
    type: postgres
    connection: {host: 127.0.0.1, database: %s, user: postgres}
    backup: {storage: s3, compression: zstd, encryption: {enabled: true, password: bench-password}}
`, filepath.Join(dir, "store"), s3.addr, s3.access, s3.sk, *dbName, *dbName, *dbName, *dbName)
	p := filepath.Join(dir, "bench.yaml")
	must(os.WriteFile(p, []byte(cfg), 0o600))
	return p
}

// bkBackup runs one backup and reports the size of the newest file; older
// backups of the same database are removed first (so disk use stays flat,
// and restore reads the newest).
func bkBackup(bin, cfg, db, root string) result {
	dbDir := filepath.Join(root, db)
	entries, _ := os.ReadDir(dbDir)
	for _, e := range entries {
		os.Remove(filepath.Join(dbDir, e.Name()))
	}
	r := run(bin, "", "backup", "-c", cfg, "--db", db)
	entries, _ = os.ReadDir(dbDir)
	for _, e := range entries {
		if _, ok := format.ParseKey(db + "/" + e.Name()); ok {
			if fi, err := e.Info(); err == nil {
				r.bytes = fi.Size()
			}
		}
	}
	return r
}

func shellRun(script, outFile string) result {
	r := run("sh", outFile, "-c", script)
	return r
}

// run times a command; peak RSS is the process's own VmHWM, polled.
func run(bin, outFile string, args ...string) result {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	start := time.Now()
	must(cmd.Start())
	stop := procmem.Watch(cmd.Process.Pid, 20*time.Millisecond)
	err := cmd.Wait()
	wall := time.Since(start)
	hwm := stop()
	if err != nil {
		log.Fatalf("%s %v: %v", bin, args, err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r := result{wall: wall, cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), sys: time.Duration(ru.Stime.Nano()), rssKiB: hwm}
	if bin == "sh" {
		// The largest process of the pipeline, or this benchmark's own
		// peak if larger (ru_maxrss starts from the parent's; see
		// procmem): it stays far below the commands measured here.
		r.rssKiB = ru.Maxrss
	}
	if outFile != "" {
		if fi, err := os.Stat(outFile); err == nil {
			r.bytes = fi.Size()
		}
	}
	return r
}

// planFixture writes (once) a storage of *planN backups a minute apart
// and its config. It returns the config and the time to plan at: an
// hour after the newest backup, so a backup is due and every prune is
// weighed with and without it (the costlier plan, and the same one
// whenever the fixture was made).
func planFixture(dir string) (string, string) {
	root := filepath.Join(dir, "planstore")
	db := filepath.Join(root, "app")
	must(os.MkdirAll(db, 0o700))
	t := time.Now().UTC().Add(-time.Duration(*planN) * time.Minute)
	n := 0
	filepath.WalkDir(db, func(string, fs.DirEntry, error) error { n++; return nil })
	if n < *planN {
		for i := 0; i < *planN; i++ {
			name := t.Add(time.Duration(i)*time.Minute).Format("20060102_150405.000000000Z") + ".dump.zst"
			f, err := os.OpenFile(filepath.Join(db, name), os.O_CREATE|os.O_WRONLY, 0o600)
			must(err)
			f.Close()
		}
	}
	cfg := fmt.Sprintf(`version: 1
storage: [{name: local, type: local, local: {path: %s}}]
databases:
  - name: app
    type: postgres
    connection: {host: 127.0.0.1, database: postgres, user: postgres}
    backup: {schedule: "0 * * * *", storage: local}
    retention: {keep_daily: 7, keep_weekly: 4, keep_monthly: 12}
`, root)
	p := filepath.Join(dir, "plan.yaml")
	must(os.WriteFile(p, []byte(cfg), 0o600))
	entries, err := os.ReadDir(db)
	must(err)
	newest := entries[len(entries)-1].Name() // ReadDir sorts by name, and names by time
	nt, err := time.Parse("20060102_150405.000000000Z", strings.TrimSuffix(newest, ".dump.zst"))
	must(err)
	return p, nt.Add(time.Hour).Format(time.RFC3339)
}

func report(table []*row, ref *row) {
	refWall := 0.0
	refBytes := 0.0
	if len(ref.results) > 0 {
		refWall = median(ref.results, func(r result) float64 { return r.wall.Seconds() })
		refBytes = median(ref.results, func(r result) float64 { return float64(r.bytes) })
	}
	fmt.Printf("\nBackupKit benchmark: database %s (pgbench scale %d + %d prose rows), medians of %d alternating rounds\n\n", *dbName, *scale, *rows, *rounds)
	// sys, the kernel's part of cpu, shows where the machine's page cache
	// or pipes cost more in one run than another (the references too).
	fmt.Printf("| %-40s | %9s | %9s | %9s | %10s | %12s | %10s | %11s |\n", "command", "wall", "cpu", "of it sys", "peak RSS", "output", "wall ratio", "size ratio")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 42), strings.Repeat("-", 11), strings.Repeat("-", 11), strings.Repeat("-", 11), strings.Repeat("-", 12), strings.Repeat("-", 14), strings.Repeat("-", 12), strings.Repeat("-", 13))
	for _, r := range table {
		if len(r.results) == 0 {
			continue
		}
		wall := median(r.results, func(x result) float64 { return x.wall.Seconds() })
		cpu := median(r.results, func(x result) float64 { return x.cpu.Seconds() })
		sys := median(r.results, func(x result) float64 { return x.sys.Seconds() })
		rss := median(r.results, func(x result) float64 { return float64(x.rssKiB) / 1024 })
		size := median(r.results, func(x result) float64 { return float64(x.bytes) })
		ratio, sratio := "", ""
		if r.group == "backup" && refWall > 0 {
			ratio = fmt.Sprintf("%.2f", wall/refWall)
			if size > 0 && refBytes > 0 {
				sratio = fmt.Sprintf("%.2f", size/refBytes)
			}
		}
		out := ""
		if size > 0 {
			out = fmt.Sprintf("%.1f MiB", size/(1<<20))
		}
		fmt.Printf("| %-40s | %8.2fs | %8.2fs | %8.2fs | %6.1f MiB | %12s | %10s | %11s |\n", r.name, wall, cpu, sys, rss, out, ratio, sratio)
	}
	pair := func(a, b string) {
		var ra, rb *row
		for _, r := range table {
			if r.name == a {
				ra = r
			}
			if r.name == b {
				rb = r
			}
		}
		if ra == nil || rb == nil || len(ra.results) == 0 || len(rb.results) == 0 {
			return
		}
		wa := median(ra.results, func(x result) float64 { return x.wall.Seconds() })
		wb := median(rb.results, func(x result) float64 { return x.wall.Seconds() })
		fmt.Printf("%s / %s = %.2f\n", b, a, wb/wa)
	}
	fmt.Println()
	pair("pg_dump -Fc -Z0 > file", "backupkit backup zstd+enc (local)")
	pair("pg_restore -d (plain -Fc file)", "backupkit restore gzip+enc")
	pair("pg_restore -d (plain -Fc file)", "backupkit restore gzip+enc --no-stage")
	pair("pg_restore -d (plain -Fc file)", "backupkit restore zstd+enc")
	pair("pg_restore -d (plain -Fc file)", "backupkit verify gzip+enc (the check pass)")
	pair("pg_restore -j 2", "backupkit restore gzip+enc --jobs 2")
	pair("pg_restore -j 2", "backupkit restore zstd+enc --jobs 2")
}

// readFromDisk drops a file's pages from the page cache, so the runs map
// the binary as read back from disk, as a deployed one is, and not in
// the large pages the linker's big writes left there (Linux 6.18 here):
// peak RSS counts the binary's mapped pages, and the same bytes measured
// 90.4 MiB read from disk, 102.5 MiB written in 64 MiB pieces, the
// process's own memory (RssAnon) 69.6 MiB in both.
func readFromDisk(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
