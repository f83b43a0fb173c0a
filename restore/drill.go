package restore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/pg"
)

// Probe is one SQL check a drill runs in the restored database: it must
// return a single true.
type Probe struct {
	Name string
	SQL  string
}

// DrillOptions say where and how a backup is drilled.
type DrillOptions struct {
	// Server is where the scratch database is made (Database is ignored):
	// the drill server, or the source server.
	Server pg.Conn
	// Source is the database the backup is of: a drill never restores
	// into it.
	Source      pg.Conn
	Check       CheckOptions
	Manifest    *format.Manifest // nil: no row counts to compare
	Probes      []Probe
	MaxDuration time.Duration // 0: no bound
	Log         *slog.Logger
}

// ScratchPrefix starts the name of every scratch database a drill makes.
const ScratchPrefix = "backupkit_drill_"

// Drill restores src into a fresh scratch database, checks that every
// table of the manifest is there with its recorded row count and that
// every probe returns true, and always drops the scratch database. The
// result says what passed or failed; the error is for drills that could
// not run at all.
func Drill(ctx context.Context, src Source, o DrillOptions) format.DrillResult {
	start := time.Now()
	res := format.DrillResult{Version: 1, Key: src.Key, Time: start.UTC()}
	fail := func(check string, err error) format.DrillResult {
		res.OK, res.FailedCheck, res.Error = false, check, err.Error()
		res.DurationMS = time.Since(start).Milliseconds()
		return res
	}
	if o.MaxDuration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, o.MaxDuration, fmt.Errorf("the drill took longer than max_duration %s", o.MaxDuration))
		defer cancel()
	}
	scratch := o.Server
	scratch.Database = ScratchPrefix + randomHex(6)
	if scratch.Database == o.Source.Database && scratch.Host == o.Source.Host && scratch.Port == o.Source.Port {
		return fail("scratch database", errors.New("the scratch database would be the source database"))
	}
	t, err := pg.InspectTarget(ctx, scratch)
	if err != nil {
		return fail("scratch database", err)
	}
	if t.Exists {
		return fail("scratch database", fmt.Errorf("a database named %s already exists: refusing to drill into it", scratch.Database))
	}
	// The lock says this drill is alive; a sweep drops scratch databases
	// whose lock nobody holds (a killed drill's).
	maint := scratch
	maint.Database = "postgres"
	lock, ok, err := pg.TryLock(ctx, maint, "drill:"+scratch.Database)
	if err != nil || !ok {
		return fail("scratch database", fmt.Errorf("cannot take the drill's lock: %v", err))
	}
	defer lock.Release(context.WithoutCancel(ctx))
	defer pg.DropDatabase(context.WithoutCancel(ctx), scratch)

	restoreStart := time.Now()
	if _, err := Run(ctx, src, Options{Target: scratch, Check: o.Check, Log: o.Log}); err != nil {
		if c := context.Cause(ctx); c != nil {
			err = fmt.Errorf("%w (%w)", err, c)
		}
		return fail("restore", err)
	}
	res.RestoreMS = time.Since(restoreStart).Milliseconds()
	conn, err := pg.Connect(ctx, scratch)
	if err != nil {
		return fail("restore", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if o.Manifest != nil {
		if name, err := checkRows(ctx, conn, o.Manifest, &res); err != nil {
			return fail("rows of "+name, err)
		}
	}
	for _, p := range o.Probes {
		if err := probe(ctx, conn, p.SQL); err != nil {
			return fail(p.Name, err)
		}
	}
	res.OK = true
	res.DurationMS = time.Since(start).Milliseconds()
	return res
}

// checkRows compares every table of the manifest with the restored one.
func checkRows(ctx context.Context, conn *pgx.Conn, m *format.Manifest, res *format.DrillResult) (string, error) {
	names := make([]string, 0, len(m.Tables))
	for t := range m.Tables {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, name := range names {
		want := m.Tables[name]
		schema, table, _ := strings.Cut(name, ".")
		var got int64
		err := conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, table}.Sanitize()).Scan(&got)
		if err != nil {
			return name, fmt.Errorf("table %s of the manifest: %w", name, err)
		}
		if want >= 0 && got != want {
			return name, fmt.Errorf("table %s has %d rows, the manifest records %d", name, got, want)
		}
		res.Tables++
		res.Rows += got
	}
	return "", nil
}

// probe runs one check read-only; it must return a single true.
func probe(ctx context.Context, conn *pgx.Conn, sql string) error {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var ok bool
	if err := tx.QueryRow(ctx, sql).Scan(&ok); err != nil {
		return fmt.Errorf("the probe did not return one boolean: %w", err)
	}
	if !ok {
		return errors.New("the probe returned false")
	}
	return nil
}

// SweepScratch drops the drills' scratch databases and the restores'
// staging databases on server that no running drill or restore holds
// (what a killed one left). It returns the names dropped.
func SweepScratch(ctx context.Context, server pg.Conn) ([]string, error) {
	maint := server
	maint.Database = "postgres"
	var dropped []string
	for prefix, lockPrefix := range map[string]string{ScratchPrefix: "drill:", StagePrefix: "stage:"} {
		names, err := pg.DatabasesLike(ctx, maint, strings.ReplaceAll(prefix, "_", `\_`)+"%")
		if err != nil {
			return dropped, err
		}
		for _, name := range names {
			if !isScratchName(name, prefix) {
				continue // not a name this package makes
			}
			lock, ok, err := pg.TryLock(ctx, maint, lockPrefix+name)
			if err != nil || !ok {
				continue // a drill or restore is running there
			}
			c := server
			c.Database = name
			if err := pg.DropDatabase(ctx, c); err == nil {
				dropped = append(dropped, name)
			}
			lock.Release(context.WithoutCancel(ctx))
		}
	}
	return dropped, nil
}

// isScratchName reports whether name is prefix and the 12 lowercase hex
// digits randomHex(6) gives.
func isScratchName(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || len(rest) != 12 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil && strings.ToLower(rest) == rest
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
