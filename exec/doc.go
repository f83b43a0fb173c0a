// Package exec owns the PostgreSQL client processes: pg_dump (and the
// streaming backup pipeline pg_dump → compression → encryption that
// feeds storage), pg_restore, pg_restore --list and psql. Processes run
// without a shell, with an allow-listed environment and the password only
// in PGPASSWORD, are stopped with SIGTERM on cancellation, and report a
// bounded head and tail of their stderr.
//
// It imports pg (connection settings) and format (codecs, encryption). It
// must not import storage (sinks, repo), the config (schema) or the
// packages that use it (reconcile, restore, cmd). The package is named
// exec: it imports os/exec as osexec.
package exec
