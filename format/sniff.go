package format

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
	Encryption  Encryption
	Compression Compression
	Kind        Kind
}

// Encrypted reports whether the outermost layer is encryption.
func (l Layers) Encrypted() bool { return l.Encryption != Unencrypted }

func (l Layers) String() string {
	s := string(l.Kind)
	if l.Compression != None && l.Compression != "" {
		s = string(l.Compression) + " → " + s
	}
	switch l.Encryption {
	case Enc:
		s = "encrypted → " + s
	case Age:
		s = "age → " + s
	}
	return s
}

// ErrUnknownFormat is returned for bytes that are no backup BackupKit knows.
var ErrUnknownFormat = errors.New("not a backup: unrecognised bytes")

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
// encryption (the password format or age), then a codec, down to a
// pg_dump custom archive or SQL text. keys may be empty when the backup
// is not encrypted.
func Decode(r io.Reader, keys Keys) (*Decoded, error) {
	d := &Decoded{Layers: Layers{Compression: None}}
	br := bufio.NewReaderSize(r, 256<<10)
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
		k, isCodec := sniffCodec(peek)
		switch {
		case bytes.HasPrefix(peek, []byte(encMagic)) && !d.Layers.Encrypted() && d.Layers.Compression == None:
			dr, err := NewDecrypter(br, keys.Password)
			if err != nil {
				return nil, err
			}
			d.Layers.Encryption = Enc
			br = bufio.NewReaderSize(dr, 256<<10)
		case bytes.HasPrefix(peek, []byte(ageMagic)) && !d.Layers.Encrypted() && d.Layers.Compression == None:
			dr, err := newAgeDecrypter(br, keys.Identities)
			if err != nil {
				return nil, err
			}
			d.Layers.Encryption = Age
			br = bufio.NewReaderSize(dr, 256<<10)
		case isCodec && d.Layers.Compression == None:
			zr, err := k.reader(br, d.Layers.Encrypted())
			if err != nil {
				return nil, err
			}
			d.closers = append(d.closers, zr)
			d.Layers.Compression = k.name
			br = bufio.NewReaderSize(codecErrors{zr, k.name}, 256<<10)
		case bytes.HasPrefix(peek, []byte("PGDMP")):
			d.Layers.Kind = KindCustom
			d.Reader = br
			return d, nil
		case looksLikeSQL(peek):
			d.Layers.Kind = KindSQL
			d.Reader = br
			return d, nil
		default:
			d.Close()
			if d.Layers.Encrypted() || d.Layers.Compression != None {
				return nil, fmt.Errorf("%w: after %s the payload is neither a pg_dump archive nor SQL text", ErrCorrupted, d.Layers)
			}
			return nil, ErrUnknownFormat
		}
	}
}

// codecErrors names a decompressor's failures: a stream cut short is
// truncated, anything else in it is corrupted.
type codecErrors struct {
	r    io.Reader
	name Compression
}

func (c codecErrors) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	switch {
	case err == nil || err == io.EOF:
	case errors.Is(err, ErrTruncated) || errors.Is(err, ErrCorrupted) || errors.Is(err, ErrWrongPassword):
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%w: the %s stream stops early", ErrTruncated, c.name)
	default:
		err = fmt.Errorf("%w: the %s stream does not decode: %v", ErrCorrupted, c.name, err)
	}
	return n, err
}
