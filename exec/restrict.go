package exec

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"regexp"
)

func restrictKey() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// restrictLine is pg_dump's own \restrict / \unrestrict line (newer
// pg_dump versions write them around a plain-text dump).
var restrictLine = regexp.MustCompile(`^\\(un)?restrict [A-Za-z0-9]+\r?\n?$`)

// copyStart is the line pg_dump writes before COPY data.
var copyStart = regexp.MustCompile(`(?i)^COPY .* FROM stdin;\r?\n?$`)

// restrictFilter passes SQL text through, line by line, dropping the
// dump's own \restrict and \unrestrict lines outside COPY data (psql is
// already in a restricted mode we chose). COPY data passes untouched.
type restrictFilter struct {
	r      *bufio.Reader
	buf    []byte
	inCopy bool
	err    error
}

// NewRestrictFilter wraps SQL text for Psql.
func NewRestrictFilter(r io.Reader) io.Reader {
	return &restrictFilter{r: bufio.NewReaderSize(r, 64<<10)}
}

func (f *restrictFilter) Read(p []byte) (int, error) {
	for len(f.buf) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		line, err := f.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A long line (data or a long statement): pass it on.
			f.buf = append(f.buf[:0], line...)
			break
		}
		f.err = err
		switch {
		case f.inCopy:
			if bytes.Equal(bytes.TrimRight(line, "\r\n"), []byte(`\.`)) {
				f.inCopy = false
			}
		case copyStart.Match(line):
			f.inCopy = true
		case restrictLine.Match(line):
			continue
		}
		f.buf = append(f.buf[:0], line...)
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}
