package restore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/pg"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

// The restore pass reads the very bytes the check pass checked: a backup
// swapped for another between the two passes is not what gets restored.
func TestRestoreReadsTheBytesItChecked(t *testing.T) {
	p := testenv.Postgres(t)
	dump := func(value string) []byte {
		db := p.NewDB(t, "bk_pin")
		p.Query(t, db, "CREATE TABLE v (x text); INSERT INTO v VALUES ('"+value+"')")
		var buf bytes.Buffer
		if _, err := exec.Backup(context.Background(), exec.BackupOptions{Dump: exec.DumpOptions{Conn: pg.Conn{Host: p.Host, Port: p.Port, User: p.User, Database: db}},
			Compression: format.Gzip}, &buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	checked, other := dump("checked"), dump("swapped in")
	for _, noSpool := range []bool{false, true} {
		t.Run(map[bool]string{false: "spooled", true: "read twice"}[noSpool], func(t *testing.T) {
			restoreSwapped(t, p, checked, other, noSpool)
		})
	}
}

func restoreSwapped(t *testing.T, p testenv.PG, checked, other []byte, noSpool bool) {
	root := t.TempDir()
	s := sinks.NewLocal("local", root)
	key := format.Key("app", time.Now().Add(-time.Minute), format.Ext{Compression: format.Gzip})
	if _, err := repo.Write(context.Background(), s, key, bytes.NewReader(checked)); err != nil {
		t.Fatal(err)
	}
	src, err := Resolve(context.Background(), Storages{Database: "app", Names: []string{"local"}, Sinks: map[string]sinks.Sink{"local": s}}, "latest", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	target := "bk_pin_t_" + testenv.RandHex(3)
	t.Cleanup(func() { p.DropDB(target) })
	swapped := false
	o := Options{Target: pg.Conn{Host: p.Host, Port: p.Port, User: p.User, Database: target},
		Check: CheckOptions{Compression: format.Gzip}, NoSpool: noSpool,
		afterCheck: func() {
			// Replace the file (and its sidecar) by another valid backup.
			tmp := filepath.Join(root, "swap")
			os.WriteFile(tmp, other, 0o600)
			if err := os.Rename(tmp, filepath.Join(root, key)); err != nil {
				t.Fatal(err)
			}
			os.Remove(filepath.Join(root, format.SumKey(key)))
			swapped = true
		}}
	res, err := Run(context.Background(), src, o)
	if err != nil {
		t.Fatal(err)
	}
	if !swapped || !res.Created {
		t.Fatal("the swap did not happen")
	}
	if got := p.Query(t, target, "SELECT x FROM v"); got != "checked" {
		t.Fatalf("restored %q: not the bytes that were checked", got)
	}
}
