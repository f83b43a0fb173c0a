package format

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// cheapKDF keeps tests fast: Argon2id with 1 MiB and one pass.
var cheapKDF = kdf{kdfArgon2id, 10, 1, 1}

// encrypt uses a cheap KDF setting so tests stay fast.
func encrypt(t testing.TB, plain []byte, password string) []byte {
	t.Helper()
	var buf bytes.Buffer
	e, err := newEncrypter(&buf, password, cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decrypt(ct []byte, password string) ([]byte, error) {
	r, err := NewDecrypter(bytes.NewReader(ct), password)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestEncryptRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 3*chunkSize + 17} {
		plain := randBytes(n)
		got, err := decrypt(encrypt(t, plain, "pw"), "pw")
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("size %d: round trip differs", n)
		}
	}
}

func TestEncryptFullChunkIsNotLastUntilClose(t *testing.T) {
	// Exactly one full chunk: it must be sealed as the final chunk, and
	// there must be no trailing empty chunk.
	ct := encrypt(t, randBytes(chunkSize), "pw")
	if want := headerSize + chunkSize + tagSize; len(ct) != want {
		t.Fatalf("ciphertext %d bytes, want %d", len(ct), want)
	}
}

func TestDecryptDetectsDamage(t *testing.T) {
	plain := randBytes(3*chunkSize + 1000)
	ct := encrypt(t, plain, "correct horse")
	one := chunkSize + tagSize
	flip := func(off int) []byte {
		c := bytes.Clone(ct)
		c[off] ^= 0x40
		return c
	}
	// A stream whose last chunk is full: damage there is not a cut.
	full := encrypt(t, plain[:2*chunkSize], "correct horse")
	full[len(full)-1] ^= 0x40
	reorder := bytes.Clone(ct)
	copy(reorder[headerSize:], ct[headerSize+one:headerSize+2*one])
	copy(reorder[headerSize+one:], ct[headerSize:headerSize+one])
	cases := []struct {
		name string
		data []byte
		pw   string
		want error
		says string // in the message, when set
	}{
		{"wrong password", ct, "wrong", ErrWrongPassword, ""},
		{"no password", ct, "", ErrNeedPassword, ""},
		{"truncated in header", ct[:30], "correct horse", ErrTruncated, ""},
		{"truncated at chunk boundary", ct[:headerSize+2*one], "correct horse", ErrTruncated, ""},
		{"truncated after header", ct[:headerSize], "correct horse", ErrTruncated, ""},
		{"truncated mid chunk", ct[:headerSize+one+100], "correct horse", ErrCorrupted, "chunk 1 failed authentication (cut short, or bytes changed)"},
		{"truncated in last chunk", ct[:len(ct)-5], "correct horse", ErrCorrupted, "chunk 3 failed authentication (cut short"},
		{"flipped header byte", flip(14), "correct horse", ErrCorrupted, ""},
		{"flipped body byte", flip(headerSize + one + 5), "correct horse", ErrCorrupted, "chunk 1 failed authentication (bytes changed or chunks reordered)"},
		{"flipped byte of a full last chunk", full, "correct horse", ErrCorrupted, "chunk 1 failed authentication (bytes changed or chunks reordered)"},
		{"flipped tail byte", flip(len(ct) - 1), "correct horse", ErrCorrupted, ""},
		{"reordered chunks", reorder, "correct horse", ErrCorrupted, ""},
		{"appended data", append(bytes.Clone(ct), ct[headerSize:headerSize+one]...), "correct horse", ErrCorrupted, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decrypt(c.data, c.pw)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Fatalf("%v does not say %q", err, c.says)
			}
		})
	}
}

func TestDecryptNeverReturnsUnauthenticated(t *testing.T) {
	ct := encrypt(t, randBytes(2*chunkSize), "pw")
	ct[len(ct)-3] ^= 1 // damage the last chunk
	r, err := NewDecrypter(bytes.NewReader(ct), "pw")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if !errors.Is(err, ErrCorrupted) {
		t.Fatalf("err %v", err)
	}
	if len(got) != chunkSize {
		t.Fatalf("returned %d bytes; only the first, authenticated chunk (%d) may be returned", len(got), chunkSize)
	}
}

func FuzzDecrypt(f *testing.F) {
	ct := encrypt(f, []byte("hello backupkit"), "pw")
	f.Add(ct)
	f.Add(ct[:headerSize])
	f.Add([]byte("BKITENC"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Cheap KDF parameters in seeds; cap what the fuzzer can ask for.
		if len(data) > 9 && data[9] > 12 { // the caps allow up to 256 MiB: too slow for fuzzing
			return
		}
		r, err := NewDecrypter(bytes.NewReader(data), "pw")
		if err != nil {
			return
		}
		io.Copy(io.Discard, r)
	})
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("PGDMP\x01\x0e\x00"))
	f.Add([]byte("SELECT 1;\n"))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0})
	f.Add(encrypt(f, []byte("PGDMP"), "pw"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 9 && bytes.HasPrefix(data, []byte(encMagic)) && data[9] > 12 {
			return
		}
		d, err := Decode(bytes.NewReader(data), Keys{Password: "pw"})
		if err != nil {
			return
		}
		io.Copy(io.Discard, d)
		d.Close()
	})
}

// New backups use a KDF at or above OWASP's minimum (Argon2id m=19 MiB,
// t=2, p=1).
func TestDefaultKDFIsOWASPGrade(t *testing.T) {
	k := defaultKDF
	if k.id != kdfArgon2id || 1<<k.a < 19<<10 || k.b < 2 || k.c < 1 {
		t.Fatalf("default KDF %s is below OWASP's minimum", k)
	}
	var buf bytes.Buffer
	e, err := NewEncrypter(&buf, "pw")
	if err != nil {
		t.Fatal(err)
	}
	e.Write([]byte("hello"))
	e.Close()
	if h := buf.Bytes(); h[8] != kdfArgon2id || h[9] != 16 || h[10] != 3 || h[11] != 4 {
		t.Fatalf("header KDF bytes % x", h[8:12])
	}
	if got, err := decrypt(buf.Bytes(), "pw"); err != nil || string(got) != "hello" {
		t.Fatalf("round trip: %q %v", got, err)
	}
}

// Backups written with the old scrypt KDF still decrypt.
func TestScryptBackupsStillDecrypt(t *testing.T) {
	var buf bytes.Buffer
	e, err := newEncrypter(&buf, "pw", kdf{kdfScrypt, 14, 8, 1})
	if err != nil {
		t.Fatal(err)
	}
	e.Write(randBytes(chunkSize + 10))
	e.Close()
	if _, err := decrypt(buf.Bytes(), "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := decrypt(buf.Bytes(), "wrong"); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
}

// A forged header cannot make the decrypter spend gigabytes or minutes:
// the parameters are refused before any derivation starts.
func TestForgedHeaderCannotForceAHugeKDF(t *testing.T) {
	ct := encrypt(t, []byte("x"), "pw")
	forge := func(id, a, b, c byte) []byte {
		f := bytes.Clone(ct)
		f[8], f[9], f[10], f[11] = id, a, b, c
		binary.BigEndian.PutUint32(f[headerSize-4:headerSize], crc32.ChecksumIEEE(f[:headerSize-4]))
		return f
	}
	for name, f := range map[string][]byte{
		"scrypt N=2^22 r=32 (16 GiB)":  forge(kdfScrypt, 22, 32, 1),
		"scrypt p=16":                  forge(kdfScrypt, 14, 8, 16),
		"scrypt N=2^18 r=16 (512 MiB)": forge(kdfScrypt, 18, 16, 1),
		"argon2id 1 GiB":               forge(kdfArgon2id, 20, 1, 1),
		"argon2id t=200":               forge(kdfArgon2id, 16, 200, 1),
		"argon2id p=255":               forge(kdfArgon2id, 16, 3, 255),
		"unknown KDF":                  forge(9, 16, 3, 4),
	} {
		start := time.Now()
		_, err := decrypt(f, "pw")
		if !errors.Is(err, ErrCorrupted) || !strings.Contains(err.Error(), "range") && !strings.Contains(err.Error(), "unknown") {
			t.Fatalf("%s: %v", name, err)
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("%s: took %v", name, time.Since(start))
		}
	}
}

// The caps, exactly at their edges.
func TestKDFParameterEdges(t *testing.T) {
	for _, c := range []struct {
		k  kdf
		ok bool
	}{
		{kdf{kdfScrypt, 10, 8, 1}, true}, {kdf{kdfScrypt, 9, 8, 1}, false},
		{kdf{kdfScrypt, 20, 1, 1}, true}, {kdf{kdfScrypt, 21, 1, 1}, false},
		{kdf{kdfScrypt, 14, 1, 1}, true}, {kdf{kdfScrypt, 14, 0, 1}, false},
		{kdf{kdfScrypt, 11, 32, 1}, true}, {kdf{kdfScrypt, 11, 33, 1}, false},
		{kdf{kdfScrypt, 14, 8, 4}, true}, {kdf{kdfScrypt, 14, 8, 5}, false}, {kdf{kdfScrypt, 14, 8, 0}, false},
		{kdf{kdfScrypt, 18, 8, 1}, true}, {kdf{kdfScrypt, 18, 9, 1}, false}, // 256 MiB, then more
		{kdf{kdfArgon2id, 10, 1, 1}, true}, {kdf{kdfArgon2id, 9, 1, 1}, false},
		{kdf{kdfArgon2id, 18, 1, 1}, true}, {kdf{kdfArgon2id, 19, 1, 1}, false}, // 256 MiB, then 512
		{kdf{kdfArgon2id, 16, 10, 1}, true}, {kdf{kdfArgon2id, 16, 11, 1}, false}, {kdf{kdfArgon2id, 16, 0, 1}, false},
		{kdf{kdfArgon2id, 16, 3, 16}, true}, {kdf{kdfArgon2id, 16, 3, 17}, false}, {kdf{kdfArgon2id, 16, 3, 0}, false},
		{kdf{0, 16, 3, 4}, false}, {kdf{3, 16, 3, 4}, false},
	} {
		if err := c.k.check(); (err == nil) != c.ok {
			t.Errorf("%s (id %d): check() = %v, want ok=%v", c.k, c.k.id, err, c.ok)
		}
	}
}

// Backups written in format version 1 (before stream ids) still decrypt:
// the files in testdata were written by the version 1 code.
func TestVersion1BackupsStillDecrypt(t *testing.T) {
	for name, lines := range map[string]int{"v1-argon2id.enc": 7500, "v1-scrypt.enc": 100} {
		t.Run(name, func(t *testing.T) {
			ct, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			if ct[7] != 1 {
				t.Fatalf("fixture is version %d", ct[7])
			}
			want := bytes.Repeat([]byte("BackupKit v1 fixture line: the quick brown fox jumps over the lazy dog.\n"), lines)
			got, err := decrypt(ct, "v1 fixture password")
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("decrypted %d bytes (want %d): %v", len(got), len(want), err)
			}
			if _, err := decrypt(ct, "wrong"); !errors.Is(err, ErrWrongPassword) {
				t.Fatalf("wrong password: %v", err)
			}
			bad := bytes.Clone(ct)
			bad[20] ^= 1 // the salt
			if _, err := decrypt(bad, "v1 fixture password"); !errors.Is(err, ErrCorrupted) {
				t.Fatalf("damaged header: %v", err)
			}
			bad = bytes.Clone(ct)
			bad[len(bad)-20] ^= 1
			if _, err := decrypt(bad, "v1 fixture password"); !errors.Is(err, ErrCorrupted) {
				t.Fatalf("damaged chunk: %v", err)
			}
		})
	}
}

// Streams of one password key have keys of their own: same salt,
// different stream ids, and a chunk or header of one never authenticates
// in another.
func TestStreamsHaveKeysOfTheirOwn(t *testing.T) {
	s, err := newSealer("pw", cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	plain := bytes.Repeat([]byte("same plaintext "), 2*chunkSize/15)
	seal := func() []byte {
		var buf bytes.Buffer
		e, err := s.Encrypter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		e.Write(plain)
		e.Close()
		return buf.Bytes()
	}
	a, b := seal(), seal()
	if a[7] != encVersion || !bytes.Equal(a[12:28], b[12:28]) || bytes.Equal(a[32:48], b[32:48]) {
		t.Fatalf("headers: version %d, salts equal %v, stream ids equal %v", a[7], bytes.Equal(a[12:28], b[12:28]), bytes.Equal(a[32:48], b[32:48]))
	}
	if bytes.Equal(a[headerSize:headerSize+64], b[headerSize:headerSize+64]) {
		t.Fatal("two streams of the same plaintext encrypt to the same bytes: one key for both")
	}
	for _, ct := range [][]byte{a, b} {
		if got, err := decrypt(ct, "pw"); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("round trip: %v", err)
		}
	}
	one := chunkSize + tagSize
	mixed := append(bytes.Clone(a[:headerSize+one]), b[headerSize+one:]...)
	if _, err := decrypt(mixed, "pw"); !errors.Is(err, ErrCorrupted) {
		t.Fatalf("stream a's first chunk with stream b's last: %v", err)
	}
	swapped := append(bytes.Clone(b[:headerSize]), a[headerSize:]...)
	if _, err := decrypt(swapped, "pw"); !errors.Is(err, ErrCorrupted) {
		t.Fatalf("stream b's header on stream a's chunks: %v", err)
	}
}

// The KDF runs once per password and salt in a process, and never two at
// once.
func TestKDFRunsOncePerPasswordOneAtATime(t *testing.T) {
	runs := KDFRuns
	k := kdf{kdfArgon2id, 14, 1, 1}          // 16 MiB: long enough for derivations to overlap if they could
	run := fmt.Sprint(time.Now().UnixNano()) // passwords no earlier run of this test derived
	before := runs()
	var streams [][]byte
	for range 3 {
		var buf bytes.Buffer
		e, err := newEncrypter(&buf, "once"+run, k)
		if err != nil {
			t.Fatal(err)
		}
		e.Write([]byte("hello"))
		e.Close()
		streams = append(streams, buf.Bytes())
	}
	for _, ct := range streams {
		if got, err := decrypt(ct, "once"+run); err != nil || string(got) != "hello" {
			t.Fatalf("round trip: %q %v", got, err)
		}
	}
	if n := runs() - before; n != 1 {
		t.Fatalf("three streams written and read with one password: %d KDF runs, want 1", n)
	}
	if _, err := decrypt(streams[0], "not once"); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password after the key was cached: %v", err)
	}

	before = runs()
	kdfsMaxInFlight.Store(0)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := newSealer(fmt.Sprintf("password %d %s", i, run), k); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n, most := runs()-before, kdfsMaxInFlight.Load(); n != 6 || most != 1 {
		t.Fatalf("six passwords at once: %d KDF runs (want 6), at most %d at once (want 1)", n, most)
	}
}

// TestEncrypterAfterClose: once the last chunk is sealed, a Write or a
// second Close fails and adds nothing, so no bytes can follow the
// stream's end, where a reader would refuse them as trailing data.
func TestEncrypterAfterClose(t *testing.T) {
	var buf bytes.Buffer
	e, err := newEncrypter(&buf, "pw", cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Write([]byte("rows")); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	sealed := bytes.Clone(buf.Bytes())
	if n, err := e.Write([]byte("more")); err == nil || n != 0 {
		t.Errorf("write after close: %d bytes, %v", n, err)
	}
	if err := e.Close(); err == nil {
		t.Error("a second close succeeded")
	}
	if !bytes.Equal(buf.Bytes(), sealed) {
		t.Fatalf("%d bytes written after close", buf.Len()-len(sealed))
	}
	if got, err := decrypt(buf.Bytes(), "pw"); err != nil || string(got) != "rows" {
		t.Fatalf("decrypt: %q, %v", got, err)
	}
}

// TestKeyCacheBounded: derived keys are kept for reuse, up to
// maxCachedKeys of them (which one makes room is left to chance), the
// newest never evicted by its own insert.
func TestKeyCacheBounded(t *testing.T) {
	salt := func(i int) []byte {
		s := make([]byte, 16)
		binary.BigEndian.PutUint64(s, uint64(i)+1<<40)
		return s
	}
	cached := func() int {
		passwordKeys.Lock()
		defer passwordKeys.Unlock()
		return len(passwordKeys.byID)
	}
	for i := range maxCachedKeys + 16 {
		if _, err := passwordKey("cache-pw", salt(i), cheapKDF); err != nil {
			t.Fatal(err)
		}
		if n := cached(); n > maxCachedKeys {
			t.Fatalf("%d keys cached, want at most %d", n, maxCachedKeys)
		}
	}
	if n := cached(); n != maxCachedKeys {
		t.Fatalf("%d keys cached after %d derivations, want %d", n, maxCachedKeys+16, maxCachedKeys)
	}
	before := KDFRuns()
	if _, err := passwordKey("cache-pw", salt(maxCachedKeys+15), cheapKDF); err != nil {
		t.Fatal(err)
	}
	if n := KDFRuns() - before; n != 0 {
		t.Fatalf("the newest key derived again: %d KDF runs", n)
	}
}
