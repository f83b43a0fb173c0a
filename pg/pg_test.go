package pg_test

import (
	"context"
	"testing"

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
