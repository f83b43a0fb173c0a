// Package fault classifies errors where they happen, so the code that
// decides what to do (retry soon, or tell a human) does not parse
// messages: a lost connection is transient (retry with backoff); a wrong
// password, a missing database or a full disk is permanent (alert, do not
// hammer). The original error stays in the chain for errors.As.
//
// It imports nothing of BackupKit's.
package fault

import "errors"

// Kind is how an error should be handled.
type Kind int

// Kinds.
const (
	Unknown   Kind = iota
	Transient      // likely to go away: retry with backoff
	Permanent      // needs a human: alert
)

func (k Kind) String() string {
	switch k {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	}
	return "unknown"
}

// Error is a classified error.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Mark classifies err (nil stays nil).
func Mark(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Err: err}
}

// KindOf returns the outermost classification in err's chain.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Unknown
}
