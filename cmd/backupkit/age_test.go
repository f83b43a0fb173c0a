package main

// Public-key encryption with age: the sidecar holds only public keys;
// restores need a private key; backups are readable with the age CLI.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	agelib "filippo.io/age"
	"golang.org/x/crypto/ssh"

	"github.com/backupkit/backupkit/format"
	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/repo"
	"github.com/backupkit/backupkit/sinks"
)

type ageKey struct{ recipient, identityFile string }

func newAgeKey(t *testing.T) ageKey {
	id, err := agelib.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	f := writeFile(t, filepath.Join(t.TempDir(), "key.txt"), "# test identity\n"+id.String()+"\n")
	return ageKey{id.Recipient().String(), f}
}

func newSSHKey(t *testing.T) ageKey {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	f := writeFile(t, filepath.Join(t.TempDir(), "id_ed25519"), string(pem.EncodeToMemory(block)))
	return ageKey{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))), f}
}

// ageExtra is the encryption block of a database with age recipients.
func ageExtra(compression string, identity string, recipients ...string) string {
	s := "      compression: " + compression + "\n      encryption:\n        enabled: true\n        recipients:\n"
	for _, r := range recipients {
		s += "          - \"" + r + "\"\n"
	}
	if identity != "" {
		s += "        identity_file: " + identity + "\n"
	}
	return s
}

func ageCLI(t *testing.T) string {
	bin, err := exec.LookPath("age")
	if err != nil {
		bin = filepath.Join(testenv.RepoRoot(), ".tools", "age")
		if _, err := os.Stat(bin); err != nil {
			testenv.Missing(t, "the age CLI, not on PATH or in .tools (run `make tools`)")
		}
	}
	return bin
}

func TestAgeRoundTripAndStockTools(t *testing.T) {
	pg := testenv.Postgres(t)
	schemaFile, dataFile := testenv.Pagila(t)
	src := pg.NewDB(t, "bk_age_pagila")
	pg.RunFile(t, src, schemaFile)
	pg.RunFile(t, src, dataFile)
	want := pg.TableChecksums(t, src)
	ops, ssh := newAgeKey(t), newSSHKey(t)
	for _, comp := range []string{"zstd", "gzip"} {
		dir := t.TempDir()
		cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: ageExtra(comp, ops.identityFile, ops.recipient, ssh.recipient)})
		mustCLI(t, 0, "backup", "-c", cfg)
		bs, _ := repo.List(context.Background(), sinks.NewLocal("l", filepath.Join(dir, "store")), "app")
		if len(bs) != 1 || bs[0].Ext.Encryption != format.Age || !strings.HasSuffix(bs[0].Key, ".age") {
			t.Fatalf("%s: backups %+v", comp, bs)
		}
		// BackupKit restores it with the identity.
		dst := "bk_age_r_" + testenv.RandHex(3)
		t.Cleanup(func() { pg.DropDB(dst) })
		mustCLI(t, 0, "restore", "-c", cfg, "--from", "latest", "--to-database", dst)
		if got := pg.TableChecksums(t, dst); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: the restored database differs", comp)
		}
		// So does the stock toolchain, without BackupKit.
		dec := map[string]string{"zstd": "zstd -d", "gzip": "gunzip"}[comp]
		stock := "bk_age_stock_" + testenv.RandHex(3)
		pg.Query(t, "postgres", "CREATE DATABASE "+stock)
		t.Cleanup(func() { pg.DropDB(stock) })
		cmd := exec.Command("sh", "-c", fmt.Sprintf(`"%s" -d -i "%s" "%s" | %s | pg_restore --exit-on-error -d "%s"`,
			ageCLI(t), ops.identityFile, filepath.Join(dir, "store", bs[0].Key), dec, stock))
		cmd.Env = append(os.Environ(), "PGHOST="+pg.Host, fmt.Sprintf("PGPORT=%d", pg.Port), "PGUSER="+pg.User)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("age | %s | pg_restore: %v\n%s", dec, err, out)
		}
		if got := pg.TableChecksums(t, stock); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: the stock-tools restore differs", comp)
		}
		// Either recipient's identity reads it: the SSH key too.
		sshCfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: ageExtra(comp, ssh.identityFile, ops.recipient, ssh.recipient)})
		if out := mustCLI(t, 0, "verify", "-c", sshCfg, "--from", "latest"); !strings.Contains(out, "age → "+comp) {
			t.Fatalf("verify with the SSH identity: %s", out)
		}
		// list says which keys can read it, * for the one configured here.
		if l := mustCLI(t, 0, "list", "-c", sshCfg); !strings.Contains(l, "age ") || !strings.Contains(l, format.Fingerprint(ssh.recipient)[:8]+"*") {
			t.Fatalf("list does not show the keys:\n%s", l)
		}
	}
}

func TestAgeRefusals(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	src := testDB(t, pg, "bk_age_ref")
	ops, other := newAgeKey(t), newAgeKey(t)
	// Recipients without an identity: the sidecar backs up and prunes ...
	sidecar := config(t, pg, dir, nil, dbSpec{name: "app", database: src,
		extra: ageExtra("zstd", "", ops.recipient) + "    retention:\n      keep_last: 1\n"})
	mustCLI(t, 0, "backup", "-c", sidecar)
	out := mustCLI(t, 0, "backup", "-c", sidecar)
	if !strings.Contains(out, "✓ prune local:app/") {
		t.Fatalf("no prune: %s", out)
	}
	if out := mustCLI(t, 0, "test", "-c", sidecar); !strings.Contains(out, "no identity_file here") {
		t.Fatalf("test: %s", out)
	}
	// ... and says exactly what is missing for a restore.
	target := pg.NewDB(t, "bk_age_target")
	pg.Query(t, target, "CREATE TABLE marker (v text); INSERT INTO marker VALUES ('untouched')")
	code, _, errs := cli(t, "restore", "-c", sidecar, "--from", "latest", "--to-database", target, "--clean")
	if code != 1 || !strings.Contains(errs, "no identity_file is configured") {
		t.Fatalf("restore without an identity: exit %d: %s", code, errs)
	}
	// A wrong identity is refused before the target is touched, and
	// test warns that it matches no recipient.
	wrong := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: ageExtra("zstd", other.identityFile, ops.recipient)})
	code, _, errs = cli(t, "restore", "-c", wrong, "--from", "latest", "--to-database", target, "--clean")
	if code != 1 || !strings.Contains(errs, "restore refused") || !strings.Contains(errs, "wrong age identity") {
		t.Fatalf("wrong identity: exit %d: %s", code, errs)
	}
	if code, out, _ := cli(t, "test", "-c", wrong); code != 1 || !strings.Contains(out, "does not decrypt with identity_file") {
		t.Fatalf("test with a wrong identity: exit %d: %s", code, out)
	}
	// Truncated or modified backups are refused before the target changes.
	good := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: ageExtra("zstd", ops.identityFile, ops.recipient)})
	bs, _ := repo.List(context.Background(), sinks.NewLocal("l", filepath.Join(dir, "store")), "app")
	data, _ := os.ReadFile(filepath.Join(dir, "store", bs[0].Key))
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 1
	for name, d := range map[string][]byte{"truncated": data[:len(data)*2/3], "modified": flipped} {
		f := writeFile(t, filepath.Join(t.TempDir(), "app", filepath.Base(bs[0].Key)), string(d))
		code, _, errs := cli(t, "restore", "-c", good, "--from", f, "--to-database", target, "--clean")
		if code != 1 || !strings.Contains(errs, "restore refused") || !containsAny(errs, []string{"truncated", "does not authenticate", "stops early"}) {
			t.Fatalf("%s age backup: exit %d: %s", name, code, errs)
		}
	}
	if pg.Query(t, target, "SELECT v FROM marker") != "untouched" {
		t.Fatal("the target changed")
	}
	// A recipient that does not parse is a config error naming it.
	bad := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: ageExtra("zstd", "", ops.recipient, "age1notakey")})
	if code, _, errs := cli(t, "validate", "-c", bad); code != 2 || !strings.Contains(errs, "recipient 2 does not parse") {
		t.Fatalf("bad recipient: exit %d: %s", code, errs)
	}
	// A passphrase-protected identity is refused with a clear message.
	locked := writeFile(t, filepath.Join(t.TempDir(), "key.age"), "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n")
	lockedCfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: ageExtra("zstd", locked, ops.recipient)})
	if code, _, errs := cli(t, "verify", "-c", lockedCfg, "--from", "latest"); code != 1 || !strings.Contains(errs, "protected by a passphrase") {
		t.Fatalf("passphrase-protected identity: exit %d: %s", code, errs)
	}
}

// Password-encrypted backups turn into a plain pg_dump archive with
// backupkit decrypt, which pg_restore alone then restores.
func TestDecryptToPlainArchive(t *testing.T) {
	pg := testenv.Postgres(t)
	dir := t.TempDir()
	src := testDB(t, pg, "bk_decrypt")
	cfg := config(t, pg, dir, nil, dbSpec{name: "app", database: src, extra: "      compression: zstd\n      encryption:\n        enabled: true\n        password: pw\n"})
	mustCLI(t, 0, "backup", "-c", cfg)
	plain := filepath.Join(dir, "plain.dump")
	f, _ := os.Create(plain)
	cmd := exec.Command(binary(t), "decrypt", "-c", cfg, "--from", "latest")
	cmd.Stdout = f
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("decrypt: %v %s", err, errb.String())
	}
	f.Close()
	head, _ := os.ReadFile(plain)
	if !strings.HasPrefix(string(head), "PGDMP") {
		t.Fatalf("decrypt did not write a pg_dump archive: %q", head[:min(16, len(head))])
	}
	dst := pg.NewDB(t, "bk_decrypt_r")
	c := exec.Command("pg_restore", "--exit-on-error", "-h", pg.Host, "-p", fmt.Sprint(pg.Port), "-U", pg.User, "-d", dst, plain)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("pg_restore of the decrypted archive: %v %s", err, out)
	}
	if fmt.Sprint(pg.TableChecksums(t, dst)) != fmt.Sprint(pg.TableChecksums(t, src)) {
		t.Fatal("the decrypted archive restores different data")
	}
}

// age encryption streams with bounded memory: 16 MiB and 128 MiB through
// it peak at the same heap.
func TestAgeMemoryIsFlat(t *testing.T) {
	k := newAgeKey(t)
	r, err := format.ParseRecipients([]string{k.recipient})
	if err != nil {
		t.Fatal(err)
	}
	peak := func(size int64) uint64 {
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		w, err := format.NewAgeEncrypter(discard{}, r)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 256<<10)
		var max uint64
		for n := int64(0); n < size; n += int64(len(buf)) {
			w.Write(buf)
			if n%(8<<20) == 0 {
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapInuse > max {
					max = m.HeapInuse
				}
			}
		}
		w.Close()
		return max - min(max, base.HeapInuse)
	}
	small, large := peak(16<<20), peak(128<<20)
	if large > small+(4<<20) || large > 16<<20 {
		t.Fatalf("heap above the baseline: %d KiB for 16 MiB, %d KiB for 128 MiB", small>>10, large>>10)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
