package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/restore"
)

// drillServers serialises drills per drill server and remembers which
// servers were swept of a killed drill's scratch databases.
type drillServers struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
	swept map[string]bool
}

func (d *drillServers) lock(server string) *sync.Mutex {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.locks == nil {
		d.locks = map[string]*sync.Mutex{}
	}
	m := d.locks[server]
	if m == nil {
		m = &sync.Mutex{}
		d.locks[server] = m
	}
	return m
}

// drill runs one planned drill, stores its result beside the backup and
// reports it. A drill that fails is an outcome with an error; so is one
// that could not run.
func (r *Runner) drill(ctx context.Context, db *Database, a Action) Outcome {
	o := Outcome{Action: a}
	start := time.Now()
	if db.Drill == nil {
		o.Err = errors.New("no drill is configured for this database")
		return o
	}
	server := db.Drill.Server.Host + ":" + strconv.Itoa(db.Drill.Server.Port)
	m := r.drills.lock(server)
	m.Lock()
	defer m.Unlock()
	r.sweepDrills(ctx, db, server)
	s := r.Sinks[a.Storage]
	bs, err := repo.List(ctx, s, db.Name)
	if err != nil {
		o.Err = err
		return o
	}
	var b repo.Backup
	for _, x := range bs {
		if x.Key == a.Key {
			b = x
		}
	}
	if b.Key == "" {
		o.Err = fmt.Errorf("%s is no longer in %s", a.Key, a.Storage)
		return o
	}
	man, err := repo.ReadManifest(ctx, s, b.Key)
	if err != nil {
		r.Log.Warn("manifest unreadable; drilling without row counts", "database", db.Name, "key", b.Key, "err", err)
	}
	r.Log.Info("drill started", "database", db.Name, "storage", a.Storage, "key", b.Key)
	res := restore.Drill(ctx, restore.FromStorage(a.Storage, s, b.Key), restore.DrillOptions{Server: db.Drill.Server,
		Source: db.Conn, Check: db.Drill.Check, Manifest: man, Probes: db.Drill.Probes, MaxDuration: db.Drill.MaxDuration, Log: r.Log})
	o.Duration, o.Tables, o.Rows, o.Drill = time.Since(start), res.Tables, res.Rows, &res
	if err := repo.WriteDrill(context.WithoutCancel(ctx), s, b, res); err != nil {
		r.Log.Warn("drill result not stored", "database", db.Name, "storage", a.Storage, "err", err)
	}
	if !res.OK {
		o.Err = fmt.Errorf("drill failed at %s: %s", res.FailedCheck, res.Error)
	} else {
		r.Log.Info("drill passed", "database", db.Name, "storage", a.Storage, "key", b.Key, "tables", res.Tables, "rows", res.Rows,
			"restore", (time.Duration(res.RestoreMS) * time.Millisecond).String())
	}
	r.event(ctx, Event{Kind: EventDrill, Database: db.Name, Storage: a.Storage, Key: b.Key, Success: res.OK, Err: o.Err,
		Duration: o.Duration, Tables: res.Tables, Rows: res.Rows, Check: res.FailedCheck})
	return o
}

// sweepDrills drops, once per runner and server, the scratch databases a
// killed drill left behind.
func (r *Runner) sweepDrills(ctx context.Context, db *Database, server string) {
	r.drills.mu.Lock()
	done := r.drills.swept[server]
	if r.drills.swept == nil {
		r.drills.swept = map[string]bool{}
	}
	r.drills.swept[server] = true
	r.drills.mu.Unlock()
	if done {
		return
	}
	dropped, err := restore.SweepScratch(ctx, db.Drill.Server)
	if err != nil {
		r.Log.Warn("sweeping old drill databases failed", "server", server, "err", err)
	}
	for _, d := range dropped {
		r.Log.Info("dropped a scratch database left by a killed drill", "server", server, "database", d)
	}
}
