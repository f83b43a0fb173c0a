// Package format owns the backup format, and nothing else: key naming
// and parsing ([prefix/]<db>/<UTC time>.dump[.gz|.zst][.enc]), the
// compression codecs (one table, codec.go), the AES-256-GCM chunked
// encryption stream, the SHA-256 checksum sidecar, and sniffing a stored
// backup's layers down to a pg_dump archive or SQL text.
//
// It is pure: bytes and names in, bytes and names out. It must not import
// any other BackupKit package (no storage, no processes, no config).
package format
