package format

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Compression names a codec ("none", "gzip", "zstd").
type Compression string

// The codecs. Adding one means a row in the codecs table below and the
// name in the CUE schema; nothing else.
const (
	None Compression = "none"
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
)

// gzip streams written before members carried their lengths (one
// member, blocks compressed in parallel by pgzip) are read with pgzip:
// block size × blocks bounds its memory.
const (
	gzipBlock  = 512 << 10
	gzipBlocks = 3
)

// codec is one compression algorithm: its key extension, the magic bytes
// that sniffing recognises, its level range and its streams.
type codec struct {
	name         Compression
	ext          string
	magic        []byte
	minLv, maxLv int
	writer       func(w io.Writer, level int) (io.WriteCloser, error) // level 0 = default
	// reader decodes r; authenticated: r's bytes were authenticated
	// (decrypted), so a C decoder may read them.
	reader func(r io.Reader, authenticated bool) (io.ReadCloser, error)
}

var codecs = []codec{
	{name: Gzip, ext: ".gz", magic: []byte{0x1f, 0x8b}, minLv: 1, maxLv: 9,
		writer: func(w io.Writer, level int) (io.WriteCloser, error) {
			if level == 0 {
				// zlib's 6: on the archive with its rows joined into 64
				// KiB chunks (exec.DumpOptions.Coalesce), in members of
				// 1 MiB, 2% larger than pg_dump's own zlib output here
				// (5: 3%, 4: 6%), at a third of level 7's time.
				level = 6
			}
			return newMemberWriter(w, level)
		},
		reader: func(r io.Reader, authenticated bool) (io.ReadCloser, error) {
			br, ok := r.(*bufio.Reader)
			if !ok {
				br = bufio.NewReader(r)
			}
			// RFC 1952: reserved flag bits must be zero.
			if h, _ := br.Peek(4); len(h) == 4 && h[3]&0xe0 != 0 {
				return nil, fmt.Errorf("%w: gzip header has reserved flags set", ErrCorrupted)
			}
			if h, _ := br.Peek(gzipMemberHeader); sizedMembers(h) {
				return newMemberReader(br, authenticated), nil
			}
			zr, err := pgzip.NewReaderN(br, gzipBlock, gzipBlocks)
			if err != nil {
				return nil, fmt.Errorf("%w: gzip header: %v", ErrCorrupted, err)
			}
			zr.Multistream(true)
			return zr, nil
		}},
	{name: Zstd, ext: ".zst", magic: []byte{0x28, 0xb5, 0x2f, 0xfd}, minLv: 1, maxLv: 4,
		writer: func(w io.Writer, level int) (io.WriteCloser, error) {
			lv := zstd.SpeedDefault
			if level != 0 {
				lv = zstd.EncoderLevel(level)
			}
			// Frames of 2 MiB, the window zstd -3 uses (the same ratio on
			// dumps as the default 8 MiB, faster, with less memory),
			// compressed two at a time.
			return newFrameWriter(w, lv)
		},
		reader: func(r io.Reader, _ bool) (io.ReadCloser, error) {
			zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(2), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
			if err != nil {
				return nil, err
			}
			return zr.IOReadCloser(), nil
		}},
	{name: None,
		writer: func(w io.Writer, _ int) (io.WriteCloser, error) { return nopWriteCloser{w}, nil },
		reader: func(r io.Reader, _ bool) (io.ReadCloser, error) { return io.NopCloser(r), nil }},
}

func lookup(c Compression) (codec, bool) {
	if c == "" {
		c = None
	}
	for _, k := range codecs {
		if k.name == c {
			return k, true
		}
	}
	return codec{}, false
}

func (c Compression) ext() string {
	k, _ := lookup(c)
	return k.ext
}

// Compressions lists every codec name.
func Compressions() []Compression {
	out := make([]Compression, len(codecs))
	for i, c := range codecs {
		out[i] = c.name
	}
	return out
}

// Levels returns the level range of a codec; ok is false for an unknown
// codec or one without levels ("none").
func Levels(c Compression) (lo, hi int, ok bool) {
	k, found := lookup(c)
	return k.minLv, k.maxLv, found && k.maxLv > 0
}

// NewCompressor wraps w; level 0 is the codec's default. Close flushes
// but does not close w.
func NewCompressor(w io.Writer, c Compression, level int) (io.WriteCloser, error) {
	k, ok := lookup(c)
	if !ok {
		return nil, fmt.Errorf("unknown compression %q", c)
	}
	return k.writer(w, level)
}

// sniffCodec returns the codec whose magic starts b.
func sniffCodec(b []byte) (codec, bool) {
	for _, k := range codecs {
		if len(k.magic) > 0 && bytes.HasPrefix(b, k.magic) {
			return k, true
		}
	}
	return codec{}, false
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
