package format

import (
	"fmt"
	"strings"
)

// GlobalsName is the folder suffix of a server's globals (roles,
// memberships, tablespaces) next to its discovered databases:
// "<entry>._globals". No encoded database name can be "_globals": a
// leading underscore is always encoded.
const GlobalsName = "_globals"

// EncodeDBName turns a PostgreSQL database name into a folder name of the
// key alphabet: letters, digits, '_' and '-' stay (a leading '_' does
// not); every other byte, '.' and '%' included, becomes %XX. It is
// reversible (DecodeDBName), so a discovered database "sales.eu" is the
// folder "prod.sales%2Eeu" and shows as "prod.sales.eu".
func EncodeDBName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' && i > 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// DecodeDBName reverses EncodeDBName. ok is false for anything
// EncodeDBName does not write (so a foreign folder is never taken for a
// database).
func DecodeDBName(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		var v byte
		for _, h := range []byte(s[i+1 : i+3]) {
			switch {
			case h >= '0' && h <= '9':
				v = v<<4 | (h - '0')
			case h >= 'A' && h <= 'F':
				v = v<<4 | (h - 'A' + 10)
			default:
				return "", false
			}
		}
		b.WriteByte(v)
		i += 2
	}
	out := b.String()
	if EncodeDBName(out) != s {
		return "", false // not canonical: two folders must never mean one database
	}
	return out, true
}

// DiscoveredName is the name of database datname discovered by entry:
// "<entry>.<encoded datname>", the folder of its backups.
func DiscoveredName(entry, datname string) string {
	return entry + "." + EncodeDBName(datname)
}

// ShowName is a database name as people read it: the encoded part of a
// discovered name decoded ("prod.sales%2Eeu" → "prod.sales.eu"). entry is
// the configured entry the name belongs to.
func ShowName(entry, name string) string {
	rest, ok := strings.CutPrefix(name, entry+".")
	if !ok || rest == GlobalsName {
		return name
	}
	if d, ok := DecodeDBName(rest); ok {
		return entry + "." + d
	}
	return name
}
