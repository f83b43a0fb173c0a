package format

import (
	"io"

	"github.com/klauspost/compress/zstd"
)

// zstd streams are written as independent frames of zstdFrame bytes of
// input, zstdFrames of them compressed at once: klauspost's streaming
// encoder compresses one block at a time, so on its own it keeps one
// core busy. The frames are a zstd stream like any other (the format
// allows any number of frames; zstd -d and every decoder read them as
// one), each within the 2 MiB window a streaming encoder would use.
const (
	zstdFrame  = 2 << 20
	zstdFrames = 2
)

// frameWriter compresses into w frame by frame, up to zstdFrames frames
// in flight, writing them in order. Memory: (2 × zstdFrames + 1) frames
// of buffers plus the encoders' state.
type frameWriter struct {
	w       io.Writer
	enc     *zstd.Encoder
	buf     []byte
	pending []*frameJob
	free    [][]byte
	err     error
}

type frameJob struct {
	in, out []byte
	done    chan struct{}
}

func newFrameWriter(w io.Writer, level zstd.EncoderLevel) (*frameWriter, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(zstdFrames),
		zstd.WithWindowSize(zstdFrame), zstd.WithEncoderCRC(true))
	if err != nil {
		return nil, err
	}
	return &frameWriter{w: w, enc: enc}, nil
}

func (f *frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if f.err != nil {
			return n, f.err
		}
		if f.buf == nil {
			f.buf = f.alloc()
		}
		k := copy(f.buf[len(f.buf):zstdFrame], p)
		f.buf = f.buf[:len(f.buf)+k]
		p, n = p[k:], n+k
		if len(f.buf) == zstdFrame {
			f.submit()
		}
	}
	return n, f.err
}

// submit starts compressing the frame being filled, after writing out
// the oldest one if zstdFrames are in flight.
func (f *frameWriter) submit() {
	if len(f.pending) == zstdFrames {
		f.flushOne()
	}
	j := &frameJob{in: f.buf, out: f.alloc(), done: make(chan struct{})}
	f.buf = nil
	go func() {
		j.out = f.enc.EncodeAll(j.in, j.out[:0])
		close(j.done)
	}()
	f.pending = append(f.pending, j)
}

// flushOne waits for the oldest frame and writes it.
func (f *frameWriter) flushOne() {
	j := f.pending[0]
	f.pending = f.pending[1:]
	<-j.done
	if f.err == nil {
		_, f.err = f.w.Write(j.out)
	}
	f.free = append(f.free, j.in[:0], j.out[:0])
}

func (f *frameWriter) alloc() []byte {
	if k := len(f.free); k > 0 {
		b := f.free[k-1]
		f.free = f.free[:k-1]
		return b
	}
	return make([]byte, 0, zstdFrame)
}

// Close compresses what is left and writes every frame. An empty stream
// is one empty frame, as a streaming encoder writes.
func (f *frameWriter) Close() error {
	if len(f.buf) > 0 || (f.buf == nil && len(f.pending) == 0 && f.free == nil) {
		if f.buf == nil {
			f.buf = f.alloc()
		}
		f.submit()
	}
	for len(f.pending) > 0 {
		f.flushOne()
	}
	f.enc.Close()
	return f.err
}
