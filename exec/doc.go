// Package exec owns the streaming pipeline: the pg_dump, pg_restore and
// psql processes, gzip/zstd compression, the AES-256-GCM chunked
// encryption format, and sniffing a stored backup's layers. It never holds
// a whole dump in memory; only restore --jobs spools to a temp file.
package exec
