package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/backupkit/backupkit/reconcile"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/backupkit/backupkit/alerting"
	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/pg"
	"github.com/backupkit/backupkit/sinks"
)

// checklist prints ✓/✗ lines (or collects them for -o json) and
// remembers failures.
type checklist struct {
	w      io.Writer // nil: collect only
	failed int
	items  []checkJSON
}

type checkJSON struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Hint   string `json:"hint,omitempty"`
}

func (c *checklist) ok(format string, args ...any) {
	c.items = append(c.items, checkJSON{OK: true, Detail: fmt.Sprintf(format, args...)})
	if c.w != nil {
		fmt.Fprintf(c.w, "✓ "+format+"\n", args...)
	}
}

func (c *checklist) fail(hint string, format string, args ...any) {
	c.failed++
	c.items = append(c.items, checkJSON{Detail: fmt.Sprintf(format, args...), Hint: hint})
	if c.w == nil {
		return
	}
	fmt.Fprintf(c.w, "✗ "+format+"\n", args...)
	if hint != "" {
		fmt.Fprintf(c.w, "    hint: %s\n", hint)
	}
}

func newTestCmd(g *globals) *cobra.Command {
	var notify bool
	var output string
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Check the setup: databases, pg_dump, storages, notification routes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := g.open(cmd.Context(), "")
			if err != nil {
				return err
			}
			if err := outputFlag(output); err != nil {
				return err
			}
			c := &checklist{w: g.stdout}
			if output == "json" {
				c.w = nil
			}
			g.checkSetup(cmd.Context(), a, c, notify)
			if output == "json" {
				if err := writeJSON(g.stdout, struct {
					envelope
					OK     bool        `json:"ok"`
					Checks []checkJSON `json:"checks"`
				}{v1, c.failed == 0, c.items}); err != nil {
					return err
				}
			}
			if c.failed > 0 {
				return fmt.Errorf("%d check(s) failed", c.failed)
			}
			if output == "text" {
				fmt.Fprintln(g.stdout, "all checks passed")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&notify, "notify", false, "send a test event to every notification route")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func (g *globals) checkSetup(ctx context.Context, a *app, c *checklist, notify bool) {
	clients := exec.Clients(ctx, "pg_dump", a.cfg.PgBinDir)
	if len(clients) == 0 {
		c.fail("install the PostgreSQL client tools (postgresql-client) matching your servers, or set pg_bin_dir", "pg_dump: none found")
	}
	for i := range a.dbs {
		db := &a.dbs[i]
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		v, err := pg.ServerVersion(cctx, db.Conn)
		cancel()
		if err != nil {
			c.fail("check host, port, user, password and that the server accepts this client (pg_hba.conf)", "database %s: not reachable: %v", db.Name, err)
			continue
		}
		if cl, err := exec.Pick(clients, "pg_dump", v, 0); err != nil {
			c.fail("an older pg_dump cannot dump a newer server", "database %s: %v", db.Name, err)
		} else {
			c.ok("database %s: reachable, PostgreSQL %d; dumped with pg_dump %d (%s)", db.Name, v, cl.Major, cl.Path)
		}
		if db.Discover != nil {
			g.checkServer(ctx, db, c)
		}
	}
	g.checkAge(a, c)
	used := map[string]bool{}
	for _, d := range a.dbs {
		for _, st := range d.Storages {
			used[st] = true
		}
	}
	for _, st := range a.cfg.Storage {
		s := a.stores[st.Name]
		if !used[st.Name] {
			c.ok("storage %s (%s): no database uses it, not contacted", st.Name, s.Describe())
			continue
		}
		if err := probe(ctx, s); err != nil {
			c.fail("check the path or bucket exists and that BackupKit may write, read and delete there", "storage %s (%s): %v", st.Name, s.Describe(), err)
		} else {
			c.ok("storage %s (%s): write, read back, delete", st.Name, s.Describe())
		}
	}
	for i, n := range routesOf(a.cfg) {
		name := fmt.Sprintf("notification %d (%s, on %s)", i, n.Type, strings.Join(n.On, ","))
		if !notify {
			c.ok("%s: well-formed (send a test event with --notify)", name)
			continue
		}
		d := alerting.New([]alerting.Route{n}, alerting.Options{})
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

// checkAge encrypts a probe to each age database's recipients and, where
// an identity is configured, decrypts it: a restore here would work.
func (g *globals) checkAge(a *app, c *checklist) {
	for i := range a.cfg.Databases {
		d := &a.cfg.Databases[i]
		e := d.Backup.Encryption
		if !e.Age() {
			continue
		}
		co := checkOptions(a.cfg, d)
		if e.IdentityFile == "" {
			c.ok("database %s: age to %d recipient(s); no identity_file here (backups and prunes work; restores need one where they happen)", d.Name, e.AgeRecipients.Len())
			continue
		}
		if co.IdentityErr != nil {
			c.fail("identity_file must be an unprotected age identity file or SSH private key", "database %s: %v", d.Name, co.IdentityErr)
			continue
		}
		var buf bytes.Buffer
		w, err := format.NewAgeEncrypter(&buf, e.AgeRecipients)
		if err == nil {
			io.WriteString(w, "PGDMP backupkit probe")
			err = w.Close()
		}
		if err == nil {
			_, err = format.Decode(&buf, co.Keys)
		}
		if err != nil {
			c.fail("the identity_file's key must be one of the recipients, or restores here cannot read new backups", "database %s: a probe encrypted to the recipients does not decrypt with identity_file: %v", d.Name, err)
			continue
		}
		c.ok("database %s: age to %d recipient(s); a probe decrypts with identity_file", d.Name, e.AgeRecipients.Len())
	}
}

// checkServer reports what a whole-server entry discovers, and whether
// its globals will carry role passwords.
func (g *globals) checkServer(ctx context.Context, db *reconcile.Database, c *checklist) {
	srv, err := pg.Discover(ctx, db.Conn)
	if err != nil {
		c.fail("the backup role must be able to read pg_database", "database %s: discovery failed: %v", db.Name, err)
		return
	}
	var match []string
	for _, n := range srv.Databases {
		if db.Discover.Match(n) {
			match = append(match, n)
		}
	}
	shown := match
	if len(shown) > 10 {
		shown = append(shown[:10:10], "…")
	}
	c.ok("database %s: whole server, %d of %d databases match: %s", db.Name, len(match), len(srv.Databases), strings.Join(shown, ", "))
	if !db.Globals {
		return
	}
	if su, err := pg.Superuser(ctx, db.Conn); err != nil {
		c.fail("the backup role must be able to read pg_roles", "database %s: globals: %v", db.Name, err)
	} else if !su {
		c.ok("database %s: globals without role passwords (%s is not a superuser; restored roles get no password)", db.Name, db.Conn.User)
	} else {
		c.ok("database %s: globals with role passwords (%s is a superuser)", db.Name, db.Conn.User)
	}
}
