package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/backupkit/backupkit/pg"
	"github.com/backupkit/backupkit/reconcile"
)

// progress reports a long stream: on a terminal a bar with the total
// (when known, total > 0) and an ETA; otherwise a log line every
// --progress-interval, so a sidecar's or CI's log shows a long dump is
// alive. Call the returned function with each chunk's size, then -1.
func (g *globals) progress(what string, total int64) func(int) {
	if g.quiet {
		return nil
	}
	if isTerminal(g.stderr) {
		bar := progressbar.NewOptions64(max(total, -1),
			progressbar.OptionSetWriter(g.stderr), progressbar.OptionSetDescription(what),
			progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(total > 0),
			progressbar.OptionThrottle(250*time.Millisecond), progressbar.OptionClearOnFinish(),
			progressbar.OptionEnableColorCodes(g.color()), progressbar.OptionFullWidth())
		var once sync.Once
		return func(k int) {
			if k < 0 {
				once.Do(func() { bar.Finish() })
				return
			}
			bar.Add(k)
		}
	}
	var n atomic.Int64
	start := time.Now()
	done := make(chan struct{})
	var once sync.Once
	go func() {
		t := time.NewTicker(g.progressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				b, el := n.Load(), time.Since(start)
				args := []any{"what", what, "bytes", b, "rate", humanBytes(int64(float64(b)/el.Seconds())) + "/s", "elapsed", el.Round(time.Second).String()}
				if total > 0 {
					args = append(args, "of_about", total)
				}
				g.log.Info("progress", args...)
			case <-done:
				return
			}
		}
	}()
	return func(k int) {
		if k < 0 {
			once.Do(func() { close(done) })
			return
		}
		n.Add(int64(k))
	}
}

// backupProgress is the runner's progress hook: the database's size is
// the estimate of what pg_dump will write.
func (g *globals) backupProgress(db *reconcile.Database) func(int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	size, _ := pg.DatabaseSize(ctx, db.Conn)
	return g.progress("backup "+db.Name, size)
}
