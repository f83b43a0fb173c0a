package schema

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var v0Env = map[string]string{
	"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
	"DB_PASSWORD": "db-password-value", "BACKUPKIT_ENC_PASSWORD": "enc-password-value",
	"BACKUP_WEBHOOK_URL": "https://hooks.example.com/T000/B000/XXXX", "BACKUP_WEBHOOK_TOKEN": "webhook-token-value",
	"SMTP_USER": "mailer", "SMTP_PASSWORD": "smtp-password-value",
}

func envOf(m map[string]string) LookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestV0FullExampleLoads(t *testing.T) {
	cfg, err := LoadWith("testdata/v0-full.yaml", envOf(v0Env))
	if err != nil {
		t.Fatal(err)
	}
	db := cfg.Databases[0]
	if db.Backup.Compression != "gzip" || !db.Backup.Encrypted() || db.Backup.Timezone != "UTC" {
		t.Fatalf("backup = %+v", db.Backup)
	}
	if db.Connection.Password.Reveal() != "db-password-value" || db.Connection.Port != 5432 {
		t.Fatalf("connection = %+v", db.Connection)
	}
	if got := cfg.Notifications[0].Config.Headers["Authorization"].Reveal(); got != "Bearer webhook-token-value" {
		t.Fatalf("header expanded to %q", got)
	}
	if cfg.Notifications[1].Config.MaxAttempts != 5 || cfg.Notifications[1].Config.MaxWait.String() != "2m0s" {
		t.Fatalf("notification defaults: %+v", cfg.Notifications[1].Config)
	}
	if r := db.Retention; r.KeepDaily != 7 || r.KeepWeekly != 4 || r.KeepMonthly != 3 {
		t.Fatalf("retention = %+v", r)
	}
	if s := fmt.Sprintf("%v %+v %#v", db.Connection.Password, db.Connection, db.Connection.Password); strings.Contains(s, "db-password-value") {
		t.Fatalf("secret printed: %s", s)
	}
}

const base = `version: 1
storage:
  - name: local
    type: local
    local:
      path: /backups
  - name: s3main
    type: s3
    s3:
      bucket: b
      region: us-east-1
databases:
  - name: app_db
    type: postgres
    connection:
      host: 127.0.0.1
      database: app
      user: app
    backup:
      schedule: "0 2 * * *"
      storage: local
notifications:
  - type: email
    on: [failure]
    config:
      smtp_host: smtp.example.com
      smtp_port: 587
      from: a@example.com
      to: b@example.com
`

func write(t *testing.T, name, body string) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBaseIsValid(t *testing.T) {
	if _, err := LoadWith(write(t, "c.yaml", base), envOf(nil)); err != nil {
		t.Fatal(err)
	}
}

// Each rule, broken on purpose: the error names the field path and line.
func TestValidationRules(t *testing.T) {
	cases := []struct {
		name, from, to string
		path           string
		line           int
		msg            string
	}{
		{"version > 0", "version: 1", "version: 0", "version", 1, "out of bound"},
		{"storage names unique", "name: s3main", "name: local", "storage[1].name", 7, "already used"},
		{"storage type", "type: local\n", "type: ftp\n", "storage[0].type", 4, `must be one of "local", "s3"`},
		{"local path required", "path: /backups", "path: \"\"", "storage[0].local.path", 6, ""},
		{"s3 bucket required", "bucket: b\n", "\n", "storage[1].s3.bucket", 0, "missing"},
		{"s3 keys both or neither", "region: us-east-1", "region: us-east-1\n      access_key: AK", "storage[1].s3", 9, "both access_key and secret_key"},
		{"database type", "type: postgres", "type: mysql", "databases[0].type", 14, `must be "postgres"`},
		{"storage reference", "storage: local", "storage: nowhere", "databases[0].backup.storage", 21, `"nowhere" is not defined`},
		{"storage list reference", "storage: local", "storage: [local, nowhere]", "databases[0].backup.storage[1]", 21, `"nowhere" is not defined`},
		{"cron syntax", `schedule: "0 2 * * *"`, `schedule: "0 25 * * *"`, "databases[0].backup.schedule", 20, "invalid cron"},
		{"cron fields", `schedule: "0 2 * * *"`, `schedule: "0 2 * *"`, "databases[0].backup.schedule", 20, "5 fields"},
		{"timezone exists", "storage: local", "storage: local\n      timezone: Mars/Olympus", "databases[0].backup.timezone", 22, "unknown time zone"},
		{"compression value", "storage: local", "storage: local\n      compression: lz4", "databases[0].backup.compression", 22, "must be true, false, \"gzip\""},
		{"retention >= 0", "storage: local", "storage: local\n    retention:\n      keep_daily: -1", "databases[0].retention.keep_daily", 23, "out of bound"},
		{"unknown field typo", "storage: local", "storage: local\n    retention:\n      keep_dialy: 7", "databases[0].retention.keep_dialy", 23, "did you mean keep_daily?"},
		{"field in the wrong place", "storage: local", "storage: local\n      keep_daily: 7", "databases[0].backup.keep_daily", 22, "keep_daily is not a field here: it belongs under databases[].retention"},
		{"field with a checked value in the wrong place", "user: app", "user: app\n      compression: gzip", "databases[0].connection.compression", 19, "compression is not a field here: it belongs under databases[].backup"},
		{"notification type", "type: email", "type: pager", "notifications[0].type", 23, "must be one of"},
		{"on values", "on: [failure]", "on: [sometimes]", "notifications[0].on[0]", 24, "must be one of"},
		{"on not empty", "on: [failure]", "on: []", "notifications[0].on", 24, ""},
		{"email username+password", "to: b@example.com", "to: b@example.com\n      username: u", "notifications[0].config", 25, "both username and password"},
		{"email smtp_port required", "smtp_port: 587\n", "\n", "notifications[0].config.smtp_port", 0, "missing"},
		{"encryption needs a password", "storage: local", "storage: local\n      encryption:\n        enabled: true", "databases[0].backup.encryption", 22, "neither password"},
		{"alert_after duration", "storage: local", "storage: local\n      alert_after: soon", "databases[0].backup.alert_after", 22, "invalid duration"},
		{"password and password_file", "user: app", "user: app\n      password: x\n      password_file: /etc/hostname", "databases[0].connection.password_file", 20, "not both"},
		{"database required without discover", "      database: app\n", "", "databases[0].connection", 15, "connection.database is required"},
		{"globals need discover", "storage: local", "storage: local\n    globals: true", "databases[0].globals", 22, "add discover"},
		{"discover glob", "storage: local", "storage: local\n    discover: {include: [\"[a-\"]}", "databases[0].discover", 22, "not a valid glob"},
		{"discovered names are taken", "notifications:", "  - name: app_db.sales\n    type: postgres\n    connection: {host: h, user: u, database: sales}\n    backup: {storage: local}\n  - name: app_db2\n    type: postgres\n    connection: {host: h, user: u}\n    discover: {}\n    backup: {storage: local}\n  - name: app_db2.x\n    type: postgres\n    connection: {host: h, user: u, database: x}\n    backup: {storage: local}\nnotifications:", "databases[3].name", 0, "taken by the databases databases[2]"},
		{"unreadable secret file", "user: app", "user: app\n      password_file: /nonexistent/secret", "databases[0].connection.password_file", 19, "cannot read secret file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(base, c.from) {
				t.Fatalf("bad test: %q not in base", c.from)
			}
			p := write(t, "c.yaml", strings.Replace(base, c.from, c.to, 1))
			_, err := LoadWith(p, envOf(nil))
			var ce *Error
			if err == nil || !asError(err, &ce) {
				t.Fatalf("want a config error, got %v", err)
			}
			found := false
			for _, pr := range ce.Problems {
				if pr.Path == c.path && strings.Contains(pr.Msg, c.msg) {
					found = true
					if c.line > 0 && !strings.HasPrefix(pr.Pos, fmt.Sprintf("%s:%d:", p, c.line)) {
						t.Errorf("position %s, want line %d", pr.Pos, c.line)
					}
					if c.line == 0 && !strings.HasPrefix(pr.Pos, p) {
						t.Errorf("position %q does not name the file", pr.Pos)
					}
				}
			}
			if !found {
				t.Fatalf("no problem at %s containing %q in:\n%v", c.path, c.msg, err)
			}
		})
	}
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	if ok {
		*target = e
	}
	return ok
}

func TestAllProblemsAtOnce(t *testing.T) {
	body := strings.NewReplacer("type: local\n", "type: ftp\n", `"0 2 * * *"`, `"bad"`, "storage: local", "storage: nowhere").Replace(base)
	_, err := LoadWith(write(t, "c.yaml", body), envOf(nil))
	ce, ok := err.(*Error)
	if !ok || len(ce.Problems) < 3 {
		t.Fatalf("want 3+ problems, got %v", err)
	}
}

func TestEnvExpansion(t *testing.T) {
	body := strings.Replace(base, "user: app", "user: ${DB_USER:-fallback}\n      password: \"${DB_PASS}\"", 1)
	body = strings.Replace(body, "path: /backups", "path: /data/$${NOT_A_VAR}/${ROOT}", 1)
	cfg, err := LoadWith(write(t, "c.yaml", body), envOf(map[string]string{"DB_PASS": "pa$$word", "ROOT": "r"}))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Databases[0].Connection
	if c.User != "fallback" || c.Password.Reveal() != "pa$$word" {
		t.Fatalf("user %q password %q", c.User, c.Password.Reveal())
	}
	if p := cfg.Storage[0].Local.Path; p != "/data/${NOT_A_VAR}/r" {
		t.Fatalf("path %q", p)
	}
	_, err = LoadWith(write(t, "c.yaml", body), envOf(nil))
	if err == nil || !strings.Contains(err.Error(), "DB_PASS is not set") || !strings.Contains(err.Error(), "databases[0].connection.password") {
		t.Fatalf("unset variable: %v", err)
	}
}

func TestSecretFilesAndNoEcho(t *testing.T) {
	secret := write(t, "pw", "file-secret-value\n")
	body := strings.Replace(base, "user: app", "user: app\n      password_file: "+secret, 1)
	// A broken field next to an expanded secret: the error must not echo it.
	body = strings.Replace(body, "smtp_host: smtp.example.com", "smtp_host: smtp.example.com\n      username: u\n      password: ${SMTP_PW}", 1)
	body = strings.Replace(body, "to: b@example.com", "to: \"\"", 1)
	cfg, err := LoadWith(write(t, "c.yaml", strings.Replace(body, `to: ""`, "to: b@example.com", 1)), envOf(map[string]string{"SMTP_PW": "smtp-secret-xyz"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Databases[0].Connection.Password.Reveal() != "file-secret-value" {
		t.Fatalf("password_file not read: %q", cfg.Databases[0].Connection.Password.Reveal())
	}
	bad := strings.Replace(body, "on: [failure]", "on: [smtp-secret-xyz]", 1)
	_, err = LoadWith(write(t, "c.yaml", bad), envOf(map[string]string{"SMTP_PW": "smtp-secret-xyz"}))
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	// "on" is not a secret field, so its own value may be shown; the
	// expanded SMTP password must not be.
	if strings.Count(err.Error(), "smtp-secret-xyz") > 0 {
		t.Fatalf("secret echoed: %v", err)
	}
}

func TestFormats(t *testing.T) {
	j := `{"version":1,"storage":[{"name":"l","type":"local","local":{"path":"/b"}}],
 "databases":[{"name":"d","type":"postgres","connection":{"host":"h","database":"d","user":"u"},"backup":{"storage":["l"],"compression":"zstd"}}]}`
	cfg, err := LoadWith(write(t, "c.json", j), envOf(nil))
	if err != nil || cfg.Databases[0].Backup.Compression != "zstd" {
		t.Fatalf("json: %v", err)
	}
	c := `version: 1
storage: [{name: "l", type: "local", local: path: "/b"}]
databases: [{name: "d", type: "postgres", connection: {host: "h", database: "d", user: "u"}, backup: {storage: "l", timezone: "Europe/Berlin"}}]
`
	cfg, err = LoadWith(write(t, "c.cue", c), envOf(nil))
	if err != nil || cfg.Databases[0].Backup.Location.String() != "Europe/Berlin" {
		t.Fatalf("cue: %v", err)
	}
	if _, err := LoadWith(write(t, "c.toml", "x"), envOf(nil)); err == nil || !strings.Contains(err.Error(), "unknown config format") {
		t.Fatalf("toml: %v", err)
	}
	if _, err := LoadWith(write(t, "c.yaml", "version: [1\n"), envOf(nil)); err == nil {
		t.Fatal("broken yaml accepted")
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(base))
	seed, _ := os.ReadFile("testdata/v0-full.yaml")
	f.Add(seed)
	f.Add([]byte("version: 1\nstorage: 5\n"))
	f.Add([]byte("databases: [{backup: {storage: [1, 2]}}]"))
	f.Add([]byte("version: ${X:-1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		Parse("fuzz.yaml", data, envOf(map[string]string{"X": "1"}))
		Parse("fuzz.json", data, envOf(nil))
	})
}

// A secret of the wrong type (an unquoted number) is still a secret: the
// error names the field and the problem, never the value.
func TestNumericSecretNotEchoed(t *testing.T) {
	body := strings.Replace(base, "user: app", "user: app\n      password: 8675309123", 1)
	_, err := LoadWith(write(t, "c.yaml", body), envOf(nil))
	if err == nil || !strings.Contains(err.Error(), "databases[0].connection.password: must be string") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "8675309123") {
		t.Fatalf("a numeric secret was echoed: %v", err)
	}
}

// A schedule that never fires (31 February) is rejected instead of
// making every apply take a backup.
func TestScheduleThatNeverFiresRejected(t *testing.T) {
	body := strings.Replace(base, `schedule: "0 2 * * *"`, `schedule: "0 0 31 2 *"`, 1)
	if !strings.Contains(body, "0 0 31 2 *") {
		t.Fatal("base has no schedule to replace")
	}
	_, err := LoadWith(write(t, "c.yaml", body), envOf(nil))
	if err == nil || !strings.Contains(err.Error(), "never fires") {
		t.Fatalf("err = %v", err)
	}
}

func TestWholeServerEntry(t *testing.T) {
	body := strings.Replace(base, "      database: app\n", "", 1)
	body = strings.Replace(body, "      storage: local\n", "      storage: local\n    discover:\n      exclude: [\"template*\", \"*_scratch\"]\n    globals: true\n", 1)
	cfg, err := LoadWith(write(t, "c.yaml", body), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Databases[0]
	if d.Discover == nil || !reflect.DeepEqual(d.Discover.Include, []string{"*"}) || len(d.Discover.Exclude) != 2 || !d.Globals {
		t.Fatalf("discover = %+v, globals = %v", d.Discover, d.Globals)
	}
	if d.Connection.Database != "postgres" {
		t.Errorf("discovery connects to %q, want postgres", d.Connection.Database)
	}
}
