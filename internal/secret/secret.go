// Package secret owns the Secret type, a string that never prints its
// value, and URL redaction for logs and errors. It imports nothing of
// BackupKit's.
package secret

import (
	"encoding/json"
	"log/slog"
	"net/url"
)

// Secret is a string that never prints its value: String, %v, %#v, JSON
// and slog all show "[redacted]". Reveal returns the real value where it
// is used (a process environment, a key derivation, an SMTP login).
type Secret string

// Redacted is what a secret prints as.
const Redacted = "[redacted]"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString implements fmt.GoStringer so %#v does not leak either.
func (s Secret) GoString() string { return s.String() }

// MarshalJSON writes the redacted form.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads the value (configs are decoded from JSON).
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = Secret(v)
	return nil
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// RedactURL returns u with any user info, query string and path hidden,
// for logs and errors: webhook and ping URLs carry tokens in all three.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return Redacted
	}
	p.User = nil
	if p.RawQuery != "" {
		p.RawQuery = "redacted"
	}
	if len(p.Path) > 1 {
		p.Path = "/…"
		p.RawPath = ""
	}
	p.Fragment = ""
	return p.String()
}
