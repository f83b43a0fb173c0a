package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/backupkit/backupkit/sinks"
)

// Target is one storage a fan-out writes to.
type Target struct {
	Sink sinks.Sink
	Key  string
}

// Result is one target's outcome.
type Result struct {
	Target
	Written
	Err      error
	Duration time.Duration
}

// FanOut runs produce once and writes what it writes to every target at
// the same time. A target that fails loses only its own copy; the others
// go on. When produce fails, every target is aborted.
func FanOut(ctx context.Context, targets []Target, produce func(w io.Writer) error) ([]Result, error) {
	results := make([]Result, len(targets))
	pipes := make([]*io.PipeWriter, len(targets))
	var wg sync.WaitGroup
	start := time.Now()
	for i, t := range targets {
		pr, pw := io.Pipe()
		pipes[i] = pw
		results[i].Target = t
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := Write(ctx, t.Sink, t.Key, pr)
			results[i].Written, results[i].Err = w, err
			results[i].Duration = time.Since(start)
			// Unblock the producer if this target stopped early.
			pr.CloseWithError(errTargetGone(err))
		}()
	}
	fw := &fanWriter{pipes: pipes, dead: make([]bool, len(pipes))}
	perr := produce(fw)
	for _, pw := range pipes {
		if perr != nil {
			pw.CloseWithError(perr)
		} else {
			pw.Close()
		}
	}
	wg.Wait()
	if errors.Is(perr, errAllTargetsFailed) {
		// Say why each storage failed, not just that they all did.
		var errs []error
		for _, r := range results {
			if r.Err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.Sink.Name(), r.Err))
			}
		}
		perr = fmt.Errorf("every storage failed: %w", errors.Join(errs...))
	}
	if perr != nil {
		for i := range results {
			if results[i].Err == nil {
				// Cannot happen: a producer error aborts every Put.
				results[i].Err = fmt.Errorf("written although the dump failed: %w", perr)
			}
		}
	}
	return results, perr
}

func errTargetGone(err error) error {
	if err == nil {
		return errors.New("target finished early")
	}
	return err
}

// fanWriter writes each buffer to every live pipe concurrently.
type fanWriter struct {
	pipes []*io.PipeWriter
	dead  []bool
	errs  []error
}

func (f *fanWriter) Write(p []byte) (int, error) {
	live := 0
	if len(f.pipes) == 1 {
		if !f.dead[0] {
			if _, err := f.pipes[0].Write(p); err != nil {
				f.dead[0] = true
			} else {
				live++
			}
		}
	} else {
		var wg sync.WaitGroup
		for i, pw := range f.pipes {
			if f.dead[i] {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := pw.Write(p); err != nil {
					f.dead[i] = true
				}
			}()
		}
		wg.Wait()
		for _, d := range f.dead {
			if !d {
				live++
			}
		}
	}
	if live == 0 {
		return 0, errAllTargetsFailed
	}
	return len(p), nil
}

var errAllTargetsFailed = errors.New("every storage failed")
