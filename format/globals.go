package format

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// ErrNotGlobals means SQL text that is not what pg_dumpall --globals-only
// writes, or holds a statement a globals dump never has.
var ErrNotGlobals = errors.New("not a pg_dumpall --globals-only dump")

// CheckGlobalsDump checks the first and last bytes of SQL text are those
// of a whole cluster dump: its header, and its "complete" footer (a dump
// cut short has no footer).
func CheckGlobalsDump(head, tail []byte) error {
	if !bytes.Contains(head, []byte("-- PostgreSQL database cluster dump\n")) {
		return fmt.Errorf("%w: no cluster dump header", ErrNotGlobals)
	}
	if !bytes.Contains(tail, []byte("-- PostgreSQL database cluster dump complete\n")) {
		return fmt.Errorf("%w: it ends before its \"dump complete\" footer (cut short?)", ErrNotGlobals)
	}
	return nil
}

// GlobalKind is what a statement of a globals dump is about.
type GlobalKind int

// Statement kinds of a globals dump.
const (
	GlobalRole       GlobalKind = iota + 1 // CREATE/ALTER/COMMENT ON/SECURITY LABEL ON ROLE
	GlobalMembership                       // GRANT role TO member
	GlobalParameter                        // GRANT … ON PARAMETER … TO role
	GlobalTablespace                       // CREATE/ALTER/COMMENT ON/GRANT … ON TABLESPACE
)

// GlobalStatement is one statement of a globals dump, with the object it
// changes: Name is the role or tablespace, Member the role a membership
// or parameter privilege is granted to, Create whether it creates Name.
type GlobalStatement struct {
	SQL    string
	Kind   GlobalKind
	Name   string
	Member string
	Create bool
	// Database is set for ALTER ROLE … IN DATABASE d SET.
	Database string
	// Superuser is set for an ALTER ROLE … WITH that grants SUPERUSER.
	Superuser bool
}

// ParseGlobals reads a pg_dumpall --globals-only dump into its
// statements. It is strict: a statement that is not about a role, a
// membership, a parameter privilege or a tablespace, a psql meta-command
// other than \restrict/\unrestrict, or a setting other than the dump's own
// header ones makes it ErrNotGlobals, so nothing but globals ever runs
// from a globals backup.
func ParseGlobals(sql []byte) ([]GlobalStatement, error) {
	if err := CheckGlobalsDump(sql[:min(len(sql), 4<<10)], sql[max(0, len(sql)-4<<10):]); err != nil {
		return nil, err
	}
	stmts, err := splitSQL(string(sql))
	if err != nil {
		return nil, err
	}
	var out []GlobalStatement
	for _, s := range stmts {
		toks, err := tokens(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %v in %q", ErrNotGlobals, err, short(s))
		}
		g, skip, err := classify(toks)
		if err != nil {
			return nil, fmt.Errorf("%w: %v: %q", ErrNotGlobals, err, short(s))
		}
		if skip {
			continue
		}
		g.SQL = s
		out = append(out, g)
	}
	return out, nil
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// splitSQL splits SQL text into statements (without their ';'), dropping
// comments and the \restrict/\unrestrict lines pg_dumpall writes. Quotes
// ('…', E'…', "…", $tag$…$tag$) are honoured.
func splitSQL(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	atStart := func() bool { return strings.TrimSpace(cur.String()) == "" }
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\' && atStart():
			end := strings.IndexByte(s[i:], '\n')
			if end < 0 {
				end = len(s) - i
			}
			line := s[i : i+end]
			if !strings.HasPrefix(line, `\restrict `) && !strings.HasPrefix(line, `\unrestrict `) {
				return nil, fmt.Errorf("%w: psql meta-command %q", ErrNotGlobals, short(line))
			}
			cur.Reset()
			i += end
		case c == '-' && strings.HasPrefix(s[i:], "--"):
			end := strings.IndexByte(s[i:], '\n')
			if end < 0 {
				end = len(s) - i
			}
			i += end
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("%w: unterminated comment", ErrNotGlobals)
			}
			cur.WriteByte(' ')
			i += end + 4
		case c == '\'' || c == '"':
			escapes := c == '\'' && i > 0 && (s[i-1] == 'E' || s[i-1] == 'e') && (i < 2 || !isIdent(s[i-2]))
			j := i + 1
			for ; j < len(s); j++ {
				if escapes && s[j] == '\\' {
					j++
					continue
				}
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c {
						j++
						continue
					}
					break
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("%w: unterminated quote", ErrNotGlobals)
			}
			cur.WriteString(s[i : j+1])
			i = j + 1
		case c == '$' && (i == 0 || !isIdent(s[i-1])):
			end := strings.IndexByte(s[i+1:], '$')
			tag := ""
			if end >= 0 {
				tag = s[i : i+end+2]
			}
			if tag == "" || strings.ContainsAny(tag[1:len(tag)-1], " \t\n;'\"") {
				cur.WriteByte(c)
				i++
				continue
			}
			close := strings.Index(s[i+len(tag):], tag)
			if close < 0 {
				return nil, fmt.Errorf("%w: unterminated dollar quote", ErrNotGlobals)
			}
			n := len(tag) + close + len(tag)
			cur.WriteString(s[i : i+n])
			i += n
		case c == ';':
			if st := strings.TrimSpace(cur.String()); st != "" {
				out = append(out, st)
			}
			cur.Reset()
			i++
		default:
			cur.WriteByte(c)
			i++
		}
	}
	if strings.TrimSpace(cur.String()) != "" {
		return nil, fmt.Errorf("%w: a statement without its ';' at the end (cut short?)", ErrNotGlobals)
	}
	return out, nil
}

func isIdent(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

// token is a word of a statement: an identifier (quoted ones unquoted,
// bare ones lower-cased, as PostgreSQL folds them), a literal, or a
// punctuation byte. kw is the upper-cased bare word, for keywords.
type token struct {
	text string
	kw   string
}

func tokens(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s); j++ {
				if s[j] == '"' {
					if j+1 < len(s) && s[j+1] == '"' {
						b.WriteByte('"')
						j++
						continue
					}
					break
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, errors.New("unterminated identifier")
			}
			out = append(out, token{text: b.String()})
			i = j + 1
		case isIdent(c) && !(c >= '0' && c <= '9'):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			w := s[i:j]
			if j < len(s) && s[j] == '\'' {
				// E'…' and friends: a literal, skipped below.
				i = j
				out = append(out, token{text: w, kw: strings.ToUpper(w)})
				continue
			}
			out = append(out, token{text: strings.ToLower(w), kw: strings.ToUpper(w)})
			i = j
		case c == '\'':
			j := i + 1
			for ; j < len(s); j++ {
				if s[j] == '\\' && i > 0 && (s[i-1] == 'E' || s[i-1] == 'e') {
					j++
					continue
				}
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						j++
						continue
					}
					break
				}
			}
			out = append(out, token{text: "'"})
			i = j + 1
		case c == '$':
			// a dollar-quoted literal: skip to its closing tag
			end := strings.IndexByte(s[i+1:], '$')
			if end < 0 {
				return nil, errors.New("stray $")
			}
			tag := s[i : i+end+2]
			close := strings.Index(s[i+len(tag):], tag)
			if close < 0 {
				return nil, errors.New("unterminated dollar quote")
			}
			out = append(out, token{text: "'"})
			i += len(tag) + close + len(tag)
		default:
			out = append(out, token{text: string(c), kw: string(c)})
			i++
		}
	}
	return out, nil
}

// headerSettings are the SETs at the top of every pg_dumpall output.
var headerSettings = map[string]bool{"DEFAULT_TRANSACTION_READ_ONLY": true, "CLIENT_ENCODING": true, "STANDARD_CONFORMING_STRINGS": true}

// classify says what a statement changes; skip marks the dump's own
// header settings, which are not run.
func classify(t []token) (g GlobalStatement, skip bool, err error) {
	kw := func(i int) string {
		if i < len(t) {
			return t[i].kw
		}
		return ""
	}
	name := func(i int) (string, error) {
		if i >= len(t) || t[i].text == "'" || (t[i].kw != "" && len(t[i].kw) == 1 && !isIdent(t[i].kw[0])) {
			return "", errors.New("expected a name")
		}
		return t[i].text, nil
	}
	switch {
	case kw(0) == "SET" && len(t) >= 4 && headerSettings[kw(1)] && (kw(2) == "=" || kw(2) == "TO"):
		if kw(1) == "STANDARD_CONFORMING_STRINGS" && kw(3) != "ON" {
			return g, false, errors.New("only standard_conforming_strings = on is read")
		}
		return g, true, nil
	case kw(0) == "CREATE" && kw(1) == "ROLE":
		g.Kind, g.Create = GlobalRole, true
		g.Name, err = name(2)
	case kw(0) == "ALTER" && (kw(1) == "ROLE" || kw(1) == "USER"):
		g.Kind = GlobalRole
		g.Name, err = name(2)
		if kw(3) == "IN" && kw(4) == "DATABASE" {
			g.Database, _ = name(5)
		}
		for _, x := range t[3:] {
			if x.kw == "SUPERUSER" {
				g.Superuser = true
			}
		}
	case kw(0) == "COMMENT" && kw(1) == "ON" && kw(2) == "ROLE":
		g.Kind = GlobalRole
		g.Name, err = name(3)
	case kw(0) == "COMMENT" && kw(1) == "ON" && kw(2) == "TABLESPACE":
		g.Kind = GlobalTablespace
		g.Name, err = name(3)
	case kw(0) == "SECURITY" && kw(1) == "LABEL":
		i := 2
		if kw(i) == "FOR" {
			i += 2
		}
		if kw(i) != "ON" || (kw(i+1) != "ROLE" && kw(i+1) != "TABLESPACE") {
			return g, false, errors.New("a security label on something that is not a role or tablespace")
		}
		g.Kind = GlobalRole
		if kw(i+1) == "TABLESPACE" {
			g.Kind = GlobalTablespace
		}
		g.Name, err = name(i + 2)
	case kw(0) == "CREATE" && kw(1) == "TABLESPACE":
		g.Kind, g.Create = GlobalTablespace, true
		g.Name, err = name(2)
	case kw(0) == "ALTER" && kw(1) == "TABLESPACE":
		g.Kind = GlobalTablespace
		g.Name, err = name(2)
	case (kw(0) == "GRANT" || kw(0) == "REVOKE") && len(t) > 2:
		return grant(t, name)
	default:
		return g, false, errors.New("not a statement about roles or tablespaces")
	}
	return g, false, err
}

// grant reads GRANT/REVOKE: on a tablespace, on a parameter, or a role
// membership (GRANT r1, r2 TO member …).
func grant(t []token, name func(int) (string, error)) (GlobalStatement, bool, error) {
	var g GlobalStatement
	on, to := -1, -1
	for i, x := range t {
		if x.kw == "ON" && on < 0 && to < 0 {
			on = i
		}
		if (x.kw == "TO" || x.kw == "FROM") && to < 0 {
			to = i
		}
	}
	if to < 0 {
		return g, false, errors.New("a grant without TO")
	}
	var err error
	switch {
	case on >= 0 && on+1 < len(t) && t[on+1].kw == "TABLESPACE":
		g.Kind = GlobalTablespace
		g.Name, err = name(on + 2)
	case on >= 0 && on+1 < len(t) && t[on+1].kw == "PARAMETER":
		g.Kind = GlobalParameter
		g.Member, err = name(to + 1)
	case on < 0:
		g.Kind = GlobalMembership
		if g.Name, err = name(1); err == nil {
			g.Member, err = name(to + 1)
		}
	default:
		return g, false, errors.New("a grant on something that is not a tablespace or parameter")
	}
	return g, false, err
}
