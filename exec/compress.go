package exec

import (
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Compression names the algorithm of a backup ("none", "gzip", "zstd").
type Compression string

// Algorithms.
const (
	None Compression = "none"
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
)

// Ext is the file name extension that marks the algorithm.
func (c Compression) Ext() string {
	switch c {
	case Gzip:
		return ".gz"
	case Zstd:
		return ".zst"
	}
	return ""
}

// gzip blocks are compressed in parallel: block size × blocks bounds
// the memory (about 2 × 512 KiB × 3); three keep two cores busy.
const (
	gzipBlock  = 512 << 10
	gzipBlocks = 3
)

// newCompressor wraps w. Level 0 picks the default (gzip 6, zstd 2 =
// "default", like zstd -3). Close flushes but does not close w.
func newCompressor(w io.Writer, c Compression, level int) (io.WriteCloser, error) {
	switch c {
	case Gzip:
		if level == 0 {
			level = 6
		}
		zw, err := pgzip.NewWriterLevel(w, level)
		if err != nil {
			return nil, err
		}
		if err := zw.SetConcurrency(gzipBlock, gzipBlocks); err != nil {
			return nil, err
		}
		return zw, nil
	case Zstd:
		lv := zstd.SpeedDefault
		if level != 0 {
			lv = zstd.EncoderLevel(level)
		}
		// A 2 MiB window, as zstd -3 uses: the same ratio on dumps,
		// faster and with less memory than the default 8 MiB.
		return zstd.NewWriter(w,
			zstd.WithEncoderLevel(lv),
			zstd.WithEncoderConcurrency(2),
			zstd.WithWindowSize(2<<20))
	case None, "":
		return nopWriteCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// newDecompressor wraps r for reading; the returned closer releases the
// decoder's goroutines.
func newDecompressor(r io.Reader, c Compression) (io.ReadCloser, error) {
	switch c {
	case Gzip:
		zr, err := pgzip.NewReaderN(r, gzipBlock, gzipBlocks)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip header: %v", ErrCorrupted, err)
		}
		zr.Multistream(true)
		return zr, nil
	case Zstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(2), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}
