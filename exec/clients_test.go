package exec

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPickClient(t *testing.T) {
	cs := []Client{{Path: "/wrap/pg_dump", Major: 17}, {Path: "/usr/lib/postgresql/15/bin/pg_dump", Major: 15},
		{Path: "/usr/lib/postgresql/16/bin/pg_dump", Major: 16}, {Path: "/usr/lib/postgresql/18/bin/pg_dump", Major: 18}}
	for _, c := range []struct {
		server, atLeast int
		want            string
	}{
		{15, 0, "/usr/lib/postgresql/15/bin/pg_dump"},  // the server's major
		{17, 0, "/wrap/pg_dump"},                       // first in search order
		{14, 0, "/usr/lib/postgresql/15/bin/pg_dump"},  // else the lowest newer
		{15, 16, "/usr/lib/postgresql/16/bin/pg_dump"}, // restore: must read what 16 wrote
		{18, 0, "/usr/lib/postgresql/18/bin/pg_dump"},
	} {
		got, err := Pick(cs, "pg_dump", c.server, c.atLeast)
		if err != nil || got.Path != c.want {
			t.Errorf("server %d, at least %d: %+v %v, want %s", c.server, c.atLeast, got, err, c.want)
		}
	}
	_, err := Pick(cs[:2], "pg_dump", 18, 0)
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL 18 needs pg_dump 18 or newer, found pg_dump 17 (/wrap/pg_dump), pg_dump 15") ||
		!strings.Contains(err.Error(), "install postgresql-client-18") {
		t.Fatalf("only older clients: %v", err)
	}
	if MajorOf("15.20 (Debian 15.20-0+deb12u1)") != 15 || MajorOf("9.6.2") != 9 || MajorOf("18beta1") != 0 {
		t.Fatal("MajorOf")
	}
}

// TestClientsSearchOrder: a tool in PATH comes before the Debian layout's
// copies, unless it is Debian's pg_wrapper, which only runs one of them.
func TestClientsSearchOrder(t *testing.T) {
	layout, _ := filepath.Glob(filepath.Join(debianLayout, "pg_restore"))
	if len(layout) == 0 {
		t.Skip("no pg_restore in " + debianLayout)
	}
	fake := func(dir, file string) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'pg_restore (PostgreSQL) 15.99'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	debian, own := t.TempDir(), t.TempDir()
	fake(debian, "pg_wrapper")
	if err := os.Symlink("pg_wrapper", filepath.Join(debian, "pg_restore")); err != nil {
		t.Fatal(err)
	}
	mine := fake(own, "pg_restore")
	ctx := context.Background()

	t.Setenv("PATH", debian)
	cs := Clients(ctx, "pg_restore", "")
	if len(cs) != len(layout) || cs[0].Path != layout[0] {
		t.Fatalf("with Debian's wrapper in PATH: %+v", cs)
	}
	t.Setenv("PATH", own)
	if cs := Clients(ctx, "pg_restore", ""); len(cs) != len(layout)+1 || cs[0].Path != mine {
		t.Fatalf("with a wrapper of one's own in PATH: %+v", cs)
	}
}
