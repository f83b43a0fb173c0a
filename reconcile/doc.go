// Package reconcile owns the control loop: the desired state of each
// database (schedule and retention), the observed state (listing its
// storages), the Plan data type and the pure planning function, applying
// a plan under each database's lock, and the daemon loop with its backoff.
//
// It gets typed inputs (Database) from its caller and must not import the
// config (schema), alerting or cmd. It uses repo and sinks for storage,
// and exec and pg for the default dumper and lock.
package reconcile
