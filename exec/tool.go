package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/backupkit/backupkit/internal/fault"
	"github.com/backupkit/backupkit/pg"
)

// allowedEnv are the variables of our own environment a client tool
// inherits: the path, locale and time zone, and the libpq settings a user
// may rely on (TLS files, a passfile, a service). Nothing else: not the
// encryption password, not cloud credentials.
var allowedEnv = []string{"PATH", "HOME", "TMPDIR", "TZ", "LANG", "LANGUAGE", "PGSSLMODE", "PGSSLROOTCERT",
	"PGSSLCERT", "PGSSLKEY", "PGSSLCRL", "PGSSLCRLDIR", "PGSSLSNI", "PGSSLNEGOTIATION", "PGSSLMINPROTOCOLVERSION",
	"PGSSLMAXPROTOCOLVERSION", "PGSSLCERTMODE", "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR",
	"PGGSSENCMODE", "PGREQUIRESSL", "PGKRBSRVNAME", "PGTARGETSESSIONATTRS"}

// toolEnv is a client tool's environment: the allow-listed part of ours
// (LC_* too), then the connection's PG* settings, which win.
func toolEnv(c pg.Conn) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(allowedEnv, k) || strings.HasPrefix(k, "LC_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"PGHOST="+c.Host,
		"PGPORT="+strconv.Itoa(c.Port),
		"PGUSER="+c.User,
		"PGDATABASE="+c.Database,
		"PGAPPNAME=backupkit",
		"PGCONNECT_TIMEOUT=15",
	)
	if c.Password != "" {
		env = append(env, "PGPASSWORD="+c.Password)
	}
	for k, v := range map[string]string{"PGSSLMODE": c.SSLMode, "PGSSLROOTCERT": c.SSLRootCert, "PGSSLCERT": c.SSLCert, "PGSSLKEY": c.SSLKey} {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// tailBuffer keeps the first and last few KiB written to it: enough of a
// tool's stderr for an error message, bounded whatever it prints.
type tailBuffer struct {
	mu      sync.Mutex
	head    []byte
	tail    []byte
	dropped bool
}

const tailKeep = 4 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if room := tailKeep - len(t.head); room > 0 {
		k := min(room, len(p))
		t.head = append(t.head, p[:k]...)
		p = p[k:]
	}
	if len(p) > 0 {
		t.tail = append(t.tail, p...)
		if len(t.tail) > tailKeep {
			t.tail = t.tail[len(t.tail)-tailKeep:]
			t.dropped = true
		}
	}
	return n, nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.head)
	if t.dropped {
		s += "\n…\n"
	}
	return strings.TrimSpace(s + string(t.tail))
}

// command prepares a PostgreSQL client tool: no shell, SIGTERM on
// cancellation, a bounded wait for it to go.
func command(ctx context.Context, conn pg.Conn, name string, args ...string) (*osexec.Cmd, *tailBuffer) {
	cmd := osexec.CommandContext(ctx, name, args...)
	cmd.Env = toolEnv(conn)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 3 * time.Second
	stderr := &tailBuffer{}
	cmd.Stderr = stderr
	return cmd, stderr
}

// toolError describes a failed tool run with its stderr.
func toolError(name string, err error, stderr *tailBuffer) error {
	var ee *osexec.ExitError
	msg := err.Error()
	if errors.As(err, &ee) {
		msg = ee.ProcessState.String()
	}
	if errors.Is(err, osexec.ErrNotFound) {
		return fmt.Errorf("%s not found in PATH: install the PostgreSQL client tools", name)
	}
	s := stderr.String()
	var out error
	if s != "" {
		out = fmt.Errorf("%s failed (%s): %s", name, msg, s)
	} else {
		out = fmt.Errorf("%s failed: %s", name, msg)
	}
	return fault.Mark(kindOf(s), out)
}

// kindOf classifies a tool failure by what libpq and the server said.
func kindOf(stderr string) fault.Kind {
	s := strings.ToLower(stderr)
	for _, p := range []string{"password authentication failed", "does not exist", "permission denied",
		"server version mismatch", "no pg_hba.conf entry", "must be owner", "invalid input syntax"} {
		if strings.Contains(s, p) {
			return fault.Permanent
		}
	}
	for _, p := range []string{"could not connect", "connection refused", "timeout expired", "terminating connection",
		"server closed the connection", "could not receive data", "the database system is starting up",
		"the database system is shutting down", "too many connections"} {
		if strings.Contains(s, p) {
			return fault.Transient
		}
	}
	return fault.Unknown
}

// ToolVersion returns the major version of a client tool (pg_dump 15.4 → 15).
func ToolVersion(ctx context.Context, name string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := osexec.CommandContext(ctx, name, "--version")
	cmd.Env = toolEnv(pg.Conn{})
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		return 0, "", toolError(name, err, &tailBuffer{})
	}
	// "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)": the first
	// line, the first word that starts with a number.
	s, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	for _, w := range strings.Fields(s) {
		if m, err := strconv.Atoi(strings.SplitN(w, ".", 2)[0]); err == nil {
			return m, s, nil
		}
	}
	return 0, s, fmt.Errorf("cannot read the version of %s from %q", name, s)
}
