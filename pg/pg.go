package pg

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Conn says how to reach a database, for SQL here and for the client
// tools (exec), which get the password through their environment, never
// their command line.
type Conn struct {
	Host     string
	Port     int
	Database string
	User     string
	Password string
	SSLMode  string
	// TLS files for sslmode verify-ca/verify-full and client certificates.
	SSLRootCert, SSLCert, SSLKey string
}

// Connect opens a SQL connection (for checks, target preparation and
// advisory locks; dumps and restores go through the client tools).
func Connect(ctx context.Context, c Conn) (*pgx.Conn, error) {
	u := url.URL{Scheme: "postgres", Host: c.Host + ":" + strconv.Itoa(c.Port), Path: "/"}
	q := url.Values{"application_name": {"backupkit"}, "connect_timeout": {"15"}}
	if c.SSLMode != "" {
		q.Set("sslmode", c.SSLMode)
	} else {
		q.Set("sslmode", "prefer")
	}
	for k, v := range map[string]string{"sslrootcert": c.SSLRootCert, "sslcert": c.SSLCert, "sslkey": c.SSLKey} {
		if v != "" {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("connection settings for %s: %w", c.Database, err)
	}
	// Names are set as values, never parsed: a database named
	// "dbname=x" or "postgres://…" stays a name.
	cfg.Database, cfg.User, cfg.Password = c.Database, c.User, c.Password
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
	Exists bool
	// Objects counts what a user put there: tables, views, sequences,
	// materialized views, foreign tables, composite types, functions,
	// procedures, types, schemas (but public), extensions (but plpgsql)
	// and large objects.
	Objects int
	// ServerMajor is the server's major version (15 for 15.4).
	ServerMajor int
}

// userObjects counts every user object of the connected database.
const userObjects = `WITH sys AS (
	SELECT oid FROM pg_namespace
	WHERE nspname IN ('pg_catalog', 'information_schema') OR nspname LIKE 'pg\_toast%' OR nspname LIKE 'pg\_temp\_%')
SELECT
	(SELECT count(*) FROM pg_class WHERE relkind <> 't' AND relnamespace NOT IN (SELECT oid FROM sys))
	+ (SELECT count(*) FROM pg_proc WHERE pronamespace NOT IN (SELECT oid FROM sys))
	+ (SELECT count(*) FROM pg_type WHERE typrelid = 0 AND typcategory <> 'A' AND typnamespace NOT IN (SELECT oid FROM sys))
	+ (SELECT count(*) FROM pg_namespace WHERE oid NOT IN (SELECT oid FROM sys) AND nspname <> 'public')
	+ (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
	+ (SELECT count(*) FROM pg_largeobject_metadata)`

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
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1), current_setting('server_version_num')::int / 10000",
		c.Database).Scan(&t.Exists, &t.ServerMajor); err != nil {
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
	err = tc.QueryRow(ctx, userObjects).Scan(&t.Objects)
	return t, err
}

// CreateDatabase creates the database c names.
func CreateDatabase(ctx context.Context, c Conn) error {
	return maintenance(ctx, c, "CREATE DATABASE "+pgx.Identifier{c.Database}.Sanitize())
}

// SetOwner gives the database c names to role, when that role exists
// (ok false when it does not: the database is left as it is).
func SetOwner(ctx context.Context, c Conn, role string) (ok bool, err error) {
	err = withMaintenance(ctx, c, func(q querier) error {
		ok, err = setOwner(ctx, q, c.Database, role)
		return err
	})
	return ok, err
}

func setOwner(ctx context.Context, q querier, db, role string) (bool, error) {
	var ok bool
	if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&ok); err != nil || !ok {
		return false, err
	}
	_, err := q.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" OWNER TO "+pgx.Identifier{role}.Sanitize())
	return err == nil, err
}

// DropDatabase drops the database c names (used to undo a failed restore
// into a database that restore itself created).
func DropDatabase(ctx context.Context, c Conn) error {
	return maintenance(ctx, c, "DROP DATABASE IF EXISTS "+pgx.Identifier{c.Database}.Sanitize()+" WITH (FORCE)")
}

// ErrDatabaseExists means a database of that name already exists.
var ErrDatabaseExists = errors.New("the database already exists")

func rename(ctx context.Context, q querier, from, to string) error {
	sql := "ALTER DATABASE " + pgx.Identifier{from}.Sanitize() + " RENAME TO " + pgx.Identifier{to}.Sanitize()
	for wait := 10 * time.Millisecond; ; wait *= 2 {
		_, err := q.Exec(ctx, sql)
		var pe *pgconn.PgError
		// 42P04; 23505 when the other database was being created meanwhile.
		if errors.As(err, &pe) && (pe.Code == "42P04" || pe.Code == "23505") {
			return fmt.Errorf("%w: %w", ErrDatabaseExists, err)
		}
		if err == nil || !errors.As(err, &pe) || pe.Code != "55006" || wait > 2*time.Second {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// querier is a session: a connection of its own, or a lock's.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// withMaintenance runs f over a new connection to the maintenance
// database of c's server.
func withMaintenance(ctx context.Context, c Conn, f func(q querier) error) error {
	maint := c
	maint.Database = "postgres"
	conn, err := Connect(ctx, maint)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return f(conn)
}

func maintenance(ctx context.Context, c Conn, sql string) error {
	return withMaintenance(ctx, c, func(q querier) error {
		_, err := q.Exec(ctx, sql)
		return err
	})
}

// connectToLock connects a session that holds locks: it sits idle for as
// long as the work it guards runs (hours, for a large backup), so a
// server's idle_session_timeout must not end it, and the lock with it.
// Servers before 14 have no such setting, and no such timeout.
func connectToLock(ctx context.Context, c Conn) (*pgx.Conn, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return nil, err
	}
	var pe *pgconn.PgError
	if _, err := conn.Exec(ctx, "SET idle_session_timeout = 0"); err != nil && !(errors.As(err, &pe) && pe.Code == "42704") {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}

// Lock is a held PostgreSQL advisory lock.
type Lock struct {
	conn *pgx.Conn
	key  int64
}

// TryLock takes a session advisory lock named by key on the database c
// names, without waiting. ok is false when another process holds it.
func TryLock(ctx context.Context, c Conn, key string) (*Lock, bool, error) {
	conn, err := connectToLock(ctx, c)
	if err != nil {
		return nil, false, err
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey(key)).Scan(&ok); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, false, err
	}
	if !ok {
		conn.Close(context.WithoutCancel(ctx))
		return nil, false, nil
	}
	return &Lock{conn: conn, key: lockKey(key)}, true, nil
}

// CreateDatabase creates the database name over the lock's session (a
// connection to the maintenance database), saving a connection of its
// own.
func (l *Lock) CreateDatabase(ctx context.Context, name string) error {
	_, err := l.conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

// RenameDatabase renames the database from to to, over the lock's
// session. A rename needs the database to have no sessions; ones just
// ended (a client tool's backend exits after the tool) are waited for, up
// to a few seconds.
func (l *Lock) RenameDatabase(ctx context.Context, from, to string) error {
	return rename(ctx, l.conn, from, to)
}

// SetOwner is SetOwner over the lock's session.
func (l *Lock) SetOwner(ctx context.Context, db, role string) (bool, error) {
	return setOwner(ctx, l.conn, db, role)
}

// Release releases the lock, then ends its session. Ending the session
// alone would release it too, but only once the server's backend has
// exited, after Release returned: the next run of a backup right after
// this one could still find it held ("another backupkit process is
// working on this database": seen in a test's second backup on a loaded
// machine).
func (l *Lock) Release(ctx context.Context) error {
	// Callers release with a context that is never cancelled: bound the
	// unlock so a server gone silent cannot hold the close up.
	uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := l.conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", l.key)
	cancel()
	if cerr := l.conn.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// DatabaseSize returns the database's size on disk, an estimate of how
// much pg_dump will write (for progress displays).
func DatabaseSize(ctx context.Context, c Conn) (int64, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int64
	err = conn.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&n)
	return n, err
}

// CountTables returns the number of user tables (ordinary and
// partitioned) of the connected database.
func CountTables(ctx context.Context, c Conn) (int, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'`).Scan(&n)
	return n, err
}

// DatabasesLike lists the databases whose name matches a LIKE pattern.
func DatabasesLike(ctx context.Context, c Conn, pattern string) ([]string, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1", pattern)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
