package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/backupkit/backupkit/alerting"
	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/pg"
	"github.com/backupkit/backupkit/reconcile"
	"github.com/backupkit/backupkit/restore"
	"github.com/backupkit/backupkit/schema"
	"github.com/backupkit/backupkit/sinks"
)

// app is what commands share once the config is loaded: the config and
// the typed inputs built from it for each package (the only place that
// turns schema types into reconcile, restore, alerting and sinks ones).
type app struct {
	cfg    *schema.Config
	dbs    []reconcile.Database
	stores map[string]sinks.Sink
}

func (g *globals) loadConfig() (*schema.Config, error) {
	if g.configPath == "" {
		g.configPath = os.Getenv("BACKUPKIT_CONFIG")
	}
	if g.configPath == "" {
		if _, err := os.Stat("backupkit.yaml"); err == nil {
			g.configPath = "backupkit.yaml"
		}
	}
	if g.configPath == "" {
		return nil, usagef("no config file: pass -c/--config FILE, set BACKUPKIT_CONFIG, or write ./backupkit.yaml (backupkit init)")
	}
	cfg, err := schema.Load(g.configPath)
	// Evaluating the CUE schema leaves megabytes of garbage; hand it back
	// before a pipeline starts, so peak memory is the pipeline's buffers.
	debug.FreeOSMemory()
	g.cfg = cfg
	return cfg, err
}

// open loads the config and builds the storages; db, when set, must name
// a configured database.
func (g *globals) open(ctx context.Context, db string) (*app, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	if db != "" && lookup(cfg, db) == nil {
		return nil, usagef("--db %s: no such database in %s", db, cfg.File)
	}
	stores, err := openSinks(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &app{cfg: cfg, dbs: databasesOf(cfg), stores: stores}, nil
}

func databasesOf(cfg *schema.Config) []reconcile.Database {
	out := make([]reconcile.Database, len(cfg.Databases))
	for i := range cfg.Databases {
		d := &cfg.Databases[i]
		out[i] = reconcile.Database{Name: d.Name, Storages: d.Backup.Storage, Schedule: d.Backup.Schedule,
			Location: d.Backup.Location, AlertAfter: d.Backup.AlertAfter, Conn: connOf(d.Connection), Backup: backupOptions(d)}
		out[i].Backup.Dump.BinDir = cfg.PgBinDir
		if dr := d.Drill; dr != nil {
			out[i].Drill = drillOf(cfg, d, dr)
		}
		if dc := d.Discover; dc != nil {
			out[i].Discover = &reconcile.Discover{Include: dc.Include, Exclude: dc.Exclude}
			out[i].Globals = d.Globals
		}
		if r := d.Retention; r != nil {
			out[i].Retention = &reconcile.Retention{KeepLast: r.KeepLast, KeepHourly: r.KeepHourly, KeepDaily: r.KeepDaily,
				KeepWeekly: r.KeepWeekly, KeepMonthly: r.KeepMonthly, KeepYearly: r.KeepYearly}
		}
	}
	return out
}

// drillOf is a database's drill: its own server, or the source server.
func drillOf(cfg *schema.Config, d *schema.Database, dr *schema.Drill) *reconcile.Drill {
	out := &reconcile.Drill{Schedule: dr.Schedule, Server: connOf(d.Connection), MaxDuration: dr.MaxDuration, Check: checkOptions(cfg, d)}
	if dr.Connection != nil {
		out.Server = connOf(*dr.Connection)
	}
	for _, p := range dr.Checks {
		out.Probes = append(out.Probes, restore.Probe{Name: p.Name, SQL: p.SQL})
	}
	return out
}

func connOf(c schema.Connection) pg.Conn {
	return pg.Conn{Host: c.Host, Port: c.Port, Database: c.Database, User: c.User, Password: c.Password.Reveal(), SSLMode: c.SSLMode,
		SSLRootCert: c.SSLRootCert, SSLCert: c.SSLCert, SSLKey: c.SSLKey}
}

func backupOptions(d *schema.Database) exec.BackupOptions {
	o := exec.BackupOptions{Dump: exec.DumpOptions{Conn: connOf(d.Connection), LockWaitTimeout: d.Backup.LockWait},
		Compression: format.Compression(d.Backup.Compression), Level: d.Backup.CompressionLevel}
	if e := d.Backup.Encryption; d.Backup.Encrypted() {
		o.Password = e.Password.Reveal()
		o.Recipients = e.AgeRecipients
	}
	return o
}

// openSinks builds every configured storage; none is contacted.
func openSinks(ctx context.Context, cfg *schema.Config) (map[string]sinks.Sink, error) {
	out := map[string]sinks.Sink{}
	for _, s := range cfg.Storage {
		switch s.Type {
		case "local":
			out[s.Name] = sinks.NewLocal(s.Name, s.Local.Path)
		case "s3":
			c := s.S3
			sk, err := sinks.NewS3(ctx, s.Name, sinks.S3Options{
				Bucket: c.Bucket, Region: c.Region, Prefix: c.Prefix, Endpoint: c.Endpoint,
				ForcePathStyle: c.ForcePathStyle, StorageClass: c.StorageClass, Checksum: c.Checksum,
				AccessKey: c.AccessKey.Reveal(), SecretKey: c.SecretKey.Reveal(),
				PartSize: int64(c.PartSizeMiB) << 20, Concurrency: c.Concurrency, MaxParts: c.MaxParts, CreateBucket: c.CreateBucket,
			})
			if err != nil {
				return nil, fmt.Errorf("storage %s: %w", s.Name, err)
			}
			out[s.Name] = sk
		}
	}
	return out, nil
}

func routesOf(cfg *schema.Config) []alerting.Route {
	var out []alerting.Route
	for _, n := range cfg.Notifications {
		c := n.Config
		out = append(out, alerting.Route{Type: n.Type, On: n.On, URL: c.URL, Headers: c.Headers, Slack: c.Format == "slack",
			SMTPHost: c.SMTPHost, SMTPPort: c.SMTPPort, From: c.From, To: c.Recipients(), Username: c.Username,
			Password: c.Password, TLS: c.TLS, MaxAttempts: c.MaxAttempts, MaxWait: c.MaxWait})
	}
	return out
}

// pickDatabase is the database a restore or verify works on: --db, or
// the only one configured.
func (a *app) pickDatabase(name string) (*schema.Database, error) {
	if name == "" {
		if len(a.cfg.Databases) > 1 {
			return nil, usagef("--db is required: %s configures %d databases", a.cfg.File, len(a.cfg.Databases))
		}
		name = a.cfg.Databases[0].Name
	}
	db := lookup(a.cfg, name)
	if db == nil {
		return nil, usagef("--db %s: no such database in %s", name, a.cfg.File)
	}
	if db.Discover != nil {
		return nil, usagef("--db %s is a whole server: name one of its databases, %s.DATABASE (backupkit list --db %s shows them)", name, name, name)
	}
	return db, nil
}

// storagesOf is where restore looks for a database's backups.
func (a *app) storagesOf(db *schema.Database) restore.Storages {
	return restore.Storages{Database: db.Name, Names: db.Backup.Storage, Sinks: a.stores}
}

// checkOptions is what a backup of db must look like, and where the
// client tools are.
func checkOptions(cfg *schema.Config, db *schema.Database) restore.CheckOptions {
	o := restore.CheckOptions{Encrypted: db.Backup.Encrypted(), Compression: format.Compression(db.Backup.Compression), BinDir: cfg.PgBinDir,
		Encryption: format.Enc}
	if e := db.Backup.Encryption; e != nil {
		o.Keys.Password = e.Password.Reveal()
		if e.Age() {
			o.Encryption = format.Age
		}
		if e.IdentityFile != "" {
			// Read where it is needed; a problem shows when a backup needs it.
			if b, err := os.ReadFile(e.IdentityFile); err == nil {
				o.Keys.Identities, o.IdentityErr = format.ParseIdentities(b)
			} else {
				o.IdentityErr = fmt.Errorf("cannot read identity file %s: %v", e.IdentityFile, errText(err))
			}
		}
	}
	return o
}

func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func (g *globals) runner(a *app, parallel int, timeout time.Duration, obs reconcile.Observer) *reconcile.Runner {
	r := &reconcile.Runner{Databases: a.dbs, Sinks: a.stores, Log: g.log, Parallel: parallel, RunTimeout: timeout,
		Locker: &reconcile.AdvisoryLocker{}, Observer: obs, Version: versionString()}
	if !g.quiet {
		r.Progress = g.backupProgress
	}
	return r
}

// source loads the config and resolves --from for --db (restore,
// verify); before, when set, runs first on the chosen database.
func (g *globals) source(ctx context.Context, dbName, from string, before func(*schema.Database) error) (*schema.Database, restore.Source, error) {
	if from == "" {
		return nil, restore.Source{}, usagef("--from is required: a file, STORAGE:KEY, or latest")
	}
	a, err := g.open(ctx, "")
	if err != nil {
		return nil, restore.Source{}, err
	}
	db, err := a.pickDatabase(dbName)
	if err != nil {
		return nil, restore.Source{}, err
	}
	if before != nil {
		if err := before(db); err != nil {
			return nil, restore.Source{}, err
		}
	}
	src, err := restore.Resolve(ctx, a.storagesOf(db), from, time.Now())
	if errors.Is(err, restore.ErrBadSource) {
		err = usageError{err}
	}
	return db, src, err
}
