package format

import (
	"io"

	"github.com/klauspost/compress/zstd"
)

// zstd streams are written as independent frames of zstdFrame bytes of
// input, zstdFrames of them compressed at once (blockWriter). The frames
// are a zstd stream like any other (the format allows any number of
// frames; zstd -d and every decoder read them as one), each within the
// 2 MiB window a streaming encoder would use.
const (
	zstdFrame  = 2 << 20
	zstdFrames = 2
)

func newFrameWriter(w io.Writer, level zstd.EncoderLevel) (*blockWriter, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(zstdFrames),
		zstd.WithWindowSize(zstdFrame), zstd.WithEncoderCRC(true))
	if err != nil {
		return nil, err
	}
	return &blockWriter{w: w, size: zstdFrame, inflight: zstdFrames,
		compress: func(out, in []byte) []byte { return enc.EncodeAll(in, out) },
		done:     func() { enc.Close() }}, nil
}
