package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// progress shows bytes and rate of a stream on the terminal; call the
// returned function with each chunk's size, then -1 when done.
func (g *globals) progress(what string) func(int) {
	var n atomic.Int64
	start := time.Now()
	var once sync.Once
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				b := n.Load()
				rate := float64(b) / time.Since(start).Seconds()
				fmt.Fprintf(g.stderr, "\r\033[K%s: %s, %s/s", what, humanBytes(b), humanBytes(int64(rate)))
			case <-done:
				fmt.Fprint(g.stderr, "\r\033[K")
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
