package format

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// ManifestExt is the suffix of a backup's manifest, written beside it
// after its data and checksum: "<key>.manifest.json".
const ManifestExt = ".manifest.json"

// ManifestKey is the key of key's manifest.
func ManifestKey(key string) string { return key + ManifestExt }

// Manifest describes one backup: what made it, from what, and what it
// holds. It is metadata in clear text, written by BackupKit and read as
// untrusted: verify and drills compare against it, nothing runs from it.
type Manifest struct {
	Version        int         `json:"version"` // 1
	BackupKit      string      `json:"backupkit"`
	Database       string      `json:"database"` // the config's name
	DBName         string      `json:"dbname"`   // the server's
	Key            string      `json:"key"`
	Started        time.Time   `json:"started"`
	Finished       time.Time   `json:"finished"`
	PgDumpVersion  string      `json:"pg_dump_version"`
	ServerVersion  string      `json:"server_version"`
	ArchiveVersion string      `json:"archive_version"`
	RawBytes       int64       `json:"raw_bytes"`    // pg_dump's output
	StoredBytes    int64       `json:"stored_bytes"` // what storage holds
	SHA256         string      `json:"sha256"`
	Compression    Compression `json:"compression"`
	Encryption     string      `json:"encryption,omitempty"` // e.g. "aes-256-gcm, argon2id(m=64MiB,t=3,p=4)", "age"
	// Recipients are the fingerprints of the age public keys that can
	// read the backup (format.Fingerprint).
	Recipients []string         `json:"recipients,omitempty"`
	Tables     map[string]int64 `json:"tables"` // schema.table → rows (-1: not counted)
	// TableBytes: schema.table → bytes of its data in the archive (a
	// --jobs restore shares tables out by it; older manifests lack it).
	TableBytes map[string]int64 `json:"table_bytes,omitempty"`
	// Kind is "globals" for a server's roles and tablespaces
	// (pg_dumpall --globals-only), empty for a database's dump.
	Kind string `json:"kind,omitempty"`
	// NoRolePasswords: the backup role is no superuser, so the globals
	// were dumped without role passwords (restored roles have none).
	NoRolePasswords bool `json:"no_role_passwords,omitempty"`
}

// MaxManifest bounds what is read of a manifest from storage.
const MaxManifest = 64 << 20

// ParseManifest reads a manifest; unknown versions are refused.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest does not parse: %w", err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("manifest version %d is not one this build reads", m.Version)
	}
	return &m, nil
}

// TableRows is the manifest's table count and total rows.
func (m *Manifest) TableRows() (tables int, rows int64) {
	for _, r := range m.Tables {
		tables++
		if r > 0 {
			rows += r
		}
	}
	return tables, rows
}

// DrillResult is what a restore drill of a backup found; it is stored
// beside the backup as "<key>.drill.<UTC time>.<ok|failed>.json", so a
// listing alone says when each backup was last drilled and how it went.
type DrillResult struct {
	Version     int       `json:"version"` // 1
	Key         string    `json:"key"`
	Time        time.Time `json:"time"`
	OK          bool      `json:"ok"`
	DurationMS  int64     `json:"duration_ms"`
	RestoreMS   int64     `json:"restore_ms"`
	Tables      int       `json:"tables_checked"`
	Rows        int64     `json:"rows_checked"`
	FailedCheck string    `json:"failed_check,omitempty"`
	Error       string    `json:"error,omitempty"`
}

const drillMark = ".drill."

// DrillKey is the key a drill result of key is stored under.
func DrillKey(key string, t time.Time, ok bool) string {
	result := "failed"
	if ok {
		result = "ok"
	}
	return key + drillMark + t.UTC().Format(timeLayout) + "." + result + ".json"
}

// DrillMark is a drill result as its key names it.
type DrillMark struct {
	Key  string // the result's own key
	Time time.Time
	OK   bool
}

// ParseDrillKey reports whether k names a drill result, and of which
// backup key.
func ParseDrillKey(k string) (backup string, m DrillMark, ok bool) {
	if !strings.HasSuffix(k, ".json") {
		return "", m, false
	}
	i := strings.LastIndex(k, drillMark)
	if i < 0 {
		return "", m, false
	}
	rest := strings.TrimSuffix(k[i+len(drillMark):], ".json")
	j := strings.LastIndex(rest, ".")
	if j < 0 {
		return "", m, false
	}
	ts, result := rest[:j], rest[j+1:]
	t, err := time.Parse(timeLayout, ts)
	if err != nil || (result != "ok" && result != "failed") {
		return "", m, false
	}
	if _, valid := ParseKey(k[:i]); !valid {
		return "", m, false
	}
	return k[:i], DrillMark{Key: k, Time: t, OK: result == "ok"}, true
}
