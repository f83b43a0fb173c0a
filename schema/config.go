package schema

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/secret"
)

// Secret is a string that never prints its value (see internal/secret).
type Secret = secret.Secret

// Config is a loaded, validated configuration with defaults applied and
// every ${VAR} and *_file reference resolved.
type Config struct {
	Version       int            `json:"version"`
	PgBinDir      string         `json:"pg_bin_dir"`
	Storage       []Storage      `json:"storage"`
	Databases     []Database     `json:"databases"`
	Notifications []Notification `json:"notifications"`

	// File is the path the config was loaded from.
	File string `json:"-"`
}

// Storage is one named storage backend.
type Storage struct {
	Name  string `json:"name"`
	Type  string `json:"type"` // "local" or "s3"
	Local *Local `json:"local,omitempty"`
	S3    *S3    `json:"s3,omitempty"`
}

// Local is a folder on the local filesystem.
type Local struct {
	Path string `json:"path"`
}

// S3 is a bucket on AWS S3 or an S3-compatible server.
type S3 struct {
	Bucket         string `json:"bucket"`
	Region         string `json:"region"`
	Prefix         string `json:"prefix"`
	Endpoint       string `json:"endpoint"`
	ForcePathStyle bool   `json:"force_path_style"`
	StorageClass   string `json:"storage_class"`
	Checksum       string `json:"checksum"`
	AccessKey      Secret `json:"access_key"`
	AccessKeyFile  string `json:"access_key_file"`
	SecretKey      Secret `json:"secret_key"`
	SecretKeyFile  string `json:"secret_key_file"`
	CreateBucket   bool   `json:"create_bucket"`
	PartSizeMiB    int    `json:"part_size_mib"`
	Concurrency    int    `json:"concurrency"`
	MaxParts       int    `json:"max_parts"`
}

// Database is one PostgreSQL database to back up.
type Database struct {
	Name       string     `json:"name"`
	Type       string     `json:"type"`
	Connection Connection `json:"connection"`
	Backup     Backup     `json:"backup"`
	Retention  *Retention `json:"retention,omitempty"`
	Drill      *Drill     `json:"drill,omitempty"`
	Discover   *Discover  `json:"discover,omitempty"`
	Globals    bool       `json:"globals"`
}

// Discover makes a database entry a whole server: the databases whose
// names match the glob patterns.
type Discover struct {
	Include []string `json:"include"`
	Exclude []string `json:"exclude"`
}

// Drill says when and how a database's backups are restored and checked.
type Drill struct {
	Schedule       string      `json:"schedule"`
	Connection     *Connection `json:"connection,omitempty"` // nil: the source server
	MaxDurationRaw string      `json:"max_duration"`
	Checks         []Probe     `json:"checks"`

	// MaxDuration is max_duration parsed (0: no bound).
	MaxDuration time.Duration `json:"-"`
}

// Probe is one SQL check of a drill.
type Probe struct {
	Name string `json:"name"`
	SQL  string `json:"sql"`
}

// Connection says how to reach the database.
type Connection struct {
	Host         string `json:"host"`
	Port         int    `json:"port"`
	Database     string `json:"database"`
	User         string `json:"user"`
	Password     Secret `json:"password"`
	PasswordFile string `json:"password_file"`
	SSLMode      string `json:"sslmode"`
	SSLRootCert  string `json:"sslrootcert"`
	SSLCert      string `json:"sslcert"`
	SSLKey       string `json:"sslkey"`
}

// Compression names a codec of package format ("none", "gzip", "zstd").
type Compression string

// CompressionNone is the default: no compression.
const CompressionNone Compression = "none"

// UnmarshalJSON accepts the v0 booleans (true = gzip) and the names.
func (c *Compression) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case bool:
		*c = CompressionNone
		if v {
			*c = Compression(format.Gzip)
		}
	case string:
		*c = Compression(v)
	default:
		return fmt.Errorf("compression: want a boolean or a name, got %s", b)
	}
	return nil
}

// StorageNames is one storage name (v0) or a list of them.
type StorageNames []string

// UnmarshalJSON accepts a string or a list of strings.
func (s *StorageNames) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = StorageNames{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// Backup says when and how a database is backed up.
type Backup struct {
	Schedule         string       `json:"schedule"`
	Storage          StorageNames `json:"storage"`
	Compression      Compression  `json:"compression"`
	CompressionLevel int          `json:"compression_level"`
	Timezone         string       `json:"timezone"`
	AlertAfterRaw    string       `json:"alert_after"`
	LockWaitRaw      string       `json:"lock_wait_timeout"`
	Encryption       *Encryption  `json:"encryption,omitempty"`

	// Location is Timezone, loaded.
	Location *time.Location `json:"-"`
	// AlertAfter is alert_after parsed; zero means "twice the interval".
	AlertAfter time.Duration `json:"-"`
	// LockWait is lock_wait_timeout parsed (default 5m; 0 = forever).
	LockWait time.Duration `json:"-"`
}

// Encrypted reports whether backups are encrypted.
func (b Backup) Encrypted() bool { return b.Encryption != nil && b.Encryption.Enabled }

// Encryption holds the backup encryption password, or the age
// recipients (and where restores happen, the identity file).
type Encryption struct {
	Enabled        bool     `json:"enabled"`
	Password       Secret   `json:"password"`
	PasswordFile   string   `json:"password_file"`
	Recipients     []string `json:"recipients"`
	RecipientsFile string   `json:"recipients_file"`
	IdentityFile   string   `json:"identity_file"`

	// AgeRecipients are recipients and recipients_file, parsed.
	AgeRecipients format.Recipients `json:"-"`
}

// Age reports whether new backups are age-encrypted.
func (e *Encryption) Age() bool { return e != nil && e.Enabled && e.AgeRecipients.Len() > 0 }

// Retention is a restic-style set of keep rules. A nil *Retention keeps
// everything.
type Retention struct {
	KeepLast    int `json:"keep_last"`
	KeepHourly  int `json:"keep_hourly"`
	KeepDaily   int `json:"keep_daily"`
	KeepWeekly  int `json:"keep_weekly"`
	KeepMonthly int `json:"keep_monthly"`
	KeepYearly  int `json:"keep_yearly"`
}

// Notification is one route for events.
type Notification struct {
	Type   string             `json:"type"`
	On     []string           `json:"on"`
	Config NotificationConfig `json:"config"`
}

// Wants reports whether the route subscribes to an event outcome
// ("success", "failure", "overdue", "recovered").
func (n Notification) Wants(outcome string) bool {
	for _, o := range n.On {
		if o == outcome || (o == "both" && (outcome == "success" || outcome == "failure")) {
			return true
		}
	}
	return false
}

// NotificationConfig is the union of the webhook, email and healthchecks
// settings; the schema allows only the fields of the route's type.
type NotificationConfig struct {
	URL      Secret            `json:"url"`
	URLFile  string            `json:"url_file"`
	Headers  map[string]Secret `json:"headers"`
	Format   string            `json:"format"`
	SMTPHost string            `json:"smtp_host"`
	SMTPPort int               `json:"smtp_port"`
	From     string            `json:"from"`
	To       string            `json:"to"`
	Username string            `json:"username"`
	Password Secret            `json:"password"`
	PassFile string            `json:"password_file"`
	TLS      string            `json:"tls"`

	MaxAttempts int    `json:"max_attempts"`
	MaxWaitRaw  string `json:"max_wait"`
	// MaxWait is max_wait parsed (default 2m).
	MaxWait time.Duration `json:"-"`
}

// Recipients splits the comma-separated "to" field.
func (c NotificationConfig) Recipients() []string {
	var out []string
	for _, r := range strings.Split(c.To, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// Database returns the database with that name, or nil.
func (c *Config) Database(name string) *Database {
	for i := range c.Databases {
		if c.Databases[i].Name == name {
			return &c.Databases[i]
		}
	}
	return nil
}
