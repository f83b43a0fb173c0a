package repo_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

var key = format.Key("app_db", time.Date(2026, 11, 25, 2, 0, 0, 7, time.UTC), format.Ext{Compression: format.Gzip})

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func put(t *testing.T, s sinks.Sink, k string, size int) {
	t.Helper()
	if _, err := s.Put(context.Background(), k, bytes.NewReader(random(size))); err != nil {
		t.Fatal(err)
	}
}

func keys(t *testing.T, s sinks.Sink, prefix string) string {
	t.Helper()
	objs, err := s.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, o := range objs {
		ks = append(ks, o.Key)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

// suite checks the repository rules on one backend.
func suite(t *testing.T, newSink func(t *testing.T) sinks.Sink) {
	ctx := context.Background()
	t.Run("BackupsAndForeignKeys", func(t *testing.T) {
		s := newSink(t)
		w, err := repo.Write(ctx, s, key, bytes.NewReader(random(1000)))
		if err != nil {
			t.Fatal(err)
		}
		put(t, s, "app_db/notes.txt", 3)
		put(t, s, "app_db/20261125_020000.000000007Z.dump.bak", 3)
		put(t, s, "other_db/"+strings.TrimPrefix(key, "app_db/"), 3)
		bs, err := repo.List(ctx, s, "app_db")
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 1 || bs[0].Key != key || !bs[0].HasChecksum || bs[0].Size != 1000 || bs[0].Ext.Compression != format.Gzip {
			t.Fatalf("backups = %+v, want just %s with checksum", bs, key)
		}
		sum, err := repo.ReadChecksum(ctx, s, key)
		if err != nil || sum != w.SHA256 {
			t.Fatalf("checksum %q (%v), want %q", sum, err, w.SHA256)
		}
		if err := repo.Delete(ctx, s, repo.Backup{Key: "app_db/notes.txt"}); err == nil {
			t.Fatal("Delete accepted a foreign key")
		}
		if err := repo.Delete(ctx, s, bs[0]); err != nil {
			t.Fatal(err)
		}
		if got := keys(t, s, "app_db/"); got != "app_db/20261125_020000.000000007Z.dump.bak,app_db/notes.txt" {
			t.Fatalf("after deleting the backup: %v (foreign files must stay, sidecar must go)", got)
		}
	})
	t.Run("ChecksumMismatchDetected", func(t *testing.T) {
		s := newSink(t)
		if _, err := repo.Write(ctx, s, key, bytes.NewReader(random(5000))); err != nil {
			t.Fatal(err)
		}
		// Replace the data behind the sidecar's back.
		put(t, s, key, 5000)
		p, err := repo.Pin(ctx, s, key)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		rc, err := p.Open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if _, err := io.ReadAll(rc); !errors.Is(err, repo.ErrChecksum) {
			t.Fatalf("reading changed bytes: %v, want ErrChecksum", err)
		}
	})
}

func TestRepoOnLocal(t *testing.T) {
	suite(t, func(t *testing.T) sinks.Sink { return sinks.NewLocal("local", filepath.Join(t.TempDir(), "store")) })
}

func TestRepoOnS3(t *testing.T) {
	srv := testenv.StartS3(t)
	suite(t, func(t *testing.T) sinks.Sink {
		s, err := sinks.NewS3(context.Background(), "s3", sinks.S3Options{Bucket: "backups", Region: "us-east-1",
			Prefix: "r" + testenv.RandHex(4), Endpoint: srv.Endpoint, ForcePathStyle: true,
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PartSize: 5 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// Only BackupKit's own unfinished writes are leftovers to clean up: a
// user's dotfile that merely contains ".tmp-" is foreign.
func TestOnlyOwnLeftovers(t *testing.T) {
	root := t.TempDir()
	s := sinks.NewLocal("local", root)
	mine := filepath.Join(root, "app_db", "."+filepath.Base(key)+".tmp-0123456789ab")
	sidecar := filepath.Join(root, "app_db", "."+filepath.Base(key)+".sha256.tmp-abcdef012345")
	for _, f := range []string{mine, sidecar, filepath.Join(root, "app_db", ".important.tmp-keepme"),
		filepath.Join(root, "app_db", ".notes.txt.tmp-0123456789ab")} {
		os.MkdirAll(filepath.Dir(f), 0o700)
		os.WriteFile(f, []byte("x"), 0o600)
	}
	_, lo, err := repo.Observe(context.Background(), s, "app_db")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lo {
		got = append(got, filepath.Base(l.Key))
	}
	sort.Strings(got)
	want := []string{filepath.Base(mine), filepath.Base(sidecar)}
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("leftovers %v, want only the backup's and its sidecar's temp files", got)
	}
}

func TestNewestSkipsFutureDated(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	mk := func(d time.Duration) repo.Backup {
		return repo.Backup{Name: format.Name{Database: "app", Time: now.Add(d)}, Key: format.Key("app", now.Add(d), format.Ext{})}
	}
	bs := []repo.Backup{mk(48 * time.Hour), mk(-time.Hour), mk(-2 * time.Hour)}
	b, ok := repo.Newest(bs, now)
	if !ok || b.Key != bs[1].Key {
		t.Fatalf("newest = %+v %v, want the one an hour ago", b, ok)
	}
	if u := repo.Usable(bs, now); len(u) != 2 || u[0].Key != bs[1].Key {
		t.Fatalf("usable = %+v", u)
	}
	if _, ok := repo.Newest(bs[:1], now); ok {
		t.Fatal("a future-dated backup counted as the newest")
	}
}
