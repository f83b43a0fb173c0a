package main

import (
	_ "embed"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/schema"
)

//go:embed starter.yaml.tmpl
var starterText string

var starter = template.Must(template.New("config").Parse(starterText))

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
			if u, err := url.Parse(dbURL); err == nil && u.User != nil {
				if _, has := u.User.Password(); has {
					fmt.Fprintln(g.stdout, "the password from --database-url was not written: export DB_PASSWORD")
				}
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
