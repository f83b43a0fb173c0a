package exec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Kind is what a fully decoded backup stream holds.
type Kind string

// Kinds of payload.
const (
	KindCustom Kind = "pg_dump custom format" // PGDMP: pg_restore
	KindSQL    Kind = "SQL text"              // psql, only with --allow-sql-fallback
)

// Layers describes how a stored backup is wrapped, outermost first.
type Layers struct {
	Encrypted   bool
	Compression Compression
	Kind        Kind
}

func (l Layers) String() string {
	s := string(l.Kind)
	if l.Compression != None && l.Compression != "" {
		s = string(l.Compression) + " → " + s
	}
	if l.Encrypted {
		s = "encrypted → " + s
	}
	return s
}

// ErrUnknownFormat is returned for bytes that are no backup BackupKit knows.
var ErrUnknownFormat = errors.New("not a backup: unrecognised bytes")

type layer int

const (
	layerUnknown layer = iota
	layerEncrypted
	layerGzip
	layerZstd
	layerCustom
	layerSQL
)

func sniff(b []byte) layer {
	switch {
	case bytes.HasPrefix(b, []byte(encMagic)):
		return layerEncrypted
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return layerGzip
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return layerZstd
	case bytes.HasPrefix(b, []byte("PGDMP")):
		return layerCustom
	case looksLikeSQL(b):
		return layerSQL
	}
	return layerUnknown
}

func looksLikeSQL(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	// Trim a possibly cut rune at the end of the sample.
	for i := 0; i < 3 && len(b) > 0 && !utf8.Valid(b); i++ {
		b = b[:len(b)-1]
	}
	if !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c < 0x09 || (c > 0x0d && c < 0x20) || c == 0x7f {
			return false
		}
	}
	return true
}

// Decoded is an opened backup: read the payload, then Close.
type Decoded struct {
	io.Reader
	Layers  Layers
	closers []io.Closer
}

// Close releases decoder resources; it does not close the source.
func (d *Decoded) Close() error {
	var err error
	for i := len(d.closers) - 1; i >= 0; i-- {
		err = errors.Join(err, d.closers[i].Close())
	}
	return err
}

// Decode peels the layers of a stored backup by sniffing its bytes:
// encryption, then gzip or zstd, down to a pg_dump custom archive or SQL
// text. password may be empty when the backup is not encrypted.
func Decode(r io.Reader, password string) (*Decoded, error) {
	d := &Decoded{Layers: Layers{Compression: None}}
	br := bufio.NewReaderSize(r, 256<<10)
	var cur io.Reader = br
	for depth := 0; ; depth++ {
		peek, err := br.Peek(512)
		if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		if len(peek) == 0 {
			if depth == 0 {
				return nil, fmt.Errorf("%w: the file is empty", ErrTruncated)
			}
			return nil, fmt.Errorf("%w: the decoded stream is empty", ErrTruncated)
		}
		switch l := sniff(peek); {
		case l == layerEncrypted && !d.Layers.Encrypted && d.Layers.Compression == None:
			dr, err := NewDecrypter(cur, password)
			if err != nil {
				return nil, err
			}
			d.Layers.Encrypted = true
			br = bufio.NewReaderSize(dr, 256<<10)
			cur = br
		case (l == layerGzip || l == layerZstd) && d.Layers.Compression == None:
			if l == layerGzip && len(peek) > 3 && peek[3]&0xe0 != 0 {
				// RFC 1952: reserved flag bits must be zero.
				return nil, fmt.Errorf("%w: gzip header has reserved flags set", ErrCorrupted)
			}
			c := Gzip
			if l == layerZstd {
				c = Zstd
			}
			zr, err := newDecompressor(cur, c)
			if err != nil {
				return nil, err
			}
			d.closers = append(d.closers, zr)
			d.Layers.Compression = c
			br = bufio.NewReaderSize(zr, 256<<10)
			cur = br
		case l == layerCustom:
			d.Layers.Kind = KindCustom
			d.Reader = cur
			return d, nil
		case l == layerSQL:
			d.Layers.Kind = KindSQL
			d.Reader = cur
			return d, nil
		default:
			d.Close()
			if d.Layers.Encrypted || d.Layers.Compression != None {
				return nil, fmt.Errorf("%w: after %s the payload is neither a pg_dump archive nor SQL text", ErrCorrupted, d.Layers)
			}
			return nil, ErrUnknownFormat
		}
	}
}
