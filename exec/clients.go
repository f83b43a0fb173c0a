package exec

import (
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/backupkit/backupkit/pg"
)

// Client is one copy of a PostgreSQL client tool on this machine.
type Client struct {
	Path    string
	Major   int
	Version string // what --version printed
}

// debianLayout is where Debian's and the PGDG packages put each major.
const debianLayout = "/usr/lib/postgresql/*/bin"

var versions sync.Map // path → Client (or error)

// Clients lists the copies of a tool BackupKit may run, in the order it
// searches them: binDir (configured), then PATH (so a wrapper there
// wins), then the Debian/PGDG layout /usr/lib/postgresql/N/bin. Debian's
// own pg_wrapper in PATH is left out when the layout has a copy: it
// only runs one of those, chosen by rules of its own, after starting
// Perl (60 ms here, paid by each of a restore's pg_restore runs).
func Clients(ctx context.Context, name, binDir string) []Client {
	var paths []string
	if binDir != "" {
		paths = append(paths, filepath.Join(binDir, name))
	}
	var debianWrapper string
	if p, err := osexec.LookPath(name); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && filepath.Base(real) == "pg_wrapper" {
			debianWrapper = p
		} else {
			paths = append(paths, p)
		}
	}
	layout, _ := filepath.Glob(filepath.Join(debianLayout, name))
	sort.Strings(layout)
	paths = append(paths, layout...)
	if debianWrapper != "" && len(layout) == 0 {
		paths = append(paths, debianWrapper)
	}
	var out []Client
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			continue
		}
		if c, err := clientAt(ctx, p); err == nil {
			out = append(out, c)
		}
	}
	return out
}

func clientAt(ctx context.Context, path string) (Client, error) {
	if v, ok := versions.Load(path); ok {
		return v.(Client), nil
	}
	major, text, err := ToolVersion(ctx, path)
	if err != nil {
		return Client{}, err
	}
	c := Client{Path: path, Major: major, Version: text}
	versions.Store(path, c)
	return c, nil
}

// Pick chooses the copy of a tool for a server of major version server
// that can also read what a major atLeast wrote: the first one (in search
// order) of the server's major if that is new enough, else the lowest
// newer major. An error names the versions and what was found.
func Pick(clients []Client, name string, server, atLeast int) (Client, error) {
	want := max(server, atLeast)
	for _, c := range clients {
		if c.Major == want {
			return c, nil
		}
	}
	best := -1
	for i, c := range clients {
		if c.Major > want && (best < 0 || c.Major < clients[best].Major) {
			best = i
		}
	}
	if best >= 0 {
		return clients[best], nil
	}
	var found []string
	for _, c := range clients {
		found = append(found, fmt.Sprintf("%s %d (%s)", name, c.Major, c.Path))
	}
	if len(found) == 0 {
		found = []string{"none"}
	}
	return Client{}, fmt.Errorf("PostgreSQL %d needs %s %d or newer, found %s: install postgresql-client-%d (or set pg_bin_dir to its bin folder)",
		want, name, want, strings.Join(found, ", "), want)
}

// PickFor is Pick for the server c names: it asks the server its major.
func PickFor(ctx context.Context, name, binDir string, c pg.Conn, atLeast int) (Client, int, error) {
	server, err := pg.ServerVersion(ctx, c)
	if err != nil {
		return Client{}, 0, err
	}
	cl, err := Pick(Clients(ctx, name, binDir), name, server, atLeast)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("cancelled while choosing %s: %w", name, context.Cause(ctx))
	}
	return cl, server, err
}

// MajorOf reads a major version from a version string ("15.4 (Debian
// 15.4-1)" → 15; "9.6.2" → 9).
func MajorOf(v string) int {
	f := strings.FieldsFunc(v, func(r rune) bool { return r == '.' || r == ' ' })
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}
