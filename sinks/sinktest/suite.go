// Package sinktest is the conformance suite every storage backend passes:
// put, list, open, delete, a failed or cancelled write leaves nothing
// visible and no leftover, a write in progress is a leftover that Cleanup
// removes, listing past 1,000 keys.
package sinktest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/backupkit/backupkit/sinks"
)

// Options tune the suite for a backend.
type Options struct {
	// LargeSize is a payload size that needs several parts/chunks.
	LargeSize int
	// ManyKeys is how many keys the pagination test writes (> 1000).
	ManyKeys int
}

// Run runs the suite; newSink returns an empty sink for each subtest.
func Run(t *testing.T, newSink func(t *testing.T) sinks.Sink, o Options) {
	if o.LargeSize == 0 {
		o.LargeSize = 12 << 20
	}
	if o.ManyKeys == 0 {
		o.ManyKeys = 1100
	}
	ctx := context.Background()
	key := "app_db/20261125_020000.000000007Z.dump.gz"

	t.Run("PutOpenRoundTrip", func(t *testing.T) {
		s := newSink(t)
		for _, size := range []int{0, 1, 1000, o.LargeSize} {
			data := random(size)
			k := fmt.Sprintf("rt/%d.bin", size)
			n, err := s.Put(ctx, k, bytes.NewReader(data))
			if err != nil {
				t.Fatalf("put %d bytes: %v", size, err)
			}
			if n != int64(size) {
				t.Fatalf("put returned %d, want %d", n, size)
			}
			if got := read(t, s, k); !bytes.Equal(got, data) {
				t.Fatalf("size %d: read back %d bytes that differ", size, len(got))
			}
		}
	})

	t.Run("ListSizesAndPrefix", func(t *testing.T) {
		s := newSink(t)
		put(t, s, "a/1.bin", 10)
		put(t, s, "a/2.bin", 20)
		put(t, s, "b/1.bin", 30)
		objs, err := s.List(ctx, "a/")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		for _, ob := range objs {
			got[ob.Key] = ob.Size
		}
		want := map[string]int64{"a/1.bin": 10, "a/2.bin": 20}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("list a/ = %v, want %v", got, want)
		}
		all, _ := s.List(ctx, "")
		if len(all) != 3 {
			t.Fatalf("list all: %d objects, want 3", len(all))
		}
	})

	t.Run("OpenMissing", func(t *testing.T) {
		s := newSink(t)
		_, err := s.Open(ctx, "nope/x.bin")
		if !errors.Is(err, sinks.ErrNotFound) {
			t.Fatalf("open missing: %v, want ErrNotFound", err)
		}
	})

	t.Run("PinReadsOneVersion", func(t *testing.T) {
		s := newSink(t)
		first := random(3000)
		if _, err := s.Put(ctx, key, bytes.NewReader(first)); err != nil {
			t.Fatal(err)
		}
		p, err := s.Pin(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if p.Size() != 3000 {
			t.Fatalf("pinned size %d", p.Size())
		}
		for i := 0; i < 2; i++ {
			if got := readAll(t, p); !bytes.Equal(got, first) {
				t.Fatalf("reader %d of a pinned object differs", i)
			}
		}
		// Swap the object: a pinned reader returns the old bytes or fails,
		// never the new ones.
		if _, err := s.Put(ctx, key, bytes.NewReader(random(3000))); err != nil {
			t.Fatal(err)
		}
		rc, err := p.Open(ctx)
		if err == nil {
			got, rerr := io.ReadAll(rc)
			rc.Close()
			if rerr == nil && !bytes.Equal(got, first) {
				t.Fatal("a pinned reader returned the swapped object's bytes")
			}
		}
		if _, err := s.Pin(ctx, "nope/x.bin"); !errors.Is(err, sinks.ErrNotFound) {
			t.Fatalf("pin missing: %v, want ErrNotFound", err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		s := newSink(t)
		put(t, s, "d/1.bin", 5)
		put(t, s, "d/2.bin", 5)
		if err := s.Delete(ctx, "d/1.bin", "d/missing.bin"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if keys := list(t, s, "d/"); strings.Join(keys, ",") != "d/2.bin" {
			t.Fatalf("after delete: %v", keys)
		}
	})

	t.Run("FailedStreamLeavesNothing", func(t *testing.T) {
		s := newSink(t)
		boom := errors.New("dump died")
		r := io.MultiReader(bytes.NewReader(random(o.LargeSize/2+1)), errReader{boom})
		if _, err := s.Put(ctx, key, r); !errors.Is(err, boom) {
			t.Fatalf("put of a failing stream: %v, want %v", err, boom)
		}
		if keys := list(t, s, ""); len(keys) != 0 {
			t.Fatalf("a failed put left %v visible", keys)
		}
		if _, err := s.Open(ctx, key); !errors.Is(err, sinks.ErrNotFound) {
			t.Fatalf("open after failed put: %v", err)
		}
		noLeftovers(t, s)
	})

	t.Run("CancelLeavesNothing", func(t *testing.T) {
		s := newSink(t)
		cctx, cancel := context.WithCancel(ctx)
		pr, pw := io.Pipe()
		go func() {
			pw.Write(random(o.LargeSize/2 + 1))
			cancel()
			pw.Write(random(1 << 20))
			pw.Close()
		}()
		if _, err := s.Put(cctx, key, pr); err == nil {
			t.Fatal("put with a cancelled context succeeded")
		}
		pr.Close()
		if keys := list(t, s, ""); len(keys) != 0 {
			t.Fatalf("a cancelled put left %v visible", keys)
		}
		noLeftovers(t, s)
	})

	t.Run("ListPast1000Keys", func(t *testing.T) {
		s := newSink(t)
		for i := 0; i < o.ManyKeys; i++ {
			if _, err := s.Put(ctx, fmt.Sprintf("many/%05d.bin", i), strings.NewReader("x")); err != nil {
				t.Fatal(err)
			}
		}
		if keys := list(t, s, "many/"); len(keys) != o.ManyKeys {
			t.Fatalf("listed %d keys, want %d", len(keys), o.ManyKeys)
		}
	})

	t.Run("WriteInProgressIsALeftover", func(t *testing.T) {
		s := newSink(t)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() { _, err := s.Put(ctx, key, pr); done <- err }()
		// More than a part, so a multipart upload is under way.
		if _, err := pw.Write(random(o.LargeSize/2 + 1)); err != nil {
			t.Fatal(err)
		}
		var lo []sinks.Leftover
		deadline := time.Now().Add(10 * time.Second)
		for len(lo) == 0 && time.Now().Before(deadline) {
			var err error
			if lo, err = s.Leftovers(ctx, "app_db/"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(lo) != 1 || lo[0].Key == "" || time.Since(lo[0].Started) > time.Hour {
			t.Fatalf("a write in progress: leftovers %+v, want one", lo)
		}
		if keys := list(t, s, ""); len(keys) != 0 {
			t.Fatalf("a write in progress is listed: %v", keys)
		}
		if err := s.Cleanup(ctx, lo[0]); err != nil {
			t.Fatalf("cleanup: %v", err)
		}
		pw.CloseWithError(errors.New("writer killed"))
		if err := <-done; err == nil {
			t.Fatal("a put whose stream failed succeeded")
		}
		if lo, err := s.Leftovers(ctx, ""); err != nil || len(lo) != 0 {
			t.Fatalf("after cleanup: leftovers %+v %v", lo, err)
		}
		if keys := list(t, s, ""); len(keys) != 0 {
			t.Fatalf("after cleanup: %v visible", keys)
		}
	})

	t.Run("CleanupRefusesObjects", func(t *testing.T) {
		s := newSink(t)
		put(t, s, key, 10)
		if err := s.Cleanup(ctx, sinks.Leftover{Key: key}); err == nil {
			t.Fatal("cleanup of a complete object was accepted")
		}
		if keys := list(t, s, ""); len(keys) != 1 {
			t.Fatalf("cleanup touched a complete object: %v", keys)
		}
	})
}

// noLeftovers checks that a failed write cleaned up after itself: no temp
// file, no unfinished upload (List hides both, so ask Leftovers).
func noLeftovers(t *testing.T, s sinks.Sink) {
	t.Helper()
	lo, err := s.Leftovers(context.Background(), "")
	if err != nil || len(lo) != 0 {
		t.Fatalf("a failed write left leftovers %+v (%v)", lo, err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func put(t *testing.T, s sinks.Sink, key string, size int) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, bytes.NewReader(random(size))); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func read(t *testing.T, s sinks.Sink, key string) []byte {
	t.Helper()
	rc, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("open %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

func readAll(t *testing.T, p sinks.Pinned) []byte {
	t.Helper()
	rc, err := p.Open(context.Background())
	if err != nil {
		t.Fatalf("open pinned: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read pinned: %v", err)
	}
	return b
}

func list(t *testing.T, s sinks.Sink, prefix string) []string {
	t.Helper()
	objs, err := s.List(context.Background(), prefix)
	if err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	sort.Strings(keys)
	return keys
}
