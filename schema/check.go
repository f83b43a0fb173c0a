package schema

import (
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/token"
	"github.com/robfig/cron/v3"

	"github.com/backupkit/backupkit/format"
)

// cronParser parses the 5-field cron expressions (and @daily-style
// descriptors) used by backup.schedule, as reconcile does.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// posOf finds where a field path stands in the config file.
func posOf(data cue.Value, path string) token.Pos {
	for path != "" {
		v := data.LookupPath(cue.ParsePath(path))
		if v.Exists() {
			return v.Pos()
		}
		// Fall back to the parent (a missing field's struct).
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return token.NoPos
}

// resolveFiles replaces every *_file twin with the file's contents.
func (l *loader) resolveFiles(c *Config, data cue.Value) {
	twin := func(path string, val *Secret, file string) {
		if file == "" {
			return
		}
		if *val != "" {
			l.add(path+"_file", posOf(data, path+"_file"), "set either %s or %s_file, not both", lastName(path), lastName(path))
			return
		}
		b, err := os.ReadFile(file)
		if err != nil {
			l.add(path+"_file", posOf(data, path+"_file"), "cannot read secret file %s: %v", file, errText(err))
			*val = "unreadable" // reported once, not again as "missing"
			return
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			l.add(path+"_file", posOf(data, path+"_file"), "secret file %s is empty", file)
			return
		}
		l.secrets = append(l.secrets, s)
		*val = Secret(s)
	}
	for i := range c.Storage {
		if s3 := c.Storage[i].S3; s3 != nil {
			p := fmt.Sprintf("storage[%d].s3.", i)
			twin(p+"access_key", &s3.AccessKey, s3.AccessKeyFile)
			twin(p+"secret_key", &s3.SecretKey, s3.SecretKeyFile)
		}
	}
	for i := range c.Databases {
		d := &c.Databases[i]
		p := fmt.Sprintf("databases[%d].", i)
		twin(p+"connection.password", &d.Connection.Password, d.Connection.PasswordFile)
		if dr := d.Drill; dr != nil && dr.Connection != nil {
			twin(p+"drill.connection.password", &dr.Connection.Password, dr.Connection.PasswordFile)
		}
		if e := d.Backup.Encryption; e != nil {
			twin(p+"backup.encryption.password", &e.Password, e.PasswordFile)
		}
	}
	for i := range c.Notifications {
		n := &c.Notifications[i].Config
		p := fmt.Sprintf("notifications[%d].config.", i)
		twin(p+"url", &n.URL, n.URLFile)
		twin(p+"password", &n.Password, n.PassFile)
	}
}

func lastName(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// check enforces the rules a schema cannot say on its own: references,
// cron syntax, time zones, both-or-neither pairs.
func (l *loader) check(c *Config, data cue.Value) {
	at := func(path string) token.Pos { return posOf(data, path) }

	storages := map[string]int{}
	var names []string
	for i, s := range c.Storage {
		p := fmt.Sprintf("storage[%d].name", i)
		if j, dup := storages[s.Name]; dup {
			l.add(p, at(p), "storage name %q is already used by storage[%d]; names must be unique", s.Name, j)
			continue
		}
		storages[s.Name] = i
		names = append(names, fmt.Sprintf("%q", s.Name))
		if s3 := s.S3; s3 != nil {
			if (s3.AccessKey == "") != (s3.SecretKey == "") {
				p := fmt.Sprintf("storage[%d].s3", i)
				l.add(p, at(p), "set both access_key and secret_key, or neither (to use the AWS credential chain)")
			}
		}
	}
	if len(c.Databases) == 0 {
		l.add("databases", at("databases"), "at least one database is required")
	}
	dbs := map[string]int{}
	for i := range c.Databases {
		d := &c.Databases[i]
		p := fmt.Sprintf("databases[%d]", i)
		if j, dup := dbs[d.Name]; dup {
			l.add(p+".name", at(p+".name"), "database name %q is already used by databases[%d]; names must be unique", d.Name, j)
		}
		dbs[d.Name] = i
		l.checkDiscover(c, d, i, at)
		seen := map[string]bool{}
		for k, s := range d.Backup.Storage {
			sp := p + ".backup.storage"
			if len(d.Backup.Storage) > 1 {
				sp = fmt.Sprintf("%s[%d]", sp, k)
			}
			if _, ok := storages[s]; !ok {
				l.add(sp, at(sp), "storage %q is not defined; must be one of %s", s, orNone(names))
			}
			if seen[s] {
				l.add(sp, at(sp), "storage %q is listed twice", s)
			}
			seen[s] = true
		}
		if d.Backup.Schedule != "" {
			sp := p + ".backup.schedule"
			if sched, err := cronParser.Parse(d.Backup.Schedule); err != nil {
				l.add(sp, at(sp), "invalid cron expression %q: %v (want 5 fields: minute hour day-of-month month day-of-week)", d.Backup.Schedule, err)
			} else if sched.Next(time.Now()).IsZero() {
				l.add(sp, at(sp), "schedule %q never fires (no such date in the next 5 years)", d.Backup.Schedule)
			}
		}
		if d.Backup.Timezone == "" {
			d.Backup.Timezone = "UTC"
		}
		loc, err := time.LoadLocation(d.Backup.Timezone)
		if err != nil || d.Backup.Timezone == "Local" {
			sp := p + ".backup.timezone"
			l.add(sp, at(sp), "unknown time zone %q: want an IANA name such as \"UTC\" or \"Europe/Berlin\"", d.Backup.Timezone)
		}
		d.Backup.Location = loc
		if d.Backup.AlertAfterRaw != "" {
			dur, err := time.ParseDuration(d.Backup.AlertAfterRaw)
			if err != nil || dur <= 0 {
				sp := p + ".backup.alert_after"
				l.add(sp, at(sp), "invalid duration %q: want a positive Go duration such as \"36h\"", d.Backup.AlertAfterRaw)
			}
			d.Backup.AlertAfter = dur
		}
		d.Backup.LockWait = 5 * time.Minute
		if d.Backup.LockWaitRaw != "" {
			dur, err := time.ParseDuration(d.Backup.LockWaitRaw)
			if err != nil || dur < 0 {
				sp := p + ".backup.lock_wait_timeout"
				l.add(sp, at(sp), "invalid duration %q: want a Go duration such as \"5m\" (\"0s\" waits forever)", d.Backup.LockWaitRaw)
			}
			d.Backup.LockWait = dur
		}
		if d.Backup.Compression == "" {
			d.Backup.Compression = CompressionNone
		}
		if lv := d.Backup.CompressionLevel; lv != 0 {
			if lo, hi, ok := format.Levels(format.Compression(d.Backup.Compression)); !ok || lv < lo || lv > hi {
				sp := p + ".backup.compression_level"
				l.add(sp, at(sp), "compression_level %d is out of range for %s (%s)", lv, d.Backup.Compression, levelRanges())
			}
		}
		if dr := d.Drill; dr != nil {
			if dr.Schedule != "" {
				sp := p + ".drill.schedule"
				if sched, err := cronParser.Parse(dr.Schedule); err != nil {
					l.add(sp, at(sp), "invalid cron expression %q: %v", dr.Schedule, err)
				} else if sched.Next(time.Now()).IsZero() {
					l.add(sp, at(sp), "schedule %q never fires (no such date in the next 5 years)", dr.Schedule)
				}
			}
			if dr.MaxDurationRaw != "" {
				dur, err := time.ParseDuration(dr.MaxDurationRaw)
				if err != nil || dur <= 0 {
					sp := p + ".drill.max_duration"
					l.add(sp, at(sp), "invalid duration %q: want a positive Go duration such as \"2h\"", dr.MaxDurationRaw)
				}
				dr.MaxDuration = dur
			}
		}
		if e := d.Backup.Encryption; e != nil {
			l.checkRecipients(p+".backup.encryption", e, at)
			if e.Enabled && e.Password == "" && e.AgeRecipients.Len() == 0 {
				sp := p + ".backup.encryption"
				l.add(sp, at(sp), "encryption is enabled but neither password (password_file) nor recipients (recipients_file) is set")
			}
		}
	}
	for i := range c.Notifications {
		n := &c.Notifications[i]
		p := fmt.Sprintf("notifications[%d].config", i)
		switch n.Type {
		case "webhook", "healthchecks":
			if n.Config.URL == "" {
				l.add(p+".url", at(p), "url (or url_file) is required for a %s route", n.Type)
			} else if !strings.HasPrefix(n.Config.URL.Reveal(), "http://") && !strings.HasPrefix(n.Config.URL.Reveal(), "https://") {
				l.add(p+".url", at(p+".url"), "url must start with http:// or https://")
			}
		case "email":
			if (n.Config.Username == "") != (n.Config.Password == "") {
				l.add(p, at(p), "set both username and password, or neither")
			}
			if len(n.Config.Recipients()) == 0 {
				l.add(p+".to", at(p+".to"), "at least one recipient is required")
			}
		}
		if n.Config.MaxAttempts == 0 {
			n.Config.MaxAttempts = 5
		}
		n.Config.MaxWait = 2 * time.Minute
		if n.Config.MaxWaitRaw != "" {
			dur, err := time.ParseDuration(n.Config.MaxWaitRaw)
			if err != nil || dur <= 0 {
				l.add(p+".max_wait", at(p+".max_wait"), "invalid duration %q: want a positive Go duration such as \"2m\"", n.Config.MaxWaitRaw)
			}
			n.Config.MaxWait = dur
		}
	}
}

// levelRanges describes every codec's levels: "gzip: 1-9, zstd: 1-4".
func levelRanges() string {
	var parts []string
	for _, c := range format.Compressions() {
		if lo, hi, ok := format.Levels(c); ok {
			parts = append(parts, fmt.Sprintf("%s: %d-%d", c, lo, hi))
		}
	}
	return strings.Join(parts, ", ")
}

// checkRecipients reads recipients_file and parses every recipient.
func (l *loader) checkRecipients(p string, e *Encryption, at func(string) token.Pos) {
	entries := append([]string(nil), e.Recipients...)
	if e.RecipientsFile != "" {
		b, err := os.ReadFile(e.RecipientsFile)
		if err != nil {
			l.add(p+".recipients_file", at(p+".recipients_file"), "cannot read recipients file %s: %v", e.RecipientsFile, errText(err))
			return
		}
		entries = append(entries, strings.Split(string(b), "\n")...)
	}
	if len(entries) == 0 {
		return
	}
	r, err := format.ParseRecipients(entries)
	if err != nil {
		l.add(p+".recipients", at(p+".recipients"), "%v", err)
		return
	}
	e.AgeRecipients = r
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "(no storage is defined)"
	}
	return strings.Join(names, ", ")
}

// checkDiscover: a whole-server entry's connection may leave the
// database out (discovery connects to "postgres"); any other entry needs
// it. Patterns must parse, and no other entry may take a name a
// discovered database would get ("prod.sales" beside a server "prod").
func (l *loader) checkDiscover(c *Config, d *Database, i int, at func(string) token.Pos) {
	p := fmt.Sprintf("databases[%d]", i)
	if d.Discover == nil {
		if d.Connection.Database == "" {
			l.add(p+".connection", at(p+".connection"), "connection.database is required (or discover the server's databases with discover: {include: [\"*\"]})")
		}
		if d.Globals {
			l.add(p+".globals", at(p+".globals"), "globals are stored for whole-server entries: add discover (its roles are then restored with restore --globals)")
		}
	} else {
		if d.Connection.Database == "" {
			d.Connection.Database = "postgres"
		}
		for k, pat := range append(append([]string{}, d.Discover.Include...), d.Discover.Exclude...) {
			if _, err := path.Match(pat, ""); err != nil {
				l.add(p+".discover", at(p+".discover"), "pattern %d %q is not a valid glob: %v", k, pat, err)
			}
		}
	}
	for j := range c.Databases {
		o := &c.Databases[j]
		if j != i && o.Discover != nil && strings.HasPrefix(d.Name, o.Name+".") {
			l.add(p+".name", at(p+".name"), "database name %q is taken by the databases databases[%d] (%s) discovers: rename one", d.Name, j, o.Name)
		}
	}
}
