// Package sinktest is the conformance suite every storage backend passes:
// put, list, open, delete, cancellation leaves nothing visible, listing
// past 1,000 keys, foreign keys ignored.
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
	key := sinks.Key("app_db", time.Date(2026, 11, 25, 2, 0, 0, 7, time.UTC), ".dump.gz")

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

	t.Run("BackupsAndForeignKeys", func(t *testing.T) {
		s := newSink(t)
		w, err := sinks.WriteBackup(ctx, s, key, bytes.NewReader(random(1000)))
		if err != nil {
			t.Fatal(err)
		}
		put(t, s, "app_db/notes.txt", 3)
		put(t, s, "app_db/20261125_020000.000000007Z.dump.bak", 3)
		put(t, s, "other_db/"+strings.TrimPrefix(key, "app_db/"), 3)
		bs, err := sinks.ListBackups(ctx, s, "app_db")
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 1 || bs[0].Key != key || !bs[0].HasChecksum || bs[0].Size != 1000 {
			t.Fatalf("backups = %+v, want just %s with checksum", bs, key)
		}
		sum, err := sinks.ReadChecksum(ctx, s, key)
		if err != nil || sum != w.SHA256 {
			t.Fatalf("checksum %q (%v), want %q", sum, err, w.SHA256)
		}
		if err := sinks.DeleteBackups(ctx, s, "app_db/notes.txt"); err == nil {
			t.Fatal("DeleteBackups accepted a foreign key")
		}
		if err := sinks.DeleteBackups(ctx, s, key); err != nil {
			t.Fatal(err)
		}
		if keys := list(t, s, "app_db/"); strings.Join(keys, ",") != "app_db/20261125_020000.000000007Z.dump.bak,app_db/notes.txt" {
			t.Fatalf("after deleting the backup: %v (foreign files must stay, sidecar must go)", keys)
		}
	})

	t.Run("ChecksumMismatchDetected", func(t *testing.T) {
		s := newSink(t)
		if _, err := sinks.WriteBackup(ctx, s, key, bytes.NewReader(random(5000))); err != nil {
			t.Fatal(err)
		}
		// Replace the data behind the sidecar's back.
		if _, err := s.Put(ctx, key, bytes.NewReader(random(5000))); err != nil {
			t.Fatal(err)
		}
		rc, err := sinks.OpenVerified(ctx, s, key)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if _, err := io.ReadAll(rc); !errors.Is(err, sinks.ErrChecksum) {
			t.Fatalf("reading changed bytes: %v, want ErrChecksum", err)
		}
	})
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
