package format

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// timeLayout is the v0 timestamp of a backup name (UTC, nanoseconds).
const timeLayout = "20060102_150405.000000000Z"

// Encryption names how a backup is encrypted ("" = not encrypted).
type Encryption string

// Encryption kinds, with their key suffixes.
const (
	Unencrypted Encryption = ""
	Enc         Encryption = "enc" // the chunked AES-256-GCM stream (crypt.go)
)

// Ext says how a backup is wrapped, as its key's suffix tells:
// ".dump" + the codec's extension + the encryption's.
type Ext struct {
	Compression Compression
	Encryption  Encryption
	// SQL marks SQL text (".sql": a server's globals from pg_dumpall)
	// rather than a pg_dump archive (".dump").
	SQL bool
}

// String is the key suffix: ".dump[.gz|.zst][.enc|.age]" (".sql…" for
// SQL text).
func (e Ext) String() string {
	s := ".dump"
	if e.SQL {
		s = ".sql"
	}
	s += e.Compression.ext()
	if e.Encryption != Unencrypted {
		s += "." + string(e.Encryption)
	}
	return s
}

// Key returns the storage key of a backup of db taken at t.
func Key(db string, t time.Time, e Ext) string {
	return db + "/" + t.UTC().Format(timeLayout) + e.String()
}

// Name is what a backup key says about the backup.
type Name struct {
	Database string
	Time     time.Time
	Ext      Ext
}

// ParseKey reports whether key names a backup, and which. Anything that
// does not parse is foreign: never listed as a backup, never deleted. It
// is hand-written because plans parse every key of a storage.
func ParseKey(key string) (Name, bool) {
	i := strings.IndexByte(key, '/')
	if i <= 0 || strings.IndexByte(key[i+1:], '/') >= 0 {
		return Name{}, false
	}
	db, base := key[:i], key[i+1:]
	if db == "." || db == ".." {
		return Name{}, false
	}
	// YYYYMMDD_HHMMSS.NNNNNNNNNZ = 26 bytes, then ".dump" or ".sql".
	if len(base) < 30 || base[8] != '_' || base[15] != '.' || base[25] != 'Z' {
		return Name{}, false
	}
	var ext Ext
	var ok bool
	switch {
	case len(base) >= 31 && base[26:31] == ".dump":
		ext, ok = parseExt(base[31:])
	case base[26:30] == ".sql":
		ext, ok = parseExt(base[30:])
		ext.SQL = true
	}
	if !ok {
		return Name{}, false
	}
	var v [7]int
	for k, r := range [7][2]int{{0, 4}, {4, 6}, {6, 8}, {9, 11}, {11, 13}, {13, 15}, {16, 25}} {
		n := 0
		for _, c := range []byte(base[r[0]:r[1]]) {
			if c < '0' || c > '9' {
				return Name{}, false
			}
			n = n*10 + int(c-'0')
		}
		v[k] = n
	}
	if v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60 {
		return Name{}, false
	}
	t := time.Date(v[0], time.Month(v[1]), v[2], v[3], v[4], v[5], v[6], time.UTC)
	if t.Day() != v[2] {
		return Name{}, false // 20260231
	}
	return Name{Database: db, Time: t, Ext: ext}, true
}

// parseExt reads what follows ".dump": a codec extension, then an
// encryption suffix, each optional.
func parseExt(s string) (Ext, bool) {
	var e Ext
	e.Compression = None
	for _, c := range codecs {
		if c.ext != "" && strings.HasPrefix(s, c.ext) {
			e.Compression = c.name
			s = s[len(c.ext):]
			break
		}
	}
	switch s {
	case "":
	case "." + string(Enc):
		e.Encryption = Enc
	case "." + string(Age):
		e.Encryption = Age
	default:
		return Ext{}, false
	}
	return e, true
}

// ID is a backup's short, stable identifier: the first 8 hex digits of
// the SHA-256 of its key. Copies of one backup in several storages share
// it; `restore --from` accepts it or any unique prefix of 4 or more.
func ID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}
