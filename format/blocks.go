package format

import "io"

// blockWriter cuts its input into blocks of size bytes and compresses
// each on its own (compress appends the block's encoding to out; its
// error fails the stream), up to inflight blocks at once, writing them in
// order. zstd frames and gzip members are written this way: on its own a
// streaming encoder keeps one core busy. Memory: (2 × inflight + 1)
// blocks of buffers plus the encoders' state.
type blockWriter struct {
	w        io.Writer
	size     int
	inflight int
	compress func(out, in []byte) ([]byte, error)
	done     func() // releases the encoders, at Close
	buf      []byte
	pending  []*blockJob
	free     [][]byte
	err      error
}

type blockJob struct {
	in, out []byte
	err     error
	done    chan struct{}
}

func (f *blockWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if f.err != nil {
			return n, f.err
		}
		if f.buf == nil {
			f.buf = f.alloc()
		}
		k := copy(f.buf[len(f.buf):f.size], p)
		f.buf = f.buf[:len(f.buf)+k]
		p, n = p[k:], n+k
		if len(f.buf) == f.size {
			f.submit()
		}
	}
	return n, f.err
}

// submit starts compressing the block being filled, after writing out
// the oldest one if inflight blocks are in flight.
func (f *blockWriter) submit() {
	if len(f.pending) == f.inflight {
		f.flushOne()
	}
	j := &blockJob{in: f.buf, out: f.alloc(), done: make(chan struct{})}
	f.buf = nil
	go func() {
		j.out, j.err = f.compress(j.out[:0], j.in)
		close(j.done)
	}()
	f.pending = append(f.pending, j)
}

// flushOne waits for the oldest block and writes it.
func (f *blockWriter) flushOne() {
	j := f.pending[0]
	f.pending = f.pending[1:]
	<-j.done
	if f.err == nil {
		f.err = j.err
	}
	if f.err == nil {
		_, f.err = f.w.Write(j.out)
	}
	f.free = append(f.free, j.in[:0])
	if cap(j.out) > 0 { // nil when compress failed
		f.free = append(f.free, j.out[:0])
	}
}

func (f *blockWriter) alloc() []byte {
	if k := len(f.free); k > 0 {
		b := f.free[k-1]
		f.free = f.free[:k-1]
		return b
	}
	return make([]byte, 0, f.size)
}

// Close compresses what is left and writes every block. An empty stream
// is one empty block, as a streaming encoder writes.
func (f *blockWriter) Close() error {
	if len(f.buf) > 0 || (f.buf == nil && len(f.pending) == 0 && f.free == nil) {
		if f.buf == nil {
			f.buf = f.alloc()
		}
		f.submit()
	}
	for len(f.pending) > 0 {
		f.flushOne()
	}
	if f.done != nil {
		f.done()
	}
	return f.err
}
