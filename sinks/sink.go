package sinks

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) by Open for a key that does not exist.
var ErrNotFound = errors.New("not found")

// Object is one complete object in a storage.
type Object struct {
	Key  string // relative to the storage root, '/'-separated
	Size int64
}

// Leftover is what a killed write left behind: a temp file or an
// incomplete multipart upload. It is never a backup.
type Leftover struct {
	Key      string // the temp file (local) or upload (S3) to clean up
	Final    string // the key the write was going to create
	Started  time.Time
	UploadID string // S3 only
}

// Sink is a storage backend. Its contract, checked by the conformance
// suite in sinktest for every backend:
//   - Put streams r to key; the object becomes visible under key only
//     after r reached EOF without error and ctx was not cancelled. On any
//     failure nothing is visible under key and the error is returned.
//   - List returns every complete object whose key starts with prefix,
//     never an unfinished write, in no particular order.
//   - Open of a missing key returns an error matching ErrNotFound.
//   - Pin fixes the version of key stored now: every reader of the Pinned
//     reads those bytes, or fails if they are gone; never other bytes.
//   - Delete of a missing key is not an error.
type Sink interface {
	Name() string
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	List(ctx context.Context, prefix string) ([]Object, error)
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	Pin(ctx context.Context, key string) (Pinned, error)
	Delete(ctx context.Context, keys ...string) error
	// Leftovers lists unfinished writes under prefix; Cleanup removes one.
	Leftovers(ctx context.Context, prefix string) ([]Leftover, error)
	Cleanup(ctx context.Context, l Leftover) error
	// Describe says where the storage is, without secrets.
	Describe() string
}

// Pinned is one version of an object, to be read more than once (restore
// checks a backup, then restores the very bytes it checked).
type Pinned interface {
	// Open returns a reader of the pinned bytes from their start.
	Open(ctx context.Context) (io.ReadCloser, error)
	Size() int64
	Close() error
}
