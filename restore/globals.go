package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/pg"
	"github.com/backupkit/backupkit/repo"
)

// maxGlobals bounds the decoded size of a globals backup (roles and
// tablespaces: kilobytes, even for thousands of roles).
const maxGlobals = 64 << 20

// Globals is a checked globals backup: every byte read, authenticated
// when encrypted, and parsed into statements about roles, memberships and
// tablespaces only.
type Globals struct {
	Source     Source
	Layers     format.Layers
	Statements []format.GlobalStatement
	// NoRolePasswords: the manifest says the dump has no role passwords.
	NoRolePasswords bool
	Warnings        []string
}

// GlobalsFor finds the globals of db, a database backup of a
// whole-server entry: the newest "<entry>._globals" backup at or before
// it in the same storage (a cycle dumps its globals first).
func GlobalsFor(ctx context.Context, db Source, entry string) (Source, error) {
	if db.sink == nil || db.Name.Time.IsZero() {
		return Source{}, fmt.Errorf("%w: the globals of %s are found beside it in storage: restore it as STORAGE:KEY, latest, a time or an ID", ErrBadSource, db.Desc)
	}
	storage, s, t := db.Storage, db.sink, db.Name.Time
	bs, err := repo.List(ctx, s, entry+"."+format.GlobalsName)
	if err != nil {
		return Source{}, fmt.Errorf("list the globals of %s in %s: %w", entry, storage, err)
	}
	for _, b := range bs {
		if !b.Time.After(t) {
			return FromStorage(storage, s, b.Key), nil
		}
	}
	return Source{}, fmt.Errorf("%w: no globals of %s in %s at or before %s (globals: true stores them with every backup cycle)",
		ErrNoBackup, entry, storage, t.UTC().Format(time.RFC3339))
}

// LoadGlobals reads a globals backup whole and checks it: layers as the
// config says (an unencrypted one where the config encrypts is refused,
// as for any SQL), a whole cluster dump, and nothing but globals in it.
func LoadGlobals(ctx context.Context, src Source, o CheckOptions) (*Globals, error) {
	p, err := src.pin(ctx)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", src.Desc, err)
	}
	defer p.Close()
	rc, err := p.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	dec, err := format.Decode(rc, o.Keys)
	if errors.Is(err, format.ErrNeedIdentity) && o.IdentityErr != nil {
		err = fmt.Errorf("%w: %w", err, o.IdentityErr)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRefused, src.Desc, err)
	}
	defer dec.Close()
	g := &Globals{Source: src, Layers: dec.Layers}
	c := Checked{Layers: dec.Layers}
	o.AllowSQL = true
	if err := c.fits(src, o); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRefused, src.Desc, err)
	}
	g.Warnings = c.Warnings
	sql, err := io.ReadAll(io.LimitReader(dec, maxGlobals+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRefused, src.Desc, err)
	}
	if len(sql) > maxGlobals {
		return nil, fmt.Errorf("%w: %s: more than %d MiB of SQL is not a globals dump", ErrRefused, src.Desc, maxGlobals>>20)
	}
	if g.Statements, err = format.ParseGlobals(sql); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRefused, src.Desc, err)
	}
	if src.sink != nil {
		if m, err := repo.ReadManifest(ctx, src.sink, src.Key); err == nil {
			g.NoRolePasswords = m.NoRolePasswords
		}
	}
	if !dec.Layers.Encrypted() {
		g.Warnings = append(g.Warnings, src.Desc+" is not encrypted: nothing proves who wrote its roles")
	}
	return g, nil
}

// GlobalsResult is what applying globals did.
type GlobalsResult struct {
	Created     []string `json:"roles_created"`
	Existing    []string `json:"roles_left_alone"` // existed: not changed (without Clean)
	Altered     []string `json:"roles_altered"`    // existed: altered to the backup (Clean)
	Memberships int      `json:"memberships_granted"`
	Skipped     int      `json:"statements_skipped"` // about roles or tablespaces left alone
	Tablespaces []string `json:"tablespaces_created"`
	// Superusers are the roles created or altered with SUPERUSER.
	Superusers []string `json:"superusers,omitempty"`
	Warnings   []string `json:"warnings,omitempty"`
}

// Apply creates the backup's roles, memberships and tablespaces on the
// server server reaches. Existing roles and tablespaces are left alone
// and reported; with clean, existing roles are altered to match the
// backup (attributes, password, settings, memberships), except the role
// BackupKit connects as. Nothing is ever dropped. Roles and memberships
// go in one transaction (all or none); tablespaces follow, one by one,
// as PostgreSQL cannot create them in a transaction.
func (g *Globals) Apply(ctx context.Context, server pg.Conn, clean bool) (GlobalsResult, error) {
	res := GlobalsResult{Created: []string{}, Existing: []string{}, Altered: []string{}, Tablespaces: []string{}}
	conn, err := pg.Connect(ctx, server)
	if err != nil {
		return res, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var me string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&me); err != nil {
		return res, err
	}
	roles, err := names(ctx, conn, "SELECT rolname FROM pg_roles")
	if err != nil {
		return res, err
	}
	spaces, err := names(ctx, conn, "SELECT spcname FROM pg_tablespace")
	if err != nil {
		return res, err
	}
	dbs, err := names(ctx, conn, "SELECT datname FROM pg_database")
	if err != nil {
		return res, err
	}
	// Roles this apply may change: new ones, and with clean existing
	// ones other than our own.
	mine := func(r string) bool { return !roles[r] || clean && r != me }
	var tx, later []string
	createdSpace := map[string]bool{}
	seen := map[string]bool{}
	note := func(list *[]string, r string) {
		if !seen[r] {
			seen[r] = true
			*list = append(*list, r)
		}
	}
	for _, s := range g.Statements {
		switch s.Kind {
		case format.GlobalRole:
			switch {
			case !roles[s.Name]:
				note(&res.Created, s.Name)
			case !mine(s.Name) || s.Create:
				if !clean || s.Name == me {
					note(&res.Existing, s.Name)
				}
				res.Skipped++
				continue
			default:
				note(&res.Altered, s.Name)
			}
			if s.Database != "" && !dbs[s.Database] {
				res.Warnings = append(res.Warnings, fmt.Sprintf("role %s: setting for database %s skipped (no such database yet)", s.Name, s.Database))
				res.Skipped++
				continue
			}
			if s.Superuser && !slices.Contains(res.Superusers, s.Name) {
				res.Superusers = append(res.Superusers, s.Name)
			}
			tx = append(tx, s.SQL)
		case format.GlobalMembership, format.GlobalParameter:
			if !mine(s.Member) {
				res.Skipped++
				continue
			}
			if s.Kind == format.GlobalMembership {
				res.Memberships++
			}
			tx = append(tx, s.SQL)
		case format.GlobalTablespace:
			switch {
			case s.Create && spaces[s.Name]:
				res.Skipped++
				res.Warnings = append(res.Warnings, "tablespace "+s.Name+" exists: left alone")
				continue
			case s.Create:
				createdSpace[s.Name] = true
				res.Tablespaces = append(res.Tablespaces, s.Name)
			case !createdSpace[s.Name] && !clean:
				res.Skipped++
				continue
			}
			later = append(later, s.SQL)
		}
	}
	if len(tx) > 0 {
		err := pgx.BeginFunc(ctx, conn, func(t pgx.Tx) error {
			for _, q := range tx {
				if _, err := t.Exec(ctx, q); err != nil {
					return fmt.Errorf("%s: %w", short(q), err)
				}
			}
			return nil
		})
		if err != nil {
			return GlobalsResult{}, fmt.Errorf("applying roles failed, none were changed: %w", err)
		}
	}
	for i, q := range later {
		if _, err := conn.Exec(ctx, q); err != nil {
			return res, fmt.Errorf("roles applied; tablespace statement %d of %d failed (%s): %w", i+1, len(later), short(q), err)
		}
	}
	if g.NoRolePasswords && len(res.Created) > 0 {
		res.Warnings = append(res.Warnings, "the backup was taken without role passwords: the created roles have none (ALTER ROLE … PASSWORD)")
	}
	return res, nil
}

func names(ctx context.Context, conn *pgx.Conn, q string) (map[string]bool, error) {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[string])
	out := map[string]bool{}
	for _, n := range list {
		out[n] = true
	}
	return out, err
}

// short is a statement for an error message: its start, never a
// password.
func short(q string) string {
	if i := strings.Index(strings.ToUpper(q), " PASSWORD "); i >= 0 {
		q = q[:i] + " PASSWORD …"
	}
	if len(q) > 60 {
		return q[:60] + "…"
	}
	return q
}
