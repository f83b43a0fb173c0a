package main

// Whoever can write to a bucket or a backup folder must not be able to
// run code on the database server or the BackupKit host; a restore never
// starts on bytes it has not checked; secrets stay secret. Each test
// breaks one of those on purpose against the real binary and PostgreSQL.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

// plainDump is what an attacker with write access to storage drops in:
// a valid pg_dump -Fc of a database that holds their own table.
func plainDump(t *testing.T, pg testenv.PG, flags ...string) []byte {
	t.Helper()
	evil := pg.NewDB(t, "bk_evil")
	pg.Query(t, evil, "CREATE TABLE pwned (note text); INSERT INTO pwned VALUES ('attacker was here')")
	cmd := exec.Command("pg_dump", append([]string{"-h", pg.Host, "-p", fmt.Sprint(pg.Port), "-U", pg.User, "-d", evil}, flags...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dbExists(t *testing.T, pg testenv.PG, name string) bool {
	return pg.Query(t, "postgres", fmt.Sprintf("SELECT count(*) FROM pg_database WHERE datname = '%s'", strings.ReplaceAll(name, "'", "''"))) == "1"
}

func TestUnencryptedPayloadRefusedWhenEncryptionIsConfigured(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	src := testDB(t, pg, "bk_encsrc")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src,
		extra: "      compression: zstd\n      encryption:\n        enabled: true\n        password: the-password\n"})
	mustCLI(t, 0, "backup", "-c", cfg)
	// Newer than the real backup, named as encrypted, no sidecar.
	drop := filepath.Join(dir, "store", format.Key("app", time.Now().Add(-time.Millisecond), format.Ext{Compression: format.None, Encryption: format.Enc}))
	writeFile(t, drop, string(plainDump(t, pg, "-Fc")))
	target := "bk_enc_target_" + testenv.RandHex(3)
	t.Cleanup(func() { pg.DropDB(target) })
	code, _, errs := cli(t, "restore", "-c", cfg, "--from", "latest", "--to-database", target)
	if code != 1 || !strings.Contains(errs, "restore refused") || !strings.Contains(errs, "not encrypted") {
		t.Fatalf("an unencrypted payload was not refused: exit %d: %s", code, errs)
	}
	if dbExists(t, pg, target) {
		t.Fatal("the refused restore created the target database")
	}
	// Only an explicit --allow-unencrypted takes it.
	mustCLI(t, 0, "restore", "-c", cfg, "--from", "latest", "--to-database", target, "--allow-unencrypted")
	if pg.Query(t, target, "SELECT note FROM pwned") != "attacker was here" {
		t.Fatal("--allow-unencrypted did not restore the payload")
	}

	// A key that says .enc over bytes that are not encrypted is refused
	// even where the config does not encrypt.
	plainCfg := config(t, pg, t.TempDir(), nil, dbSpec{name: "app", database: src, extra: "      compression: none\n"})
	f := writeFile(t, filepath.Join(t.TempDir(), "app", "20260101_000000.000000000Z.dump.enc"), string(plainDump(t, pg, "-Fc")))
	code, _, errs = cli(t, "restore", "-c", plainCfg, "--from", f, "--to-database", target+"_x")
	if code != 1 || !strings.Contains(errs, "named as encrypted, but its bytes are not") || dbExists(t, pg, target+"_x") {
		t.Fatalf("a .enc key over plain bytes: exit %d: %s", code, errs)
	}
}

// An encrypted backup cut after chunk 8, with its checksum sidecar
// regenerated to match (anyone can compute a SHA-256), is still refused
// before the target is touched: the sidecar never replaces decoding.
func TestRegeneratedSidecarDoesNotLicenseACutBackup(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	src := pg.NewDB(t, "bk_cut")
	pg.Query(t, src, "CREATE TABLE noise AS SELECT g, decode(md5(g::text) || md5((g*3)::text), 'hex') AS b FROM generate_series(1, 200000) g")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src,
		extra: "      compression: gzip\n      encryption:\n        enabled: true\n        password: pw\n"})
	mustCLI(t, 0, "backup", "-c", cfg)
	bs, _ := repo.List(context.Background(), sinks.NewLocal("l", filepath.Join(dir, "store")), "app")
	path := filepath.Join(dir, "store", bs[0].Key)
	data, _ := os.ReadFile(path)
	cut := data[:84+9*(512<<10+16)] // header (format version 2) and nine whole chunks
	if len(cut) >= len(data) {
		t.Fatalf("backup of %d bytes is too small for the test", len(data))
	}
	os.WriteFile(path, cut, 0o600)
	sum := sha256.Sum256(cut)
	os.WriteFile(path+format.SumExt, []byte(hex.EncodeToString(sum[:])+"  "+filepath.Base(path)+"\n"), 0o600)

	target := pg.NewDB(t, "bk_cut_target")
	pg.Query(t, target, "CREATE TABLE marker (note text); INSERT INTO marker VALUES ('untouched')")
	code, _, errs := cli(t, "restore", "-c", cfg, "--from", "latest", "--to-database", target, "--clean")
	if code != 1 || !strings.Contains(errs, "restore refused") || !strings.Contains(errs, "truncated") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if pg.Query(t, target, "SELECT note FROM marker") != "untouched" {
		t.Fatal("the target was touched")
	}
}

// --to-database is a database name, never a libpq connection string.
func TestToDatabaseIsANameNotAConnectionString(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	src := testDB(t, pg, "bk_name")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: "      compression: gzip\n"})
	mustCLI(t, 0, "backup", "-c", cfg)
	victim := pg.NewDB(t, "bk_victim")
	pg.Query(t, victim, "CREATE TABLE precious (v text); INSERT INTO precious VALUES ('keep me')")
	weird := "dbname=" + victim
	t.Cleanup(func() { pg.Query(t, "postgres", `DROP DATABASE IF EXISTS "`+weird+`" WITH (FORCE)`) })
	out := mustCLI(t, 0, "restore", "-c", cfg, "--from", "latest", "--to-database", weird)
	if !strings.Contains(out, "into "+weird) || !dbExists(t, pg, weird) {
		t.Fatalf("restore did not go into a database named %q: %s", weird, out)
	}
	if pg.Query(t, victim, "SELECT to_regclass('items') IS NULL") != "t" {
		t.Fatal("the restore went into the victim database")
	}
	if pg.Query(t, victim, "SELECT v FROM precious") != "keep me" {
		t.Fatal("the victim database changed")
	}
}

// Child processes get an allow-listed environment: no encryption
// password, no cloud keys, no tokens; the PG* settings they need, and TLS
// files from the config.
func TestChildEnvironmentIsAllowListed(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	src := testDB(t, pg, "bk_env")
	envFile := filepath.Join(dir, "pg_dump.env")
	t.Setenv("PATH", shimPgDump(t, `env > "`+envFile+`"; "$REAL" "$@"`))
	for k, v := range map[string]string{"AWS_SECRET_ACCESS_KEY": "aws-SECRET-1", "BACKUPKIT_ENC_PASSWORD": "enc-SECRET-2",
		"MY_API_TOKEN": "tok-SECRET-3", "PGSSLCRL": "/etc/ssl/crl.pem"} {
		t.Setenv(k, v)
	}
	root := writeFile(t, filepath.Join(dir, "root.crt"), testCAPEM(t))
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src,
		extra: "      compression: gzip\n      encryption:\n        enabled: true\n        password: ${BACKUPKIT_ENC_PASSWORD}\n"})
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "      user: ", "      sslrootcert: "+root+"\n      user: ", 1)), 0o600)
	mustCLI(t, 0, "backup", "-c", cfg)
	env, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(env), "SECRET") {
		t.Fatalf("pg_dump inherited a secret:\n%s", env)
	}
	for _, want := range []string{"PGHOST=" + pg.Host, "PGDATABASE=" + src, "PGSSLROOTCERT=" + root, "PGSSLCRL=/etc/ssl/crl.pem", "PATH="} {
		if !strings.Contains(string(env), want) {
			t.Fatalf("pg_dump's environment lacks %s:\n%s", want, env)
		}
	}
}

// A plain-SQL backup that runs a shell command (\!) does not run it: psql
// restores SQL text in restricted mode.
func TestSQLFallbackRunsNoShellCommand(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	src := testDB(t, pg, "bk_sql")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: "      compression: none\n"})
	pwned := filepath.Join(dir, "pwned.txt")
	evil := "--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE t (a int);\n\\! env > " + pwned + "\nSELECT 1; \\! touch " + pwned + "\n"
	f := writeFile(t, filepath.Join(dir, "in", "app", "20260101_000000.000000000Z.dump"), evil)
	target := "bk_sql_t_" + testenv.RandHex(3)
	t.Cleanup(func() { pg.DropDB(target) })
	code, _, errs := cli(t, "restore", "-c", cfg, "--from", f, "--to-database", target, "--allow-sql-fallback")
	if code != 1 || !strings.Contains(errs, "restricted") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("the SQL backup ran a shell command on the BackupKit host")
	}
	if dbExists(t, pg, target) {
		t.Fatal("the failed restore left the database it created")
	}
	// A genuine plain dump (with pg_dump's own \restrict lines) restores.
	genuine := plainDump(t, pg, "-Fp")
	g := writeFile(t, filepath.Join(dir, "in2", "app", "20260101_000000.000000000Z.dump"), string(genuine))
	mustCLI(t, 0, "restore", "-c", cfg, "--from", g, "--to-database", target, "--allow-sql-fallback")
	if pg.Query(t, target, "SELECT note FROM pwned") != "attacker was here" {
		t.Fatal("the plain dump was not restored")
	}
}

func TestRestoreTargetRules(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	src := testDB(t, pg, "bk_rules")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: "      compression: gzip\n"})
	mustCLI(t, 0, "backup", "-c", cfg)
	// A target with only a view, a function and a type is not empty.
	target := pg.NewDB(t, "bk_rules_t")
	pg.Query(t, target, "CREATE VIEW v AS SELECT 1 AS one; CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'; CREATE TYPE mood AS ENUM ('ok')")
	code, _, errs := cli(t, "restore", "-c", cfg, "--from", "latest", "--to-database", target)
	if code != 1 || !strings.Contains(errs, "already holds") {
		t.Fatalf("a target with a view, a function and a type: exit %d: %s", code, errs)
	}
	if code, _, errs := cli(t, "restore", "-c", cfg, "--from", "latest", "--to-database", target, "--clean", "--single-transaction", "--jobs", "2"); code != 2 || !strings.Contains(errs, "--single-transaction cannot be combined") {
		t.Fatalf("--single-transaction --jobs 2: exit %d: %s", code, errs)
	}
	for _, db := range []string{"template1", "template0", "postgres"} {
		code, _, errs := cli(t, "restore", "-c", cfg, "--from", "latest", "--to-database", db, "--clean")
		if code != 1 || !strings.Contains(errs, "maintenance database") || !strings.Contains(errs, "--force") {
			t.Fatalf("--to-database %s: exit %d: %s", db, code, errs)
		}
	}
	if pg.Query(t, "template1", "SELECT to_regclass('items') IS NULL") != "t" {
		t.Fatal("template1 was restored into")
	}
}

// pg_dump gives up waiting for a table lock after lock_wait_timeout
// instead of hanging behind a long transaction.
func TestLockWaitTimeout(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	src := testDB(t, pg, "bk_lockwait")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: "      compression: gzip\n      lock_wait_timeout: 1s\n"})
	holder := exec.Command("psql", "-X", "-h", pg.Host, "-p", fmt.Sprint(pg.Port), "-U", pg.User, "-d", src, "-c",
		"BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(30);")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	waitFor(t, "the lock", 10*time.Second, func() bool {
		return pg.Query(t, src, "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'items'::regclass") == "1"
	})
	start := time.Now()
	code, out, _ := cli(t, "backup", "-c", cfg)
	if code != 1 || !strings.Contains(out, "could not lock a table within lock_wait_timeout (1s)") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Fatalf("the backup waited %v for the lock", el)
	}
}

func TestDatabaseNamesDotAndDotDotRejected(t *testing.T) {
	for _, name := range []string{".", ".."} {
		cfg := writeFile(t, filepath.Join(t.TempDir(), "c.yaml"), "version: 1\nstorage: [{name: local, type: local, local: {path: /tmp/x}}]\n"+
			"databases:\n  - name: \""+name+"\"\n    type: postgres\n    connection: {host: h, database: d, user: u}\n    backup: {storage: local}\n")
		code, _, errs := cli(t, "validate", "-c", cfg)
		if code != 2 || !strings.Contains(errs, "databases[0].name") {
			t.Fatalf("database name %q: exit %d: %s", name, code, errs)
		}
	}
}

// Cleanup removes only BackupKit's own leftovers: a user's dotfile that
// merely looks like a temp file is foreign and stays.
func TestCleanupLeavesForeignTempLookalikes(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	src := testDB(t, pg, "bk_foreign")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: "      compression: gzip\n"})
	foreign := writeFile(t, filepath.Join(dir, "store", "app", ".important.tmp-keepme"), "mine")
	own := writeFile(t, filepath.Join(dir, "store", "app", ".20250101_000000.000000000Z.dump.gz.tmp-0123456789ab"), "partial")
	old := time.Now().Add(-time.Hour)
	os.Chtimes(foreign, old, old)
	os.Chtimes(own, old, old)
	out := mustCLI(t, 0, "apply", "-c", cfg, "--run-timeout", "1m")
	if _, err := os.Stat(foreign); err != nil {
		t.Fatalf("a foreign dotfile was cleaned up:\n%s", out)
	}
	if _, err := os.Stat(own); err == nil {
		t.Fatalf("BackupKit's own leftover was not cleaned up:\n%s", out)
	}
}

// testCAPEM is a self-signed CA certificate in PEM.
func testCAPEM(t *testing.T) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
