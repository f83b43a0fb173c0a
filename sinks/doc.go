// Package sinks owns storage and nothing else: the Sink interface (Put,
// List, Open, Delete, Leftovers, Cleanup) and its backends, a local
// folder and S3 (and S3-compatible servers). An object is visible under
// its final key only once it is complete; what a killed write leaves is a
// Leftover, never an object. The conformance suite in sinktest checks
// every backend against that contract.
//
// Errors are classified where they happen (internal/fault): a full disk
// or access denied is permanent, a lost connection transient; the SDK's
// own error stays in the chain. It knows nothing of backups, names or
// formats: it must not import any other BackupKit package.
package sinks
