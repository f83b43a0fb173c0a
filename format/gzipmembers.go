package format

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
)

// gzip streams are written as independent members (RFC 1952 allows any
// number; gunzip, zcat and every reader read them as one stream), each of
// gzipMember bytes of input, gzipMembers compressed at once
// (blockWriter). Each member's header carries the member's length in an
// extra field, as BGZF does, so a reader finds the next member without
// inflating this one and inflates several at once: a restore's check
// pass, which decodes every byte before the jobs it feeds can go on, is
// no longer held to one core's inflate. The member header (20 bytes):
//
//	1f 8b 08 04       magic, deflate, FEXTRA
//	00 00 00 00 00 ff no time, no extra flags, OS unknown
//	08 00             XLEN = 8
//	42 4b 04 00       subfield "BK", 4 bytes:
//	n n n n           the member's length in bytes, header to trailer (LE)
//
// then the deflate data, CRC-32 and length of the input (LE). Streams
// written before (one member, pgzip) are read as before.
const (
	gzipMember       = 1 << 20
	gzipMembers      = 3
	gzipMemberHeader = 20
	maxGzipMember    = 4 << 20 // cap on a member's stated length and on its output
)

// gzipMemberHead is a member header up to its length field.
var gzipMemberHead = []byte{0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 8, 0, 'B', 'K', 4, 0}

// flatePools keeps one pool of deflate writers per level.
var flatePools sync.Map // level → *sync.Pool

func newMemberWriter(w io.Writer, level int) (*blockWriter, error) {
	if level < flate.HuffmanOnly || level > flate.BestCompression {
		return nil, fmt.Errorf("gzip level %d out of range", level)
	}
	p, _ := flatePools.LoadOrStore(level, &sync.Pool{New: func() any {
		fw, _ := flate.NewWriter(nil, level)
		return fw
	}})
	pool := p.(*sync.Pool)
	return &blockWriter{w: w, size: gzipMember, inflight: gzipMembers,
		compress: func(out, in []byte) ([]byte, error) {
			buf := bytes.NewBuffer(out)
			buf.Write(gzipMemberHead)
			buf.Write([]byte{0, 0, 0, 0}) // the length, once known
			fw := pool.Get().(*flate.Writer)
			fw.Reset(buf)
			fw.Write(in) // a bytes.Buffer does not fail
			fw.Close()
			pool.Put(fw)
			var tr [8]byte
			binary.LittleEndian.PutUint32(tr[:4], crc32.ChecksumIEEE(in))
			binary.LittleEndian.PutUint32(tr[4:], uint32(len(in)))
			buf.Write(tr[:])
			b := buf.Bytes()
			binary.LittleEndian.PutUint32(b[16:20], uint32(len(b)))
			return b, nil
		}}, nil
}

// sizedMembers reports whether b (at least a member header) starts with
// a member that carries its length.
func sizedMembers(b []byte) bool {
	// Magic, deflate, FEXTRA alone, then the length subfield; the time,
	// extra flags and OS bytes may be anything.
	return len(b) >= gzipMemberHeader && bytes.Equal(b[:4], gzipMemberHead[:4]) && bytes.Equal(b[10:16], gzipMemberHead[10:16])
}

// memberReader inflates a stream of members that carry their lengths, up
// to gzipMembers at once, and returns their output in order. Every member
// is checked whole before any of its bytes are returned: its header, that
// its deflate data ends exactly at its trailer, its CRC-32 and length.
type memberReader struct {
	r       *bufio.Reader
	pending []*memberJob
	cur     []byte   // output not yet returned
	curBuf  []byte   // the whole buffer cur is in
	free    [][]byte // buffers to reuse
	index   int      // members read from r
	eof     bool     // r has ended after a whole member
	next    error    // reading the member after the pending ones failed
	err     error    // returned from now on
	// authenticated: r's bytes were authenticated (decrypted), so a
	// member may go to the C decoder (cInflate).
	authenticated bool
}

type memberJob struct {
	in, out []byte
	err     error
	done    chan struct{}
}

func newMemberReader(r *bufio.Reader, authenticated bool) *memberReader {
	return &memberReader{r: r, authenticated: authenticated}
}

func (m *memberReader) Read(p []byte) (int, error) {
	for len(m.cur) == 0 {
		if m.err != nil {
			return 0, m.err
		}
		for m.next == nil && !m.eof && len(m.pending) < gzipMembers {
			m.next = m.start()
		}
		if len(m.pending) == 0 {
			// What the members before it gave is out: now the error
			// reading the next one, or the end.
			if m.err = m.next; m.err == nil {
				m.err = io.EOF
			}
			continue
		}
		j := m.pending[0]
		<-j.done
		m.pending = m.pending[1:]
		m.free = append(m.free, j.in[:0])
		if j.err != nil {
			m.err = j.err
			continue
		}
		if m.curBuf != nil {
			m.free = append(m.free, m.curBuf[:0])
		}
		m.cur, m.curBuf = j.out, j.out
	}
	n := copy(p, m.cur)
	m.cur = m.cur[n:]
	return n, nil
}

// buffer returns a buffer of n bytes, reusing one the reader is done with.
func (m *memberReader) buffer(n int) []byte {
	for i := len(m.free) - 1; i >= 0; i-- {
		if b := m.free[i]; cap(b) >= n {
			m.free[i] = m.free[len(m.free)-1]
			m.free = m.free[:len(m.free)-1]
			return b[:n]
		}
	}
	return make([]byte, n, max(n, gzipMember))
}

// start reads the next member whole and starts inflating it.
func (m *memberReader) start() error {
	h, err := m.r.Peek(gzipMemberHeader)
	switch {
	case len(h) == 0 && err == io.EOF:
		if m.index == 0 {
			return fmt.Errorf("%w: the gzip stream is empty", ErrTruncated)
		}
		m.eof = true
		return nil
	case len(h) >= 2 && (h[0] != 0x1f || h[1] != 0x8b):
		return fmt.Errorf("%w: %d bytes after gzip member %d are not a gzip member", ErrCorrupted, len(h), m.index-1)
	case len(h) < gzipMemberHeader && (err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF)):
		return fmt.Errorf("%w: the gzip stream stops in the header of member %d", ErrTruncated, m.index)
	case err != nil:
		return err
	case !sizedMembers(h):
		return fmt.Errorf("%w: gzip member %d has no length field (a stream of BackupKit's members is all of them)", ErrCorrupted, m.index)
	}
	size := int(binary.LittleEndian.Uint32(h[16:20]))
	if size < gzipMemberHeader+2+8 || size > maxGzipMember {
		return fmt.Errorf("%w: gzip member %d states a length of %d bytes", ErrCorrupted, m.index, size)
	}
	in := m.buffer(size)
	if k, err := io.ReadFull(m.r, in); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("%w: the gzip stream stops in member %d (%d of its %d bytes)", ErrTruncated, m.index, k, size)
		}
		return err
	}
	j := &memberJob{in: in, out: m.buffer(0), done: make(chan struct{})}
	index := m.index
	m.index++
	m.pending = append(m.pending, j)
	go func() {
		defer close(j.done)
		j.out, j.err = inflateMember(j.in, j.out, m.authenticated)
		if j.err != nil {
			j.err = fmt.Errorf("%w: gzip member %d: %v", ErrCorrupted, index, j.err)
		}
	}()
	return nil
}

var inflaters sync.Pool

// cInflate, when set (a build with cgo and libdeflate), inflates a
// member's deflate data into exactly len(out) bytes, failing when the
// data is not one whole deflate stream that ends at the end of data and
// gives exactly that much. It is a C decoder, so it is given only members
// whose bytes were authenticated (an encrypted backup's, after their
// chunk's tag was checked): a stream read from storage as is goes to the
// Go decoder.
var cInflate func(data, out []byte) error

// GzipDecoders says, for `backupkit version`, which decoder inflates
// gzip backups in this build.
func GzipDecoders() string {
	if cInflate == nil {
		return "gzip: Go decoder (klauspost/compress); built without libdeflate"
	}
	return "gzip: libdeflate (cgo) for encrypted backups, once authenticated; Go decoder (klauspost/compress) for the rest"
}

// inflateMember decodes one whole member into out (its capacity reused
// when large enough) and checks it; by libdeflate when authenticated.
func inflateMember(in, out []byte, authenticated bool) ([]byte, error) {
	tr := in[len(in)-8:]
	want := int(binary.LittleEndian.Uint32(tr[4:]))
	if want > maxGzipMember {
		return nil, fmt.Errorf("states %d bytes of output", want)
	}
	if cap(out) >= want {
		out = out[:want]
	} else {
		out = make([]byte, want)
	}
	data := in[gzipMemberHeader : len(in)-8]
	var err error
	if authenticated && cInflate != nil {
		err = cInflate(data, out)
	} else {
		err = goInflate(data, out)
	}
	if err != nil {
		return nil, err
	}
	if crc32.ChecksumIEEE(out) != binary.LittleEndian.Uint32(tr[:4]) {
		return nil, errors.New("CRC-32 mismatch")
	}
	return out, nil
}

// goInflate is cInflate's contract in Go (klauspost/compress/flate).
func goInflate(in, out []byte) error {
	data := bytes.NewReader(in)
	var fr io.ReadCloser
	if v := inflaters.Get(); v != nil {
		fr = v.(io.ReadCloser)
		if err := fr.(flate.Resetter).Reset(data, nil); err != nil {
			return err
		}
	} else {
		fr = flate.NewReader(data)
	}
	defer inflaters.Put(fr)
	if n, err := io.ReadFull(fr, out); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("%d bytes of output, its trailer states %d", n, len(out))
		}
		return err
	}
	// The deflate data must end here, and exactly at the trailer.
	var one [1]byte
	switch k, err := io.ReadFull(fr, one[:]); {
	case k > 0:
		return errors.New("more output than its trailer states")
	case err != io.EOF:
		return fmt.Errorf("its deflate data does not end: %v", err)
	case data.Len() != 0:
		return fmt.Errorf("%d bytes after its deflate data", data.Len())
	}
	return nil
}

func (m *memberReader) Close() error {
	for _, j := range m.pending {
		<-j.done
	}
	m.pending = nil
	return nil
}
