package pg

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Server is what discovery sees of a server: its major version and the
// databases one can connect to (datallowconn, not templates), by name.
type Server struct {
	Major     int
	Databases []string
}

// Discover lists the server's databases through c (any database of it).
func Discover(ctx context.Context, c Conn) (Server, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return Server{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var s Server
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&s.Major); err != nil {
		return s, err
	}
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname")
	if err != nil {
		return s, err
	}
	s.Databases, err = pgx.CollectRows(rows, pgx.RowTo[string])
	return s, err
}

// Superuser reports whether c's user is a superuser (pg_dumpall reads
// role passwords only then).
func Superuser(ctx context.Context, c Conn) (bool, error) {
	conn, err := Connect(ctx, c)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var ok bool
	err = conn.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&ok)
	return ok, err
}

// Session is one connection that holds advisory locks for many
// databases of a server (discovered databases share it, so locking 200
// databases does not take 200 connections). It is safe for concurrent
// use; a broken session reports errors and is replaced by its owner.
type Session struct {
	mu   sync.Mutex
	conn *pgx.Conn
}

// OpenSession connects to c for locking.
func OpenSession(ctx context.Context, c Conn) (*Session, error) {
	conn, err := connectToLock(ctx, c)
	if err != nil {
		return nil, err
	}
	return &Session{conn: conn}, nil
}

func lockKey(key string) int64 {
	h := fnv.New64a()
	h.Write([]byte("backupkit:" + key))
	return int64(h.Sum64())
}

// TryLock takes the advisory lock named key without waiting. Within one
// session a lock is reentrant, so callers must not lock one key twice.
func (s *Session) TryLock(ctx context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ok bool
	err := s.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey(key)).Scan(&ok)
	return ok, err
}

// Unlock releases the lock named key.
func (s *Session) Unlock(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ok bool
	if err := s.conn.QueryRow(ctx, "SELECT pg_advisory_unlock($1)", lockKey(key)).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("advisory lock %q was not held", key)
	}
	return nil
}

// Broken reports whether the session's connection is gone.
func (s *Session) Broken() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn.IsClosed()
}

// Close ends the session, releasing every lock it holds.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn.Close(ctx)
}
