// Package alerting owns notifications: the Event sent to people, Routes
// filtered by `on:`, and delivery by webhook (go-retryablehttp), email
// (jordan-wright/email over SMTP, STARTTLS required unless told otherwise)
// and healthchecks pings, each retried within a bound. It also tracks
// overdue/recovered episodes so each is announced once. Nothing here
// prints a secret: URLs are redacted, redirects never leave the host, and
// credentials never enter an Event.
//
// It gets its Routes from the caller and must not import the config
// (schema) or any other BackupKit package but internal/secret.
package alerting
