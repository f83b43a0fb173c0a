package format

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
)

// encrypt uses a cheap KDF setting so tests stay fast.
func encrypt(t testing.TB, plain []byte, password string) []byte {
	t.Helper()
	var buf bytes.Buffer
	e, err := newEncrypter(&buf, password, 10)
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
	reorder := bytes.Clone(ct)
	copy(reorder[headerSize:], ct[headerSize+one:headerSize+2*one])
	copy(reorder[headerSize+one:], ct[headerSize:headerSize+one])
	cases := []struct {
		name string
		data []byte
		pw   string
		want error
	}{
		{"wrong password", ct, "wrong", ErrWrongPassword},
		{"no password", ct, "", ErrNeedPassword},
		{"truncated in header", ct[:30], "correct horse", ErrTruncated},
		{"truncated at chunk boundary", ct[:headerSize+2*one], "correct horse", ErrTruncated},
		{"truncated after header", ct[:headerSize], "correct horse", ErrTruncated},
		{"truncated mid chunk", ct[:headerSize+one+100], "correct horse", ErrCorrupted},
		{"truncated in last chunk", ct[:len(ct)-5], "correct horse", ErrCorrupted},
		{"flipped header byte", flip(14), "correct horse", ErrCorrupted},
		{"flipped body byte", flip(headerSize + one + 5), "correct horse", ErrCorrupted},
		{"flipped tail byte", flip(len(ct) - 1), "correct horse", ErrCorrupted},
		{"reordered chunks", reorder, "correct horse", ErrCorrupted},
		{"appended data", append(bytes.Clone(ct), ct[headerSize:headerSize+one]...), "correct horse", ErrCorrupted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decrypt(c.data, c.pw)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
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
		if len(data) > 9 && data[9] > 12 {
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
		d, err := Decode(bytes.NewReader(data), "pw")
		if err != nil {
			return
		}
		io.Copy(io.Discard, d)
		d.Close()
	})
}
