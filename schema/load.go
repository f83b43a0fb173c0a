package schema

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/cuecontext"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/literal"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"
	cuejson "cuelang.org/go/encoding/json"
	cueyaml "cuelang.org/go/encoding/yaml"
	"github.com/agnivade/levenshtein"

	"github.com/backupkit/backupkit/internal/secret"
)

//go:embed backupkit.cue
var schemaSource string

// Source returns the embedded CUE schema.
func Source() string { return schemaSource }

// Problem is one thing wrong with a config file.
type Problem struct {
	Path string // field path, e.g. databases[0].backup.storage
	Pos  string // file:line:column, or just the file
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Pos != "" {
		b.WriteString(p.Pos + ": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is every problem found in a config file. Callers map it to exit
// code 2.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, 0, len(e.Problems)+1)
	lines = append(lines, fmt.Sprintf("invalid config %s: %d problem(s)", e.File, len(e.Problems)))
	for _, p := range e.Problems {
		lines = append(lines, "  "+p.String())
	}
	return strings.Join(lines, "\n")
}

// LookupEnv looks up an environment variable; os.LookupEnv in production.
type LookupEnv func(string) (string, bool)

// Load reads, expands, validates and decodes the config file at path. The
// format follows the extension: .yaml/.yml, .json or .cue. A config that
// is not valid returns an *Error listing every problem.
func Load(path string) (*Config, error) {
	return LoadWith(path, os.LookupEnv)
}

// LoadWith is Load with an explicit environment.
func LoadWith(path string, env LookupEnv) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Problems: []Problem{{Pos: path, Msg: fmt.Sprintf("cannot read config: %v", errText(err))}}}
	}
	return Parse(path, data, env)
}

func errText(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

type loader struct {
	file    string
	env     LookupEnv
	probs   []Problem
	secrets []string // values that must never be echoed
}

func (l *loader) add(path string, pos token.Pos, format string, args ...any) {
	l.probs = append(l.probs, Problem{Path: path, Pos: l.pos(pos), Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) pos(p token.Pos) string {
	if !p.IsValid() {
		return l.file
	}
	return fmt.Sprintf("%s:%d:%d", l.file, p.Line(), p.Column())
}

func (l *loader) fail() error {
	for i := range l.probs {
		for _, s := range l.secrets {
			if len(s) >= 3 {
				l.probs[i].Msg = strings.ReplaceAll(l.probs[i].Msg, s, secret.Redacted)
			}
		}
	}
	sort.SliceStable(l.probs, func(i, j int) bool { return posLess(l.probs[i].Pos, l.probs[j].Pos) })
	return &Error{File: l.file, Problems: l.probs}
}

// posLess orders "file:line:col" positions by line and column.
func posLess(a, b string) bool {
	la, ca := lineCol(a)
	lb, cb := lineCol(b)
	if la != lb {
		return la < lb
	}
	return ca < cb
}

func lineCol(p string) (int, int) {
	parts := strings.Split(p, ":")
	if len(parts) < 3 {
		return 0, 0
	}
	l, _ := strconv.Atoi(parts[len(parts)-2])
	c, _ := strconv.Atoi(parts[len(parts)-1])
	return l, c
}

// Parse validates config bytes; path names the file in errors and picks
// the format.
func Parse(path string, data []byte, env LookupEnv) (*Config, error) {
	l := &loader{file: path, env: env}
	ctx := cuecontext.New()

	file, err := parseFile(path, data)
	if err != nil {
		var ce cueerrors.Error
		if !errors.As(err, &ce) {
			l.probs = append(l.probs, Problem{Pos: path, Msg: err.Error()})
		} else {
			l.addCUE(err, cue.Value{})
		}
		return nil, l.fail()
	}
	l.expandFile(file)
	if len(l.probs) > 0 {
		return nil, l.fail()
	}
	dataVal := ctx.BuildFile(file)
	if err := dataVal.Err(); err != nil {
		l.addCUE(err, dataVal)
		return nil, l.fail()
	}
	schemaVal := ctx.CompileString(schemaSource, cue.Filename("schema/backupkit.cue"))
	if err := schemaVal.Err(); err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	v := schemaVal.LookupPath(cue.ParsePath("#Config")).Unify(dataVal)
	var raw []byte
	cueErr := v.Validate(cue.Concrete(true))
	if cueErr != nil {
		l.addCUE(cueErr, dataVal)
		// Go on with the raw data, so the rules below report their
		// problems in the same run.
		raw, err = dataVal.MarshalJSON()
		if err != nil {
			return nil, l.fail()
		}
	} else if raw, err = v.MarshalJSON(); err != nil {
		l.addCUE(err, dataVal)
		return nil, l.fail()
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil && cueErr == nil {
		return nil, fmt.Errorf("decode config: %w", err)
	}
	cfg.File = path
	l.resolveFiles(&cfg, dataVal)
	l.check(&cfg, dataVal)
	if len(l.probs) > 0 {
		return nil, l.fail()
	}
	return &cfg, nil
}

func parseFile(path string, data []byte) (*ast.File, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		return cueyaml.Extract(path, data)
	case ".json":
		expr, err := cuejson.Extract(path, data)
		if err != nil {
			return nil, err
		}
		return astFileOf(expr)
	case ".cue":
		return parser.ParseFile(path, data)
	default:
		return nil, fmt.Errorf("%s: unknown config format %q: want .yaml, .yml, .json or .cue", path, filepath.Ext(path))
	}
}

func astFileOf(expr ast.Expr) (*ast.File, error) {
	st, ok := expr.(*ast.StructLit)
	if !ok {
		return nil, fmt.Errorf("config must be an object at the top level")
	}
	return &ast.File{Decls: st.Elts}, nil
}

// addCUE turns CUE errors into problems, merging the alternatives of a
// failed disjunction into one "must be one of" message.
func (l *loader) addCUE(err error, data cue.Value) {
	type group struct {
		pos   token.Pos
		alts  []string
		got   string
		other []string
		// unknown: the field is not allowed where it is, so what its
		// value should be is beside the point.
		unknown bool
	}
	groups := map[string]*group{}
	var order []string
	for _, e := range cueerrors.Errors(err) {
		path := cuePath(e.Path())
		format, args := e.Msg()
		if strings.Contains(format, "errors in empty disjunction") {
			continue
		}
		g, ok := groups[path]
		if !ok {
			g = &group{}
			groups[path] = g
			order = append(order, path)
		}
		if p := l.dataPos(e); p.IsValid() && (!g.pos.IsValid() || p.Line() < g.pos.Line()) {
			g.pos = p
		}
		if strings.HasPrefix(format, "conflicting values %s and %s") && len(args) >= 2 {
			// One side is the input, the other a schema alternative.
			a, b := fmt.Sprint(args[0]), fmt.Sprint(args[1])
			got := ""
			if path != "" && data.Exists() {
				if dv := data.LookupPath(cue.ParsePath(path)); dv.Exists() {
					got = fmt.Sprint(dv)
				}
			}
			if a == got {
				a, b = b, a
			}
			g.alts = append(g.alts, a)
			g.got = b
			continue
		}
		msg := fmt.Sprintf(format, args...)
		if strings.Contains(msg, "field not allowed") {
			g.unknown = true
			msg = "unknown field (not in the schema; check the spelling)"
			if h := fieldHomes()[lastName(path)]; len(h) > 0 {
				// A real field in the wrong place (indentation, or a
				// database's field under a storage).
				msg = fmt.Sprintf("%s is not a field here: it belongs under %s", lastName(path), strings.Join(h, " or "))
			} else if s := suggest(lastName(path)); s != "" {
				msg = fmt.Sprintf("unknown field (not in the schema): did you mean %s?", s)
			}
		}
		if strings.HasPrefix(msg, "incomplete value") || strings.Contains(msg, "non-concrete value") {
			msg = "required field is missing"
		}
		g.other = append(g.other, msg)
	}
	for _, path := range order {
		g := groups[path]
		if !g.pos.IsValid() && data.Exists() && path != "" {
			g.pos = posOf(data, path)
		}
		if secretField(path) && g.got != "" {
			// A secret of the wrong type (an unquoted number) is still a
			// secret: say what is wrong, never the value.
			g.got = secret.Redacted + "; quote the value"
			for i := range g.other {
				g.other[i] = "invalid value " + secret.Redacted
			}
		}
		if want, ok := friendly(path); ok && !g.unknown && (len(g.alts) > 0 || len(g.other) > 0) {
			got := g.got
			if got == "" && data.Exists() {
				if dv := data.LookupPath(cue.ParsePath(path)); dv.Exists() {
					got = fmt.Sprint(dv)
				}
			}
			if got != "" {
				l.probs = append(l.probs, Problem{Path: path, Pos: l.pos(g.pos), Msg: fmt.Sprintf("must be %s (got %s)", want, got)})
				continue
			}
		}
		if len(g.alts) > 1 {
			l.probs = append(l.probs, Problem{Path: path, Pos: l.pos(g.pos),
				Msg: fmt.Sprintf("must be one of %s (got %s)", strings.Join(uniq(g.alts), ", "), g.got)})
		} else if len(g.alts) == 1 {
			l.probs = append(l.probs, Problem{Path: path, Pos: l.pos(g.pos),
				Msg: fmt.Sprintf("must be %s (got %s)", g.alts[0], g.got)})
		}
		for _, m := range uniq(g.other) {
			l.probs = append(l.probs, Problem{Path: path, Pos: l.pos(g.pos), Msg: m})
		}
	}
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// dataPos returns the error's position inside the config file, if any.
func (l *loader) dataPos(e cueerrors.Error) token.Pos {
	ps := append([]token.Pos{e.Position()}, e.InputPositions()...)
	for _, p := range ps {
		if p.IsValid() && p.Filename() == l.file {
			return p
		}
	}
	return token.NoPos
}

// cuePath renders a CUE error path as databases[0].backup.storage.
func cuePath(sel []string) string {
	var b strings.Builder
	for _, s := range sel {
		if s == "#Config" {
			continue
		}
		if _, err := strconv.Atoi(s); err == nil {
			b.WriteString("[" + s + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

// envRef matches $$, ${NAME} and ${NAME:-default}.
var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandFile expands ${VAR} in every string literal of the file, in place.
func (l *loader) expandFile(f *ast.File) {
	for _, d := range f.Decls {
		l.expandNode(d, "")
	}
}

func (l *loader) expandNode(n ast.Node, path string) {
	switch n := n.(type) {
	case *ast.Field:
		name, _, _ := ast.LabelName(n.Label)
		p := name
		if path != "" {
			p = path + "." + name
		}
		l.expandNode(n.Value, p)
	case *ast.StructLit:
		for _, e := range n.Elts {
			l.expandNode(e, path)
		}
	case *ast.ListLit:
		for i, e := range n.Elts {
			l.expandNode(e, fmt.Sprintf("%s[%d]", path, i))
		}
	case *ast.BasicLit:
		if n.Kind != token.STRING {
			return
		}
		s, err := literal.Unquote(n.Value)
		if err != nil || !strings.Contains(s, "$") {
			return
		}
		out, changed := l.expand(s, path, n.Pos())
		if changed {
			if secretField(path) {
				l.secrets = append(l.secrets, out)
			}
			n.Value = literal.String.Quote(out)
		}
	}
}

func (l *loader) expand(s, path string, pos token.Pos) (string, bool) {
	changed := false
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		changed = true
		if m == "$$" {
			return "$"
		}
		sub := envRef.FindStringSubmatch(m)
		if v, ok := l.env(sub[1]); ok && (v != "" || sub[2] == "") {
			return v
		}
		if sub[2] != "" {
			return sub[3]
		}
		l.add(path, pos, "environment variable %s is not set (set it, or write ${%s:-default})", sub[1], sub[1])
		return ""
	})
	return out, changed
}

// secretField reports whether a field path holds a credential.
func secretField(path string) bool {
	p := strings.ToLower(path)
	for _, w := range []string{"password", "secret", "access_key", "token", "url", "headers"} {
		if strings.Contains(p, w) {
			return true
		}
	}
	return false
}

// friendly says in words what a field whose CUE type reads badly must be
// ("must be one of 5432, int" says nothing to a person).
func friendly(path string) (string, bool) {
	switch lastName(path) {
	case "port", "smtp_port":
		return "a port number from 1 to 65535", true
	case "compression":
		return `true, false, "gzip", "zstd" or "none"`, true
	}
	return "", false
}

// fieldHomes maps each field name of the schema to the places it may be
// written ("databases[].connection"), for a field put in the wrong place.
var fieldHomes = sync.OnceValue(func() map[string][]string {
	homes := map[string][]string{}
	root := cuecontext.New().CompileString(schemaSource).LookupPath(cue.ParsePath("#Config"))
	var walk func(v cue.Value, at string, depth int)
	walk = func(v cue.Value, at string, depth int) {
		if depth > 8 {
			return
		}
		if v.IncompleteKind() == cue.ListKind {
			walk(v.LookupPath(cue.MakePath(cue.AnyIndex)), at+"[]", depth+1)
			return
		}
		it, err := v.Fields(cue.Optional(true))
		if err != nil {
			return
		}
		for it.Next() {
			name := it.Selector().Unquoted()
			home := at
			if home == "" {
				home = "the top level"
			}
			if !slices.Contains(homes[name], home) {
				homes[name] = append(homes[name], home)
			}
			next := name
			if at != "" {
				next = at + "." + name
			}
			walk(it.Value(), next, depth+1)
		}
	}
	walk(root, "", 0)
	return homes
})

// suggest returns the declared field name nearest to a misspelt one, if
// one is close enough to be what was meant.
func suggest(name string) string {
	best, dist := "", 3
	names := slices.Sorted(maps.Keys(fieldHomes()))
	for _, f := range names {
		if d := levenshtein.ComputeDistance(name, f); d < dist && d < len(f)/2+1 {
			best, dist = f, d
		}
	}
	return best
}
