package format

import (
	"fmt"
	"path"
	"strings"
)

// SumExt is the suffix of the checksum sidecar written after a backup's
// data: "<key>.sha256", in sha256sum's format.
const SumExt = ".sha256"

// SumKey is the key of key's checksum sidecar.
func SumKey(key string) string { return key + SumExt }

// IsSumKey reports whether key names a checksum sidecar, and of which key.
func IsSumKey(key string) (string, bool) { return strings.CutSuffix(key, SumExt) }

// SumLine is the sidecar's content for a backup: "<hex>  <base name>\n".
func SumLine(sha256hex, key string) string {
	return fmt.Sprintf("%s  %s\n", sha256hex, path.Base(key))
}

// ParseSum reads a sidecar's content and returns the lower-case hex
// SHA-256 it records.
func ParseSum(b []byte) (string, error) {
	f := strings.Fields(string(b))
	if len(f) == 0 || len(f[0]) != 64 {
		return "", fmt.Errorf("checksum sidecar is malformed")
	}
	for _, c := range strings.ToLower(f[0]) {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return "", fmt.Errorf("checksum sidecar is malformed")
		}
	}
	return strings.ToLower(f[0]), nil
}
