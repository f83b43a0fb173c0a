package pg_test

import (
	"context"
	"testing"
	"time"

	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/pg"
)

// InspectTarget tells whether the target exists, what it holds, and the
// server's major version (what a restore picks its pg_restore by), over
// the one connection it needs for a missing target.
func TestInspectTarget(t *testing.T) {
	p, c := maintenance(t)
	ctx := context.Background()
	major, err := pg.ServerVersion(ctx, c)
	if err != nil || major < 10 {
		t.Fatalf("server version %d: %v", major, err)
	}
	missing := c
	missing.Database = "bk_inspect_missing_" + testenv.RandHex(3)
	if got, err := pg.InspectTarget(ctx, missing); err != nil || got != (pg.Target{ServerMajor: major}) {
		t.Fatalf("missing target: %+v, %v", got, err)
	}
	db := p.NewDB(t, "bk_inspect")
	p.Query(t, db, "CREATE TABLE a (x int); CREATE VIEW b AS SELECT x FROM a")
	full := c
	full.Database = db
	if got, err := pg.InspectTarget(ctx, full); err != nil || got != (pg.Target{Exists: true, Objects: 2, ServerMajor: major}) {
		t.Fatalf("target with a table and a view: %+v, %v", got, err)
	}
}

// maintenance is the test server and a connection to its "postgres"
// database.
func maintenance(t *testing.T) (testenv.PG, pg.Conn) {
	p := testenv.Postgres(t)
	return p, pg.Conn{Host: p.Host, Port: p.Port, User: p.User, Database: "postgres"}
}

// Once Release has returned, the lock is free: a backup that starts right
// after another one ended finds it so. (Closing the session alone frees
// it only when the server's backend has exited, a moment later.)
func TestReleasedLockIsFreeAtOnce(t *testing.T) {
	_, c := maintenance(t)
	ctx := context.Background()
	other, err := pg.OpenSession(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	key := "release-test-" + testenv.RandHex(4)
	for i := range 100 {
		l, ok, err := pg.TryLock(ctx, c, key)
		if err != nil || !ok {
			t.Fatalf("round %d: lock not taken: %v", i, err)
		}
		if ok, err := other.TryLock(ctx, key); err != nil || ok {
			t.Fatalf("round %d: another session took a held lock (%v)", i, err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		ok, err = other.TryLock(ctx, key)
		if err != nil || !ok {
			t.Fatalf("round %d: the lock was still held right after Release returned (%v)", i, err)
		}
		if err := other.Unlock(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
}

// A lock outlives a server's idle_session_timeout: the session holding it
// sits idle while the backup or restore it guards runs.
func TestLockOutlivesIdleSessionTimeout(t *testing.T) {
	p, c := maintenance(t)
	ctx := context.Background()
	role := "bk_idle_" + testenv.RandHex(3)
	p.Query(t, "postgres", "CREATE ROLE "+role+" LOGIN SUPERUSER; ALTER ROLE "+role+" SET idle_session_timeout = '300ms'")
	t.Cleanup(func() { p.Query(t, "postgres", "DROP ROLE IF EXISTS "+role) })
	c.User = role
	key := "idle-test-" + testenv.RandHex(4)
	l, ok, err := pg.TryLock(ctx, c, key)
	if err != nil || !ok {
		t.Fatalf("lock not taken: %v", err)
	}
	defer l.Release(ctx)
	s, err := pg.OpenSession(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	other := key + "-session"
	if ok, err := s.TryLock(ctx, other); err != nil || !ok {
		t.Fatalf("session lock not taken: %v", err)
	}
	time.Sleep(time.Second)
	if s.Broken() {
		t.Fatal("the server ended the idle session holding a lock")
	}
	check, err := pg.OpenSession(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close(ctx)
	for _, k := range []string{key, other} {
		if ok, err := check.TryLock(ctx, k); err != nil || ok {
			t.Fatalf("lock %s was free after an idle second (%v): the server ended the session holding it", k, err)
		}
	}
	if err := s.Unlock(ctx, other); err != nil {
		t.Fatalf("the idle session is gone: %v", err)
	}
}
