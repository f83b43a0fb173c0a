package exec

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/url"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// Connect opens a SQL connection (for checks, target preparation and
// advisory locks; dumps and restores go through the client tools).
func Connect(ctx context.Context, c Conn) (*pgx.Conn, error) {
	u := url.URL{Scheme: "postgres", Host: c.Host + ":" + strconv.Itoa(c.Port), Path: "/" + c.Database}
	if c.Password != "" {
		u.User = url.UserPassword(c.User, c.Password)
	} else {
		u.User = url.User(c.User)
	}
	q := url.Values{"application_name": {"backupkit"}, "connect_timeout": {"15"}}
	if c.SSLMode != "" {
		q.Set("sslmode", c.SSLMode)
	} else {
		q.Set("sslmode", "prefer")
	}
	u.RawQuery = q.Encode()
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("connection settings for %s: invalid", c.Database)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s@%s:%d/%s: %w", c.User, c.Host, c.Port, c.Database, err)
	}
	return conn, nil
}

// ServerVersion returns the server's major version (e.g. 15).
func ServerVersion(ctx context.Context, c Conn) (int, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&n); err != nil {
		return 0, err
	}
	return n / 10000, nil
}

// Target is what a restore target database holds now.
type Target struct {
	Exists     bool
	UserTables int
}

// InspectTarget looks at the restore target without changing it; c names
// the target database, reached through the "postgres" maintenance one.
func InspectTarget(ctx context.Context, c Conn) (Target, error) {
	maint := c
	maint.Database = "postgres"
	conn, err := Connect(ctx, maint)
	if err != nil {
		return Target{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var t Target
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", c.Database).Scan(&t.Exists); err != nil {
		return t, err
	}
	if !t.Exists {
		return t, nil
	}
	tc, err := Connect(ctx, c)
	if err != nil {
		return t, err
	}
	defer tc.Close(context.WithoutCancel(ctx))
	err = tc.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema')
		AND n.nspname NOT LIKE 'pg_toast%'`).Scan(&t.UserTables)
	return t, err
}

// CreateDatabase creates the database c names.
func CreateDatabase(ctx context.Context, c Conn) error {
	return maintenance(ctx, c, "CREATE DATABASE "+pgx.Identifier{c.Database}.Sanitize())
}

// DropDatabase drops the database c names (used to undo a failed restore
// into a database that restore itself created).
func DropDatabase(ctx context.Context, c Conn) error {
	return maintenance(ctx, c, "DROP DATABASE IF EXISTS "+pgx.Identifier{c.Database}.Sanitize()+" WITH (FORCE)")
}

func maintenance(ctx context.Context, c Conn, sql string) error {
	maint := c
	maint.Database = "postgres"
	conn, err := Connect(ctx, maint)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// Lock is a held PostgreSQL advisory lock.
type Lock struct{ conn *pgx.Conn }

// TryLock takes a session advisory lock named by key on the database c
// names, without waiting. ok is false when another process holds it.
func TryLock(ctx context.Context, c Conn, key string) (*Lock, bool, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return nil, false, err
	}
	h := fnv.New64a()
	h.Write([]byte("backupkit:" + key))
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(h.Sum64())).Scan(&ok); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, false, err
	}
	if !ok {
		conn.Close(context.WithoutCancel(ctx))
		return nil, false, nil
	}
	return &Lock{conn: conn}, true, nil
}

// Release ends the lock's session, which releases the lock.
func (l *Lock) Release(ctx context.Context) error {
	return l.conn.Close(ctx)
}
