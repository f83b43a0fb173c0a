package format

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const globalsDump = `--
-- PostgreSQL database cluster dump
--

\restrict ADKrn5g1L7UvaqdPFqPUZC1dcMmB

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE gx_owner;
ALTER ROLE gx_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:lEOg==$WBY=:4rS9=';
CREATE ROLE "Odd ""Role"";x";
ALTER ROLE "Odd ""Role"";x" WITH SUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
COMMENT ON ROLE "Odd ""Role"";x" IS 'it''s;
multi -- not a comment';

--
-- User Configurations
--

ALTER ROLE gx_owner SET search_path TO 'a', 'b';
ALTER ROLE gx_owner IN DATABASE sales SET work_mem TO '64MB';

--
-- Role memberships
--

GRANT "Odd ""Role"";x" TO gx_owner GRANTED BY postgres;
GRANT SET ON PARAMETER work_mem TO gx_owner;

--
-- Tablespaces
--

CREATE TABLESPACE fast OWNER gx_owner LOCATION '/srv/fast';
GRANT ALL ON TABLESPACE fast TO gx_owner;

\unrestrict ADKrn5g1L7UvaqdPFqPUZC1dcMmB

--
-- PostgreSQL database cluster dump complete
--

`

func TestParseGlobals(t *testing.T) {
	st, err := ParseGlobals([]byte(globalsDump))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		kind           GlobalKind
		name, member   string
		create, super  bool
		database, head string
	}
	want := []row{
		{GlobalRole, "gx_owner", "", true, false, "", "CREATE ROLE gx_owner"},
		{GlobalRole, "gx_owner", "", false, false, "", "ALTER ROLE gx_owner WITH"},
		{GlobalRole, `Odd "Role";x`, "", true, false, "", `CREATE ROLE "Odd`},
		{GlobalRole, `Odd "Role";x`, "", false, true, "", `ALTER ROLE "Odd`},
		{GlobalRole, `Odd "Role";x`, "", false, false, "", `COMMENT ON ROLE`},
		{GlobalRole, "gx_owner", "", false, false, "", "ALTER ROLE gx_owner SET"},
		{GlobalRole, "gx_owner", "", false, false, "sales", "ALTER ROLE gx_owner IN DATABASE"},
		{GlobalMembership, `Odd "Role";x`, "gx_owner", false, false, "", "GRANT"},
		{GlobalParameter, "", "gx_owner", false, false, "", "GRANT SET ON PARAMETER"},
		{GlobalTablespace, "fast", "", true, false, "", "CREATE TABLESPACE"},
		{GlobalTablespace, "fast", "", false, false, "", "GRANT ALL ON TABLESPACE"},
	}
	if len(st) != len(want) {
		for _, s := range st {
			t.Logf("%+v", s)
		}
		t.Fatalf("%d statements, want %d", len(st), len(want))
	}
	for i, w := range want {
		g := st[i]
		got := row{g.Kind, g.Name, g.Member, g.Create, g.Superuser, g.Database, ""}
		w2 := w
		w2.head = ""
		if got != w2 || !strings.HasPrefix(g.SQL, w.head) {
			t.Errorf("statement %d = %+v %q, want %+v", i, got, g.SQL, w)
		}
	}
	if !strings.Contains(st[4].SQL, "multi -- not a comment'") {
		t.Errorf("a quoted -- was taken for a comment: %q", st[4].SQL)
	}
}

func TestParseGlobalsRefuses(t *testing.T) {
	wrap := func(body string) string {
		return "--\n-- PostgreSQL database cluster dump\n--\n" + body + "\n--\n-- PostgreSQL database cluster dump complete\n--\n"
	}
	for name, in := range map[string]string{
		"no header":      "CREATE ROLE a;\n-- PostgreSQL database cluster dump complete\n",
		"cut short":      "--\n-- PostgreSQL database cluster dump\n--\nCREATE ROLE a;\n",
		"shell":          wrap(`\! rm -rf /`),
		"connect":        wrap(`\connect other`),
		"drop":           wrap("DROP ROLE postgres;"),
		"table":          wrap("CREATE TABLE t (a int);"),
		"function":       wrap("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql;"),
		"grant on table": wrap("GRANT ALL ON TABLE t TO a;"),
		"hidden in role": wrap("CREATE ROLE a; DROP DATABASE x;"),
		"copy":           wrap("COPY t FROM PROGRAM 'id';"),
		"set role":       wrap("SET ROLE postgres;"),
		"scs off":        wrap("SET standard_conforming_strings = off;"),
		"no semicolon":   wrap("CREATE ROLE a"),
		"open quote":     wrap("COMMENT ON ROLE a IS 'x;"),
	} {
		if _, err := ParseGlobals([]byte(in)); !errors.Is(err, ErrNotGlobals) {
			t.Errorf("%s: err = %v, want ErrNotGlobals", name, err)
		}
	}
}

// TestSplitSQL: statements end at a ';' outside quotes, comments and
// dollar quotes, in every quoting PostgreSQL has; the \restrict lines
// pg_dumpall writes go, any other meta-command is refused.
func TestSplitSQL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"CREATE ROLE a;\nALTER ROLE a LOGIN;\n", []string{"CREATE ROLE a", "ALTER ROLE a LOGIN"}},
		{`COMMENT ON ROLE a IS 'it''s; fine';`, []string{`COMMENT ON ROLE a IS 'it''s; fine'`}},
		{`COMMENT ON ROLE a IS E'it\'s; fine';`, []string{`COMMENT ON ROLE a IS E'it\'s; fine'`}},
		{`COMMENT ON ROLE a IS e'\\';`, []string{`COMMENT ON ROLE a IS e'\\'`}},
		// Not an E-string: a backslash is just a byte there, so the quote
		// after it ends the literal.
		{`COMMENT ON ROLE a IS 'x\'; SELECT 1;`, []string{`COMMENT ON ROLE a IS 'x\'`, "SELECT 1"}},
		{`COMMENT ON ROLE ae IS 'x\'; SELECT 1;`, []string{`COMMENT ON ROLE ae IS 'x\'`, "SELECT 1"}},
		{`CREATE ROLE "a""; b";`, []string{`CREATE ROLE "a""; b"`}},
		{"COMMENT ON ROLE a IS $q$x; 'y$q$;", []string{"COMMENT ON ROLE a IS $q$x; 'y$q$"}},
		{"COMMENT ON ROLE a IS $$x;$$;", []string{"COMMENT ON ROLE a IS $$x;$$"}},
		{"SELECT a$b;", []string{"SELECT a$b"}},
		{"CREATE ROLE a; -- a comment; with ';'\nCREATE ROLE b;", []string{"CREATE ROLE a", "CREATE ROLE b"}},
		{"CREATE /* x; y */ ROLE a;", []string{"CREATE   ROLE a"}},
		{"\\restrict abc\nCREATE ROLE a;\n\\unrestrict abc\n", []string{"CREATE ROLE a"}},
		{"CREATE ROLE a;\n\n;", []string{"CREATE ROLE a"}},
		// Where the quote stands: first, second or third in the text,
		// after one space or two, and doubled inside an E-string.
		{"'x';", []string{"'x'"}},
		{`E'a\'b';`, []string{`E'a\'b'`}},
		{`xE'a\';`, []string{`xE'a\'`}},
		{`COMMENT ON ROLE a IS  'x\'; SELECT 1;`, []string{`COMMENT ON ROLE a IS  'x\'`, "SELECT 1"}},
		{`COMMENT ON ROLE a IS E'a''\'; x';`, []string{`COMMENT ON ROLE a IS E'a''\'; x'`}},
		{"CREATE /**/ ROLE a;", []string{"CREATE   ROLE a"}},
		{"COMMENT ON ROLE a IS $$$$;SELECT 1;", []string{"COMMENT ON ROLE a IS $$$$", "SELECT 1"}},
		{"SELECT $1; SELECT $ a;", []string{"SELECT $1", "SELECT $ a"}},
		{"SELECT $a b$ ;", []string{"SELECT $a b$"}},
	} {
		got, err := splitSQL(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("splitSQL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"CREATE ROLE a", "CREATE ROLE 'a;", `CREATE ROLE "a;`, "SELECT $q$x;", "CREATE /* ROLE a;", "\\! rm -rf /\n", `COMMENT ON ROLE a IS E'x\';`, "COMMENT ON ROLE a IS 'x'"} {
		if got, err := splitSQL(bad); !errors.Is(err, ErrNotGlobals) {
			t.Errorf("splitSQL(%q) = %q, %v; want it refused", bad, got, err)
		}
	}
}
