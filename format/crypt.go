package format

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/scrypt"
)

// Encryption stream format (version 2, what new backups use), all
// integers big-endian:
//
//	offset size field
//	0      7    magic "BKITENC"
//	7      1    format version (2)
//	8      1    KDF id (1 = scrypt, 2 = Argon2id)
//	9      3    KDF parameters: scrypt log2(N), r, p;
//	            Argon2id log2(memory in KiB), time (passes), threads
//	12     16   salt of the password's key
//	28     4    plaintext chunk size
//	32     16   stream id, random for every stream
//	48     32   key check: HMAC-SHA256(check key, bytes 0..47)
//	80     4    CRC-32 (IEEE) of bytes 0..79
//	84          chunks
//
// The KDF turns the password and salt into a 64-byte password key; the
// stream's AES-256 key and check key are HKDF-SHA256 of that key with the
// stream id as salt, so every stream has keys of its own while a process
// runs the KDF once per password (restic's master key, the same idea).
// New backups use Argon2id with 64 MiB, 3 passes, 4 threads (above
// OWASP's minimum); scrypt (id 1) is read for older backups. The
// parameters come from an unauthenticated header, so they are capped
// before any work: at most 256 MiB and bounded passes and threads. Each
// chunk is AES-256-GCM sealed, its plaintext exactly the chunk size except
// for the last, which holds 0..chunk size bytes. The 12-byte nonce is
// [last flag (1 byte), 0, 0, 0, chunk index (8 bytes)] and the header is
// the additional data of every chunk. A wrong password fails the key
// check; a damaged header fails the CRC; a changed, moved or missing chunk
// fails authentication; a stream that stops before a chunk sealed as last
// is truncated.
//
// Version 1 (read, no longer written) has no stream id: its 68-byte
// header holds the key check at 32 and the CRC at 64, and the KDF's 64
// bytes are the AES key and the check key themselves.
const (
	encMagic     = "BKITENC"
	encVersion   = 2
	headerSize   = 84
	headerSizeV1 = 68
	kdfScrypt    = 1
	kdfArgon2id  = 2
	tagSize      = 16
	chunkSize    = 512 << 10
	maxChunkSize = 16 << 20
	maxKDFMemory = 256 << 20
	streamInfo   = "BackupKit encryption v2 stream keys"
)

// kdf is a key derivation and its three parameter bytes.
type kdf struct {
	id      byte
	a, b, c byte // scrypt: log2(N), r, p; Argon2id: log2(KiB), time, threads
}

// defaultKDF is what new backups use: Argon2id, m = 64 MiB, t = 3, p = 4.
var defaultKDF = kdf{kdfArgon2id, 16, 3, 4}

// check refuses parameters outside what BackupKit writes or ever wrote,
// before any memory or time is spent on them.
func (k kdf) check() error {
	switch k.id {
	case kdfScrypt:
		logN, r, p := int(k.a), int(k.b), int(k.c)
		if logN < 10 || logN > 20 || r < 1 || r > 32 || p < 1 || p > 4 || int64(128*r)<<logN > maxKDFMemory {
			return fmt.Errorf("%w: scrypt parameters N=2^%d r=%d p=%d are out of range", ErrCorrupted, logN, r, p)
		}
	case kdfArgon2id:
		logKiB, t, p := int(k.a), int(k.b), int(k.c)
		if logKiB < 10 || int64(1)<<(logKiB+10) > maxKDFMemory || t < 1 || t > 10 || p < 1 || p > 16 {
			return fmt.Errorf("%w: Argon2id parameters m=2^%d KiB t=%d p=%d are out of range", ErrCorrupted, logKiB, t, p)
		}
	default:
		return fmt.Errorf("%w: unknown key derivation id %d", ErrCorrupted, k.id)
	}
	return nil
}

func (k kdf) String() string {
	if k.id == kdfScrypt {
		return fmt.Sprintf("scrypt(N=2^%d,r=%d,p=%d)", k.a, k.b, k.c)
	}
	return fmt.Sprintf("argon2id(m=%dMiB,t=%d,p=%d)", 1<<k.a>>10, k.b, k.c)
}

// Errors of the decryptor; callers branch on them with errors.Is.
var (
	ErrWrongPassword = errors.New("wrong encryption password")
	ErrTruncated     = errors.New("backup is truncated")
	ErrCorrupted     = errors.New("backup is corrupted")
	ErrNeedPassword  = errors.New("backup is encrypted but no encryption password is configured")
)

// passwordKeys holds the password keys this process has derived, so a
// daemon runs the KDF once per password and salt, not once per backup or
// restore. Derivations run one at a time: two KDFs at once would hold
// their memory at once.
var passwordKeys = struct {
	sync.Mutex
	byID  map[keyID][]byte
	salts map[saltID][]byte // the salt new streams use, per password and KDF
	runs  int               // KDF runs, for tests
}{byID: map[keyID][]byte{}, salts: map[saltID][]byte{}}

// kdfsInFlight counts derivations running now and kdfsMaxInFlight the
// most ever at once: the lock above keeps it 1, and tests check that.
var kdfsInFlight, kdfsMaxInFlight atomic.Int32

// maxCachedKeys bounds the cache: restores of version 1 backups, each
// with a salt of its own, add one key each.
const maxCachedKeys = 64

type keyID struct {
	password [32]byte // SHA-256 of the password
	kdf      kdf
	salt     [16]byte
}

type saltID struct {
	password [32]byte
	kdf      kdf
}

// passwordKey returns the 64-byte key the KDF derives from password and
// salt, deriving it unless this process already has.
func passwordKey(password string, salt []byte, k kdf) ([]byte, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	id := keyID{password: sha256.Sum256([]byte(password)), kdf: k}
	copy(id.salt[:], salt)
	passwordKeys.Lock()
	defer passwordKeys.Unlock()
	if key, ok := passwordKeys.byID[id]; ok {
		return key, nil
	}
	// What came before (the config, storage clients) is garbage by now:
	// return it first, so the KDF's memory adds to as little as possible.
	debug.FreeOSMemory()
	if n := kdfsInFlight.Add(1); n > kdfsMaxInFlight.Load() {
		kdfsMaxInFlight.Store(n)
	}
	defer kdfsInFlight.Add(-1)
	var key []byte
	var err error
	switch k.id {
	case kdfScrypt:
		key, err = scrypt.Key([]byte(password), salt, 1<<k.a, int(k.b), int(k.c), 64)
	case kdfArgon2id:
		done := prefault(1 << (k.a + 10))
		key = argon2.IDKey([]byte(password), salt, uint32(k.b), uint32(1)<<k.a, k.c, 64)
		done()
	}
	if err != nil {
		return nil, err
	}
	passwordKeys.runs++
	// The KDF's working memory is garbage now: return it to the OS before
	// the pipeline allocates its buffers, so peak memory is one or the
	// other, never both.
	debug.FreeOSMemory()
	if len(passwordKeys.byID) >= maxCachedKeys {
		for old := range passwordKeys.byID {
			delete(passwordKeys.byID, old)
			break
		}
	}
	passwordKeys.byID[id] = key
	return key, nil
}

// KDFRuns is how many times this process has run the KDF (each run
// derives one password key; later streams and restores reuse it).
func KDFRuns() int {
	passwordKeys.Lock()
	defer passwordKeys.Unlock()
	return passwordKeys.runs
}

// encryptionSalt returns the salt this process encrypts new streams with
// for password and k, chosen at random the first time.
func encryptionSalt(password string, k kdf) ([]byte, error) {
	id := saltID{password: sha256.Sum256([]byte(password)), kdf: k}
	passwordKeys.Lock()
	defer passwordKeys.Unlock()
	if s, ok := passwordKeys.salts[id]; ok {
		return s, nil
	}
	s := make([]byte, 16)
	if _, err := rand.Read(s); err != nil {
		return nil, err
	}
	passwordKeys.salts[id] = s
	return s, nil
}

// streamKeys returns the AES key and the check key of a stream: for
// version 2 derived from the password key and the stream id, for version
// 1 the password key itself.
func streamKeys(pwKey, streamID []byte) (aesKey, checkKey []byte, err error) {
	if streamID == nil {
		return pwKey[:32], pwKey[32:], nil
	}
	k, err := hkdf.Key(sha256.New, pwKey, streamID, streamInfo, 64)
	if err != nil {
		return nil, nil, err
	}
	return k[:32], k[32:], nil
}

func nonce(index uint64, last bool) []byte {
	n := make([]byte, 12)
	if last {
		n[0] = 1
	}
	binary.BigEndian.PutUint64(n[4:], index)
	return n
}

// encrypter seals its input into the chunked stream format.
type encrypter struct {
	w      io.Writer
	aead   cipher.AEAD
	header []byte
	buf    []byte // plaintext of the pending chunk, cap chunkSize+tagSize
	index  uint64
	err    error
}

// NewEncrypter returns a WriteCloser that encrypts into w. Close seals
// the final chunk; it does not close w.
func NewEncrypter(w io.Writer, password string) (io.WriteCloser, error) {
	s, err := NewSealer(password)
	if err != nil {
		return nil, err
	}
	return s.Encrypter(w)
}

// Sealer is a password's key, derived ahead of the streams it encrypts
// (the KDF run and its memory returned). Every stream it starts gets a
// random stream id and keys of its own.
type Sealer struct {
	kdf   kdf
	salt  []byte
	pwKey []byte
}

// NewSealer returns the key of password with the default KDF, deriving
// it unless this process already has, so a pipeline can run the KDF
// before its buffers exist.
func NewSealer(password string) (*Sealer, error) {
	return newSealer(password, defaultKDF)
}

func newSealer(password string, k kdf) (*Sealer, error) {
	if password == "" {
		return nil, ErrNeedPassword
	}
	salt, err := encryptionSalt(password, k)
	if err != nil {
		return nil, err
	}
	key, err := passwordKey(password, salt, k)
	if err != nil {
		return nil, err
	}
	return &Sealer{kdf: k, salt: salt, pwKey: key}, nil
}

// Encrypter writes a new stream's header to w and returns a WriteCloser
// that encrypts into w, as NewEncrypter does.
func (s *Sealer) Encrypter(w io.Writer) (io.WriteCloser, error) {
	h := make([]byte, headerSize)
	copy(h, encMagic)
	h[7] = encVersion
	h[8], h[9], h[10], h[11] = s.kdf.id, s.kdf.a, s.kdf.b, s.kdf.c
	copy(h[12:28], s.salt)
	binary.BigEndian.PutUint32(h[28:32], chunkSize)
	if _, err := rand.Read(h[32:48]); err != nil {
		return nil, err
	}
	aesKey, checkKey, err := streamKeys(s.pwKey, h[32:48])
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, checkKey)
	mac.Write(h[:48])
	copy(h[48:80], mac.Sum(nil))
	binary.BigEndian.PutUint32(h[80:84], crc32.ChecksumIEEE(h[:80]))
	aead, err := newGCM(aesKey)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(h); err != nil {
		return nil, err
	}
	return &encrypter{w: w, aead: aead, header: h, buf: make([]byte, 0, chunkSize+tagSize)}, nil
}

func newEncrypter(w io.Writer, password string, k kdf) (*encrypter, error) {
	s, err := newSealer(password, k)
	if err != nil {
		return nil, err
	}
	e, err := s.Encrypter(w)
	if err != nil {
		return nil, err
	}
	return e.(*encrypter), nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func (e *encrypter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n := 0
	for len(p) > 0 {
		// A full pending chunk is sealed only once more data arrives, so
		// the last chunk is never empty unless the whole stream is.
		if len(e.buf) == chunkSize {
			if e.err = e.seal(false); e.err != nil {
				return n, e.err
			}
		}
		k := copy(e.buf[len(e.buf):chunkSize], p)
		e.buf = e.buf[:len(e.buf)+k]
		p = p[k:]
		n += k
	}
	return n, nil
}

func (e *encrypter) seal(last bool) error {
	out := e.aead.Seal(e.buf[:0], nonce(e.index, last), e.buf, e.header)
	e.index++
	_, err := e.w.Write(out)
	e.buf = e.buf[:0]
	return err
}

func (e *encrypter) Close() error {
	if e.err != nil {
		return e.err
	}
	e.err = e.seal(true)
	if e.err == nil {
		e.err = errors.New("encrypter: write after close")
		return nil
	}
	return e.err
}

// decrypter opens the chunked stream format.
type decrypter struct {
	r      *bufio.Reader
	aead   cipher.AEAD
	header []byte
	size   int
	index  uint64
	buf    []byte // ciphertext buffer
	out    []byte // plaintext buffer
	plain  []byte // decrypted, not yet read
	done   bool
	err    error
}

// NewDecrypter reads the header from r and returns a reader of the
// plaintext. It reports ErrWrongPassword, ErrCorrupted or ErrTruncated
// (wrapped, with details) as soon as they are detected; no plaintext of a
// chunk is returned before that chunk is authenticated.
func NewDecrypter(r io.Reader, password string) (io.Reader, error) {
	h := make([]byte, headerSize)
	if _, err := io.ReadFull(r, h[:headerSizeV1]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: encryption header is incomplete", ErrTruncated)
		}
		return nil, err
	}
	if string(h[:7]) != encMagic {
		return nil, fmt.Errorf("%w: not an encrypted BackupKit stream", ErrCorrupted)
	}
	var streamID, check []byte
	switch h[7] {
	case 1:
		h = h[:headerSizeV1]
		check = h[32:64]
	case encVersion:
		if _, err := io.ReadFull(r, h[headerSizeV1:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("%w: encryption header is incomplete", ErrTruncated)
			}
			return nil, err
		}
		streamID, check = h[32:48], h[48:80]
	default:
		// A later version, or a damaged byte: the header's checksum, where
		// either known layout keeps it, tells which.
		io.ReadFull(r, h[headerSizeV1:])
		if crc32.ChecksumIEEE(h[:64]) != binary.BigEndian.Uint32(h[64:68]) && crc32.ChecksumIEEE(h[:80]) != binary.BigEndian.Uint32(h[80:84]) {
			return nil, fmt.Errorf("%w: encryption header is damaged (checksum mismatch)", ErrCorrupted)
		}
		return nil, fmt.Errorf("unsupported encryption format version %d (this build reads 1 and %d)", h[7], encVersion)
	}
	n := len(h)
	if crc32.ChecksumIEEE(h[:n-4]) != binary.BigEndian.Uint32(h[n-4:]) {
		return nil, fmt.Errorf("%w: encryption header is damaged (checksum mismatch)", ErrCorrupted)
	}
	k := kdf{h[8], h[9], h[10], h[11]}
	if err := k.check(); err != nil {
		return nil, err
	}
	if password == "" {
		return nil, ErrNeedPassword
	}
	size := int(binary.BigEndian.Uint32(h[28:32]))
	if size < 1 || size > maxChunkSize {
		return nil, fmt.Errorf("%w: encryption chunk size %d out of range", ErrCorrupted, size)
	}
	pwKey, err := passwordKey(password, h[12:28], k)
	if err != nil {
		return nil, err
	}
	aesKey, checkKey, err := streamKeys(pwKey, streamID)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, checkKey)
	mac.Write(h[:len(h)-4-32])
	if !hmac.Equal(mac.Sum(nil), check) {
		return nil, ErrWrongPassword
	}
	aead, err := newGCM(aesKey)
	if err != nil {
		return nil, err
	}
	return &decrypter{r: bufio.NewReaderSize(r, 64<<10), aead: aead, header: h, size: size, buf: make([]byte, size+tagSize), out: make([]byte, 0, size)}, nil
}

func (d *decrypter) Read(p []byte) (int, error) {
	for len(d.plain) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		if d.done {
			return 0, io.EOF
		}
		d.err = d.next()
	}
	n := copy(p, d.plain)
	d.plain = d.plain[n:]
	return n, nil
}

func (d *decrypter) next() error {
	n, err := io.ReadFull(d.r, d.buf)
	last := false
	switch {
	case err == io.EOF:
		return fmt.Errorf("%w: stream ends after chunk %d without its final chunk", ErrTruncated, d.index)
	case err == io.ErrUnexpectedEOF:
		last = true
	case err != nil:
		return err
	default:
		if _, perr := d.r.Peek(1); perr == io.EOF {
			last = true
		} else if perr != nil {
			return perr
		}
	}
	ct := d.buf[:n]
	if n < tagSize {
		return fmt.Errorf("%w: chunk %d is cut short", ErrTruncated, d.index)
	}
	plain, oerr := d.aead.Open(d.out[:0], nonce(d.index, last), ct, d.header)
	if oerr != nil {
		// Tell truncation (a chunk sealed as "more follows" at the end)
		// from changed or reordered bytes.
		if _, alt := d.aead.Open(d.out[:0], nonce(d.index, !last), ct, d.header); alt == nil {
			if last {
				return fmt.Errorf("%w: stream ends after chunk %d, which was not the final chunk", ErrTruncated, d.index)
			}
			return fmt.Errorf("%w: unexpected data after the final chunk %d", ErrCorrupted, d.index)
		}
		if last && n < len(d.buf) {
			return fmt.Errorf("%w: chunk %d failed authentication (cut short, or bytes changed)", ErrCorrupted, d.index)
		}
		return fmt.Errorf("%w: chunk %d failed authentication (bytes changed or chunks reordered)", ErrCorrupted, d.index)
	}
	d.index++
	d.plain = plain
	d.done = last
	return nil
}

// DefaultKDF names the key derivation new backups use.
func DefaultKDF() string { return defaultKDF.String() }
