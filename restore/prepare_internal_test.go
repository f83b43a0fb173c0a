package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	osexec "os/exec"
	"strings"
	"testing"
	"time"

	"github.com/backupkit/backupkit/exec"
	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/pg"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

// TestStagingMadeEarlyIsDroppedWhenUnused: a backup named as encrypted
// has its staging database made while the key is derived; when the
// restore is not staged after all (a wrong password, a backup refused,
// an encrypted SQL payload), that database is dropped and the target
// is not created, or is restored the other way.
func TestStagingMadeEarlyIsDroppedWhenUnused(t *testing.T) {
	p := testenv.Postgres(t)
	conn := func(db string) pg.Conn { return pg.Conn{Host: p.Host, Port: p.Port, User: p.User, Database: db} }
	db := p.NewDB(t, "bk_prep")
	p.Query(t, db, "CREATE TABLE v (x text); INSERT INTO v VALUES ('kept')")
	var buf bytes.Buffer
	if _, err := exec.Backup(context.Background(), exec.BackupOptions{Dump: exec.DumpOptions{Conn: conn(db)}, Compression: format.Zstd, Password: "pw"}, &buf); err != nil {
		t.Fatal(err)
	}
	archive := bytes.Clone(buf.Bytes())
	// pg_dump's plain SQL, zstd, encrypted.
	text, err := osexec.Command("pg_dump", "-h", p.Host, "-p", fmt.Sprint(p.Port), "-U", p.User, "-d", db).Output()
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	enc, err := format.NewEncrypter(&buf, "pw")
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := format.NewCompressor(enc, format.Zstd, 0)
	zw.Write(text)
	zw.Close()
	enc.Close()
	sql := buf.Bytes()
	cases := []struct {
		name     string
		data     []byte
		ext      format.Ext
		pw       string
		restored bool
	}{
		{"wrong password", archive, format.Ext{Compression: format.Zstd, Encryption: format.Enc}, "wrong", false},
		{"cut", archive[:len(archive)/2], format.Ext{Compression: format.Zstd, Encryption: format.Enc}, "pw", false},
		{"SQL text named as an archive", sql, format.Ext{Compression: format.Zstd, Encryption: format.Enc}, "pw", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := sinks.NewLocal("local", t.TempDir())
			key := format.Key("app", time.Now().Add(-time.Minute), c.ext)
			if _, err := repo.Write(context.Background(), s, key, bytes.NewReader(c.data)); err != nil {
				t.Fatal(err)
			}
			src, err := Resolve(context.Background(), Storages{Database: "app", Names: []string{"local"}, Sinks: map[string]sinks.Sink{"local": s}}, "latest", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			target := "bk_prep_t_" + testenv.RandHex(3)
			t.Cleanup(func() { p.DropDB(target) })
			var made []string
			o := Options{Target: conn(target), onStaging: func(name string) { made = append(made, name) },
				Check: CheckOptions{Keys: format.Keys{Password: c.pw}, Encrypted: true, Encryption: format.Enc, Compression: format.Zstd, AllowSQL: true}}
			_, err = Run(context.Background(), src, o)
			if c.restored != (err == nil) {
				t.Fatalf("restore: %v", err)
			}
			if err != nil && !errors.Is(err, ErrRefused) {
				t.Fatalf("want a refusal: %v", err)
			}
			if len(made) != 1 {
				t.Fatalf("staging databases made early: %v, want one", made)
			}
			names, err := pg.DatabasesLike(context.Background(), conn("postgres"), strings.ReplaceAll(made[0], "_", `\_`))
			if err != nil || len(names) != 0 {
				t.Fatalf("staging database %s left: %v %v", made[0], names, err)
			}
			targets, _ := pg.DatabasesLike(context.Background(), conn("postgres"), strings.ReplaceAll(target, "_", `\_`))
			if (len(targets) == 1) != c.restored {
				t.Fatalf("target exists: %v", targets)
			}
			if c.restored && p.Query(t, target, "SELECT x FROM v") != "kept" {
				t.Fatal("the target lacks the backup's row")
			}
		})
	}
}
