// Package repo owns backups as they sit in storage: which objects of a
// sink are backups (and which are foreign), the newest usable backup of a
// database, writing one dump to several sinks with its checksum sidecar,
// opening a backup so that its stored bytes are checked, and deleting
// only backups.
//
// It combines sinks (storage) and format (names and bytes). It must not
// import the config (schema), processes (exec), the database (pg), or the
// packages that use it (reconcile, restore, cmd).
package repo
