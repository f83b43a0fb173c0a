// Package sinks owns storage: the Sink interface and its backends (local
// folder, S3 and S3-compatible servers), the v0 backup naming scheme, the
// SHA-256 sidecar kept with each backup, and fan-out of one stream to
// several storages. A backup is visible under its final name only once it
// is complete.
package sinks
