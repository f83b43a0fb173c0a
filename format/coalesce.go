package format

import (
	"bufio"
	"errors"
	"io"
)

// joinedChunk is the most table data Coalesce puts in one chunk: what
// the server's COPY reads from the client at a time.
const joinedChunk = 64 << 10

// Coalesce returns a reader of the custom archive read from r with the
// chunks of each uncompressed data block joined into chunks of up to
// joinedChunk bytes. pg_dump -Z0 writes a chunk per row, and pg_restore
// sends each chunk to the server as a COPY message of its own: a table
// of short rows costs pg_restore a read and the server a message per
// row. Everything else is the same, byte for byte: the header, the table
// of contents, the data, and blocks of other kinds; only the chunk
// lengths inside data blocks change (and with them where later blocks
// start, so data offsets in the table of contents, if any, no longer
// hold: the output is for reading as a stream, or for PatchOffsets).
//
// Coalesce does not judge the archive: from the first thing it cannot
// read as an uncompressed custom archive (another format, compressed
// blocks, a large-object block, a bad length, an early end), it passes
// the rest on as it came, for the walk to refuse. An output block ends
// only where the input's did, so a truncated archive stays truncated.
// Errors of r are returned as they are.
func Coalesce(r io.Reader) io.Reader {
	return &coalescer{src: r}
}

type coalescer struct {
	src     io.Reader
	r       *bufio.Reader
	intSize int
	started bool
	through bool   // pass everything on as it comes
	err     error  // to return once out is read
	out     []byte // ready to be read
	inBlock bool
	want    int64  // bytes of the input chunk still to join
	joined  []byte // the chunk being joined: room for its length, then data
	raw     [9]byte
}

func (c *coalescer) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		switch {
		case c.err != nil:
			return 0, c.err
		case c.through:
			if c.r != nil {
				return c.r.Read(p) // its buffer first, then its error, or r
			}
			return c.src.Read(p)
		case !c.started:
			c.start()
		default:
			if err := c.step(); err != nil {
				c.err = err
			}
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// start reads the header and table of contents, to be passed on as
// they are. Anything but an archive with uncompressed data blocks is
// passed on whole.
func (c *coalescer) start() {
	c.started = true
	rec := &recorder{r: c.src}
	c.r = bufio.NewReaderSize(rec, 64<<10)
	a := &archReader{r: c.r}
	info, err := a.header()
	if err == nil && info.Compression == "none" {
		_, err = a.toc(info)
	}
	if err != nil || info.Compression != "none" {
		// What was read goes on as it came, then the rest from src.
		var rerr error
		if err != nil && !errors.Is(err, ErrArchive) && !errors.Is(err, ErrTruncated) {
			rerr = err // r's own error
		}
		c.out, c.through, c.err, c.r = rec.buf, true, rerr, nil
		return
	}
	c.out, c.intSize = rec.buf[:a.pos], a.intSize
	rec.buf, rec.off = nil, true // the rest is in c.r's buffer
	c.joined = make([]byte, 1+c.intSize, 1+c.intSize+joinedChunk+1+c.intSize)
}

// step puts the next piece of output in c.out, or returns why there is
// none (io.EOF at the archive's end).
func (c *coalescer) step() error {
	room := 1 + c.intSize
	if !c.inBlock {
		typ, err := c.r.ReadByte()
		if err != nil {
			return err // io.EOF: the archive ended where a block may start
		}
		raw, n, err := c.int()
		head := append([]byte{typ}, raw...)
		if err != nil || typ != blockData || n < 0 {
			c.out, c.through = head, true
			return nil
		}
		c.out, c.inBlock = head, true
		return nil
	}
	for c.want > 0 {
		free := joinedChunk - (len(c.joined) - room)
		if free == 0 {
			c.out = c.seal()
			return nil
		}
		k := int(min(c.want, int64(free)))
		at := len(c.joined)
		c.joined = c.joined[:at+k]
		got, err := io.ReadFull(c.r, c.joined[at:])
		c.joined = c.joined[:at+got]
		c.want -= int64(got)
		if err != nil {
			// The input stops inside a chunk: what came goes on, and the
			// block is left open for the walk to find truncated.
			c.out, c.through = c.seal(), true
			if err != io.ErrUnexpectedEOF && err != io.EOF {
				c.err = err
			}
			return nil
		}
	}
	raw, n, err := c.int()
	switch {
	case err == nil && n > 0 && n <= maxChunk:
		c.want = n
		return nil
	case err == nil && n == 0:
		// The block ends: the last joined chunk, then its zero length.
		out := c.seal()
		c.out, c.inBlock = append(out, raw...), false
		return nil
	default:
		// A bad length or an early end: the walk says which.
		c.out, c.through = append(c.seal(), raw...), true
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			c.err = err
		}
		return nil
	}
}

// seal returns the joined chunk with its length in front (nothing when
// it holds no data), and starts the next one. The bytes returned stay
// valid until the next seal.
func (c *coalescer) seal() []byte {
	room := 1 + c.intSize
	n := len(c.joined) - room
	if n == 0 {
		return nil
	}
	out := c.joined
	out[0] = 0
	for i := range c.intSize {
		out[1+i] = byte(n >> (8 * i))
	}
	c.joined = c.joined[:room]
	return out
}

// int reads an integer, returning its bytes as they came as well (valid
// until the next call).
func (c *coalescer) int() ([]byte, int64, error) {
	p, err := c.r.Peek(1 + c.intSize)
	raw := c.raw[:copy(c.raw[:], p)]
	c.r.Discard(len(raw))
	if err != nil {
		return raw, 0, err
	}
	var v int64
	for i := c.intSize; i >= 1; i-- {
		v = v<<8 | int64(raw[i])
	}
	if raw[0] != 0 {
		v = -v
	}
	return raw, v, nil
}

// recorder keeps what is read through it until told to stop.
type recorder struct {
	r   io.Reader
	buf []byte
	off bool
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if !r.off {
		r.buf = append(r.buf, p[:n]...)
	}
	return n, err
}
