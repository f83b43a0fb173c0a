package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/alerting"
	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/reconcile"
	"github.com/backupkit/backupkit/schema"
	"github.com/backupkit/backupkit/sinks"
)

var starter = template.Must(template.New("config").Parse(`# BackupKit configuration, written by "backupkit init".
# Check it with "backupkit validate -c {{.File}}", the setup with
# "backupkit test -c {{.File}}", and see what would happen with
# "backupkit plan -c {{.File}}". Strings may use ${VAR} and ${VAR:-default}.
version: 1

storage:
{{- if .S3}}
  - name: s3main
    type: s3
    s3:
      bucket: "{{.Bucket}}"
      region: "us-east-1"
{{- if .Prefix}}
      prefix: "{{.Prefix}}"
{{- end}}
      # For MinIO, R2, B2, Ceph…: endpoint and force_path_style.
      # endpoint: "http://minio:9000"
      # force_path_style: true
      # Keys: leave both out to use the AWS credential chain, or
      # access_key_file / secret_key_file for Docker secrets.
      # access_key: "${AWS_ACCESS_KEY_ID}"
      # secret_key: "${AWS_SECRET_ACCESS_KEY}"
{{- else}}
  - name: local
    type: local
    local:
      path: "{{.Path}}"
{{- end}}

databases:
  - name: {{.Name}}
    type: postgres
    connection:
      host: "{{.Host}}"
      port: {{.Port}}
      database: "{{.Database}}"
      user: "{{.User}}"
      # Never write the password here: use the environment or a file.
      password: "${DB_PASSWORD:-}"
      # password_file: /run/secrets/db_password
{{- if .SSLMode}}
      sslmode: "{{.SSLMode}}"
{{- end}}
    backup:
      # 5-field cron, in the time zone below; empty = only on demand.
      schedule: "0 2 * * *"
      timezone: "UTC"
      # One storage name, or a list to write the same dump to several.
      storage: {{if .S3}}s3main{{else}}local{{end}}
      # true/false (v0), or "gzip", "zstd", "none".
      compression: zstd
      encryption:
        enabled: false
        # password: "${BACKUPKIT_ENC_PASSWORD}"
    retention:
      keep_last: 3
      keep_daily: 7
      keep_weekly: 4
      keep_monthly: 6

# notifications:
#   - type: webhook
#     on: [failure, overdue, recovered]
#     config:
#       url: "${BACKUP_WEBHOOK_URL}"
#       format: slack
#   - type: healthchecks
#     on: [both]
#     config:
#       url: "https://hc-ping.com/${HEALTHCHECK_UUID}"
`))

type starterData struct {
	File, Path, Bucket, Prefix          string
	S3                                  bool
	Name, Host, Database, User, SSLMode string
	Port                                int
}

func newInitCmd(g *globals) *cobra.Command {
	var out, dbURL, storage string
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a commented, valid starter config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := starterFrom(dbURL, storage)
			if err != nil {
				return err
			}
			d.File = out
			if _, err := os.Stat(out); err == nil && !force {
				return usagef("%s exists; pass --force to overwrite it", out)
			}
			var b strings.Builder
			if err := starter.Execute(&b, d); err != nil {
				return err
			}
			// The file must load: check before writing it.
			if _, err := schema.Parse(out, []byte(b.String()), func(k string) (string, bool) { return os.LookupEnv(k) }); err != nil {
				return fmt.Errorf("generated config does not validate (a bug): %w", err)
			}
			if err := os.WriteFile(out, []byte(b.String()), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "wrote %s: database %s → %s\nnext: backupkit test -c %s\n", out, d.Name, storageDesc(d), out)
			if strings.Contains(dbURL, "@") && strings.Contains(strings.SplitN(dbURL, "@", 2)[0], ":") {
				fmt.Fprintln(g.stdout, "the password from --database-url was not written: export DB_PASSWORD")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "backupkit.yaml", "file to write")
	f.StringVar(&dbURL, "database-url", "postgres://postgres@127.0.0.1:5432/postgres", "database to back up")
	f.StringVar(&storage, "storage", "./backups", "a folder, or s3://bucket/prefix")
	f.BoolVar(&force, "force", false, "overwrite an existing file")
	return cmd
}

func storageDesc(d starterData) string {
	if d.S3 {
		return "s3://" + d.Bucket + "/" + d.Prefix
	}
	return d.Path
}

func starterFrom(dbURL, storage string) (starterData, error) {
	var d starterData
	u, err := url.Parse(dbURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return d, usagef("--database-url: want postgres://user@host:port/dbname")
	}
	d.Host = u.Hostname()
	d.Port = 5432
	if p := u.Port(); p != "" {
		if d.Port, err = strconv.Atoi(p); err != nil {
			return d, usagef("--database-url: bad port %q", p)
		}
	}
	d.User = u.User.Username()
	if d.User == "" {
		d.User = "postgres"
	}
	d.Database = strings.TrimPrefix(u.Path, "/")
	if d.Database == "" {
		d.Database = d.User
	}
	d.SSLMode = u.Query().Get("sslmode")
	d.Name = strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
			return r
		}
		return '_'
	}, d.Database)
	if strings.HasPrefix(storage, "s3://") {
		rest := strings.TrimPrefix(storage, "s3://")
		d.S3 = true
		d.Bucket, d.Prefix, _ = strings.Cut(rest, "/")
		d.Prefix = strings.Trim(d.Prefix, "/")
		if d.Bucket == "" {
			return d, usagef("--storage: want s3://bucket/prefix")
		}
	} else {
		abs, err := filepath.Abs(storage)
		if err != nil {
			return d, err
		}
		d.Path = abs
	}
	return d, nil
}

// checklist prints ✓/✗ lines and remembers failures.
type checklist struct {
	w      io.Writer
	failed int
}

func (c *checklist) ok(format string, args ...any) { fmt.Fprintf(c.w, "✓ "+format+"\n", args...) }

func (c *checklist) fail(hint string, format string, args ...any) {
	c.failed++
	fmt.Fprintf(c.w, "✗ "+format+"\n", args...)
	if hint != "" {
		fmt.Fprintf(c.w, "    hint: %s\n", hint)
	}
}

func newTestCmd(g *globals) *cobra.Command {
	var notify bool
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Check the setup: databases, pg_dump, storages, notification routes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.env(cmd.Context(), "")
			if err != nil {
				return err
			}
			c := &checklist{w: g.stdout}
			g.checkSetup(cmd.Context(), e, c, notify)
			if c.failed > 0 {
				return fmt.Errorf("%d check(s) failed", c.failed)
			}
			fmt.Fprintln(g.stdout, "all checks passed")
			return nil
		},
	}
	cmd.Flags().BoolVar(&notify, "notify", false, "send a test event to every notification route")
	return cmd
}

func (g *globals) checkSetup(ctx context.Context, e *env, c *checklist, notify bool) {
	dumpMajor, dumpVersion, dumpErr := exec.ToolVersion(ctx, "pg_dump")
	if dumpErr != nil {
		c.fail("install the PostgreSQL client tools (postgresql-client) matching your server", "pg_dump: %v", dumpErr)
	} else {
		c.ok("%s", dumpVersion)
	}
	for i := range e.cfg.Databases {
		db := &e.cfg.Databases[i]
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		v, err := exec.ServerVersion(cctx, reconcile.ConnOf(db))
		cancel()
		switch {
		case err != nil:
			c.fail("check host, port, user, password and that the server accepts this client (pg_hba.conf)", "database %s: not reachable: %v", db.Name, err)
		case dumpErr == nil && dumpMajor < v:
			c.fail(fmt.Sprintf("install pg_dump %d or newer: an older pg_dump cannot dump a newer server", v),
				"database %s: PostgreSQL %d, but pg_dump is %d", db.Name, v, dumpMajor)
		default:
			c.ok("database %s: reachable, PostgreSQL %d", db.Name, v)
		}
	}
	for _, st := range e.cfg.Storage {
		if err := probe(ctx, e.stores[st.Name]); err != nil {
			c.fail("check the path or bucket exists and that BackupKit may write, read and delete there", "storage %s (%s): %v", st.Name, e.stores[st.Name].Describe(), err)
		} else {
			c.ok("storage %s (%s): write, read back, delete", st.Name, e.stores[st.Name].Describe())
		}
	}
	for i, n := range e.cfg.Notifications {
		name := fmt.Sprintf("notification %d (%s, on %s)", i, n.Type, strings.Join(n.On, ","))
		if !notify {
			c.ok("%s: well-formed (send a test event with --notify)", name)
			continue
		}
		d := alerting.New([]schema.Notification{n}, g.log, alerting.Options{})
		if err := d.Send(ctx, alerting.NewEvent(alerting.KindTest, "", "success")); err != nil {
			c.fail("check the URL or SMTP settings; the error above says what the server answered", "%s: %v", name, err)
		} else {
			c.ok("%s: test event delivered", name)
		}
	}
}

// probe writes, reads back and deletes a small object.
func probe(ctx context.Context, s sinks.Sink) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	key := ".backupkit-probe/" + strconv.FormatInt(time.Now().UnixNano(), 36)
	want := "backupkit probe " + key
	if _, err := s.Put(ctx, key, strings.NewReader(want)); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	defer s.Delete(context.WithoutCancel(ctx), key)
	rc, err := s.Open(ctx, key)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if string(got) != want {
		return errors.New("read back different bytes")
	}
	if err := s.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}
