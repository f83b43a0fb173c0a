package format

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A pg_dump custom-format archive (what `pg_dump -Fc` writes), as far as
// BackupKit reads it: a header, a table of contents, then one data block
// per entry that has data, to the end of the stream. Integers are a sign
// byte and intSize little-endian bytes; strings an integer length (-1 for
// NULL) and the bytes; a data block is a type byte, the entry's dump id,
// then chunks (an integer length and the bytes) ended by a zero length.

// Archive format versions that change the layout.
const (
	archV1_10 = 1<<16 | 10<<8 // remote and dump version strings in the header
	archV1_14 = 1<<16 | 14<<8 // table access method in TOC entries
	archV1_15 = 1<<16 | 15<<8 // compression algorithm byte in the header
	archV1_16 = 1<<16 | 16<<8 // relkind in TOC entries
	archMin   = archV1_10
	archMax   = 1<<16 | 16<<8 | 255
)

// Data states of a TOC entry (the byte before its data offset).
const (
	offsetNotSet = 1 // has data, offset unknown (a streamed archive)
	offsetSet    = 2 // has data at the offset
	offsetNoData = 3 // has no data
)

// Data block types.
const (
	blockData  = 1
	blockBlobs = 3
)

// Limits on what a hostile archive may ask of the walker.
const (
	maxTOCEntries = 10_000_000
	maxString     = 256 << 20
	maxChunk      = 1 << 30
)

// Sections of archive entries, as pg_dump numbers them.
const (
	SectionNone     = 1 // pg_restore counts it in the section before it
	SectionPreData  = 2
	SectionData     = 3
	SectionPostData = 4
)

// ErrArchive means bytes that claim to be a pg_dump archive are not one
// that can be read to its end.
var ErrArchive = errors.New("not a readable pg_dump archive")

// ArchiveInfo is what a walk of a custom-format archive found.
type ArchiveInfo struct {
	Version       string // archive format, e.g. "1.14"
	Database      string // as pg_dump saw it
	ServerVersion string // of the server dumped
	DumpVersion   string // of the pg_dump that wrote it
	Compression   string // of the data blocks: none, gzip, lz4, zstd
	Entries       []ArchiveEntry
	DataBlocks    int
	offSize       int
}

// DatabaseOwner is the owner of the dumped database, as its DATABASE
// entry says ("" when there is none).
func (a *ArchiveInfo) DatabaseOwner() string {
	for _, e := range a.Entries {
		if e.Desc == "DATABASE" {
			return e.Owner
		}
	}
	return ""
}

// ArchiveEntry is one table-of-contents entry.
type ArchiveEntry struct {
	DumpID    int
	Desc      string // "TABLE", "TABLE DATA", "INDEX", …
	Tag       string // the object's name
	Namespace string
	Owner     string
	HasData   bool
	// Section is pg_dump's section of the entry (SectionPreData, …; 1
	// for none: pg_restore counts those in the section before them).
	Section int
	// Deps are the dump ids of the entries this one depends on.
	Deps []int
	// Rows is the number of rows of a TABLE DATA entry, counted from the
	// stream itself (-1 when its blocks are compressed in a way the walk
	// does not decode).
	Rows int64
	// stateAt is where the entry's data state byte is in the stream;
	// DataAt where its data block starts (0: none seen), Bytes how long
	// the block is.
	stateAt int64
	DataAt  int64
	Bytes   int64
}

// Tables returns "schema.table" → rows for every TABLE DATA entry.
func (a *ArchiveInfo) Tables() map[string]int64 {
	out := map[string]int64{}
	for _, e := range a.Entries {
		if e.Desc == "TABLE DATA" {
			out[e.Namespace+"."+e.Tag] = e.Rows
		}
	}
	return out
}

// TableBytes returns "schema.table" → the size of its data block for
// every TABLE DATA entry with one: what a restore of it reads, a better
// measure of its restore time than rows of any width.
func (a *ArchiveInfo) TableBytes() map[string]int64 {
	out := map[string]int64{}
	for _, e := range a.Entries {
		if e.Desc == "TABLE DATA" && e.DataAt > 0 {
			out[e.Namespace+"."+e.Tag] = e.Bytes
		}
	}
	return out
}

// archReader reads archive primitives and knows its position.
type archReader struct {
	r       *bufio.Reader
	pos     int64
	intSize int
	offSize int
	version int

	hooks  WalkHooks
	toldAt int64 // the position last told to hooks.At
}

// WalkHooks follow a walk as it goes (each may be nil), for readers of
// the walked bytes that want only parts of them: positions are offsets
// in the stream, and a hook is only told about bytes already read.
type WalkHooks struct {
	// TOC: the header and table of contents end at pos, where the
	// first data block (if any) starts.
	TOC func(pos int64)
	// Block: a data block of entry id starts at start.
	Block func(id int, start int64)
	// At: everything before pos was walked (told about every MiB inside
	// data blocks, and at the end of the archive).
	At func(pos int64)
}

// tellAt calls hooks.At when the walk moved on by a MiB, or always.
func (a *archReader) tellAt(always bool) {
	if a.hooks.At != nil && (always || a.pos-a.toldAt >= 1<<20) {
		a.toldAt = a.pos
		a.hooks.At(a.pos)
	}
}

func (a *archReader) fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s (at byte %d)", ErrArchive, fmt.Sprintf(format, args...), a.pos)
}

func (a *archReader) byte() (byte, error) {
	b, err := a.r.ReadByte()
	if err != nil {
		return 0, a.eof(err)
	}
	a.pos++
	return b, nil
}

func (a *archReader) eof(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the archive stops early (at byte %d)", ErrTruncated, a.pos)
	}
	return err
}

func (a *archReader) full(b []byte) error {
	n, err := io.ReadFull(a.r, b)
	a.pos += int64(n)
	if err != nil {
		return a.eof(err)
	}
	return nil
}

func (a *archReader) int() (int64, error) {
	sign, err := a.byte()
	if err != nil {
		return 0, err
	}
	// Byte by byte from the buffer: a slice handed to io.ReadFull would
	// escape, one allocation per chunk of table data.
	var v int64
	for i := 0; i < a.intSize; i++ {
		c, err := a.byte()
		if err != nil {
			return 0, err
		}
		v |= int64(c) << (8 * i)
	}
	if sign != 0 {
		v = -v
	}
	return v, nil
}

// str reads a string; ok is false for NULL.
func (a *archReader) str() (string, bool, error) {
	n, err := a.int()
	if err != nil {
		return "", false, err
	}
	if n < 0 {
		return "", false, nil
	}
	if n > maxString {
		return "", false, a.fail("a string of %d bytes", n)
	}
	b := make([]byte, n)
	if err := a.full(b); err != nil {
		return "", false, err
	}
	return string(b), true, nil
}

func (a *archReader) skip(n int64) error {
	k, err := io.CopyN(io.Discard, a.r, n)
	a.pos += k
	if err != nil {
		return a.eof(err)
	}
	return nil
}

// WalkArchive reads a custom-format archive from r to its very end: the
// header, every TOC entry and every data block, counting the rows of
// table data it can decode. An archive that is malformed, stops early or
// has bytes after its last block is an error (ErrArchive or ErrTruncated).
func WalkArchive(r io.Reader) (*ArchiveInfo, error) {
	return WalkArchiveWith(r, WalkHooks{})
}

// WalkArchiveWith is WalkArchive telling hooks how far it got.
func WalkArchiveWith(r io.Reader, hooks WalkHooks) (*ArchiveInfo, error) {
	a := &archReader{r: bufio.NewReaderSize(r, 64<<10), hooks: hooks}
	info, err := a.header()
	if err != nil {
		return nil, err
	}
	byID, err := a.toc(info)
	if err != nil {
		return nil, err
	}
	if hooks.TOC != nil {
		hooks.TOC(a.pos)
	}
	var last *ArchiveEntry // the entry of the block before
	for {
		start := a.pos
		if last != nil {
			last.Bytes = start - last.DataAt
		}
		typ, err := a.r.ReadByte()
		if err == io.EOF {
			a.tellAt(true)
			return info, nil
		}
		if err != nil {
			return nil, err
		}
		a.pos++
		id, err := a.int()
		if err != nil {
			return nil, err
		}
		e := byID[int(id)]
		if e == nil || !e.HasData || e.DataAt != 0 {
			return nil, a.fail("a data block for entry %d, which has no data or already had its block", id)
		}
		e.DataAt = start
		last = e
		info.DataBlocks++
		if hooks.Block != nil {
			hooks.Block(int(id), start)
		}
		switch typ {
		case blockData:
			e.Rows, err = a.chunks(info.Compression, e.Desc == "TABLE DATA")
		case blockBlobs:
			err = a.blobs(info.Compression)
		default:
			err = a.fail("unknown data block type %d", typ)
		}
		if err != nil {
			return nil, err
		}
	}
}

func (a *archReader) header() (*ArchiveInfo, error) {
	var magic [5]byte
	if err := a.full(magic[:]); err != nil {
		return nil, err
	}
	if string(magic[:]) != "PGDMP" {
		return nil, a.fail("no PGDMP magic")
	}
	var v [6]byte // major, minor, rev, intSize, offSize, format
	if err := a.full(v[:]); err != nil {
		return nil, err
	}
	a.version = int(v[0])<<16 | int(v[1])<<8 | int(v[2])
	a.intSize, a.offSize = int(v[3]), int(v[4])
	if a.version < archMin || a.version > archMax {
		return nil, a.fail("archive version %d.%d is not one BackupKit reads", v[0], v[1])
	}
	if a.intSize < 1 || a.intSize > 8 || a.offSize < 1 || a.offSize > 8 || v[5] != 1 {
		return nil, a.fail("integer size %d, offset size %d, format %d: not a custom-format archive", v[3], v[4], v[5])
	}
	info := &ArchiveInfo{Version: fmt.Sprintf("%d.%d", v[0], v[1]), offSize: a.offSize}
	if a.version >= archV1_15 {
		alg, err := a.byte()
		if err != nil {
			return nil, err
		}
		info.Compression = map[byte]string{0: "none", 1: "gzip", 2: "lz4", 3: "zstd"}[alg]
		if info.Compression == "" {
			return nil, a.fail("unknown compression algorithm %d", alg)
		}
	} else {
		level, err := a.int()
		if err != nil {
			return nil, err
		}
		info.Compression = "none"
		if level != 0 {
			info.Compression = "gzip"
		}
	}
	for i := 0; i < 7; i++ { // creation time: sec, min, hour, mday, mon, year, isdst
		if _, err := a.int(); err != nil {
			return nil, err
		}
	}
	var err error
	for _, s := range []*string{&info.Database, &info.ServerVersion, &info.DumpVersion} {
		if *s, _, err = a.str(); err != nil {
			return nil, err
		}
	}
	return info, nil
}

func (a *archReader) toc(info *ArchiveInfo) (map[int]*ArchiveEntry, error) {
	n, err := a.int()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > maxTOCEntries {
		return nil, a.fail("%d table-of-contents entries", n)
	}
	info.Entries = make([]ArchiveEntry, 0, n)
	for i := int64(0); i < n; i++ {
		e, err := a.entry()
		if err != nil {
			return nil, err
		}
		info.Entries = append(info.Entries, e)
	}
	byID := make(map[int]*ArchiveEntry, len(info.Entries))
	for i := range info.Entries {
		e := &info.Entries[i]
		if byID[e.DumpID] != nil {
			return nil, a.fail("entry id %d appears twice", e.DumpID)
		}
		byID[e.DumpID] = e
	}
	return byID, nil
}

func (a *archReader) entry() (ArchiveEntry, error) {
	var e ArchiveEntry
	id, err := a.int()
	if err != nil {
		return e, err
	}
	if id <= 0 || id > 1<<31 {
		return e, a.fail("entry id %d out of range", id)
	}
	e.DumpID, e.Rows = int(id), -1
	if _, err := a.int(); err != nil { // had a dumper
		return e, err
	}
	str := func(dst *string) error {
		s, _, err := a.str()
		if dst != nil {
			*dst = s
		}
		return err
	}
	// tableoid, oid, tag, desc, section, defn, dropStmt, copyStmt,
	// namespace, tablespace, [tableam], [relkind], owner, with_oids.
	steps := []func() error{
		func() error { return str(nil) }, func() error { return str(nil) },
		func() error { return str(&e.Tag) }, func() error { return str(&e.Desc) },
		func() error { v, err := a.int(); e.Section = int(v); return err },
		func() error { return str(nil) }, func() error { return str(nil) }, func() error { return str(nil) },
		func() error { return str(&e.Namespace) }, func() error { return str(nil) },
	}
	if a.version >= archV1_14 {
		steps = append(steps, func() error { return str(nil) })
	}
	if a.version >= archV1_16 {
		steps = append(steps, func() error { _, err := a.int(); return err })
	}
	steps = append(steps, func() error { return str(&e.Owner) }, func() error { return str(nil) })
	for _, step := range steps {
		if err := step(); err != nil {
			return e, err
		}
	}
	for { // dependencies, ended by NULL
		dep, ok, err := a.str()
		if err != nil {
			return e, err
		}
		if !ok {
			break
		}
		if id, err := strconv.Atoi(dep); err == nil {
			e.Deps = append(e.Deps, id)
		}
	}
	e.stateAt = a.pos
	state, err := a.byte()
	if err != nil {
		return e, err
	}
	if state < offsetNotSet || state > offsetNoData {
		return e, a.fail("entry %d has data state %d", e.DumpID, state)
	}
	e.HasData = state != offsetNoData
	return e, a.skip(int64(a.offSize))
}

// chunks reads a data block's chunks up to the zero length that ends
// them; with rows set it counts COPY lines (uncompressed or zlib data).
func (a *archReader) chunks(compression string, rows bool) (int64, error) {
	count := rows && (compression == "none" || compression == "gzip")
	var zr io.ReadCloser
	var pw *io.PipeWriter
	var lines copyLines
	done := make(chan error, 1)
	if count && compression == "gzip" {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		go func() {
			var err error
			if zr, err = zlib.NewReader(pr); err == nil {
				_, err = io.Copy(&lines, zr)
			}
			pr.CloseWithError(err)
			io.Copy(io.Discard, pr)
			done <- err
		}()
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := a.int()
		if err != nil {
			if pw != nil {
				pw.CloseWithError(err)
				<-done
			}
			return -1, err
		}
		a.tellAt(false)
		if n == 0 {
			break
		}
		if n < 0 || n > maxChunk {
			return -1, a.fail("a data chunk of %d bytes", n)
		}
		for n > 0 && pw == nil {
			// Read in place: no copy out of the buffer.
			p, err := a.r.Peek(int(min(n, int64(a.r.Size()))))
			if len(p) == 0 && err != nil {
				return -1, a.eof(err)
			}
			if count {
				lines.Write(p)
			}
			a.r.Discard(len(p))
			a.pos += int64(len(p))
			n -= int64(len(p))
		}
		for n > 0 {
			k := int(min(n, int64(len(buf))))
			if err := a.full(buf[:k]); err != nil {
				if pw != nil {
					pw.CloseWithError(err)
					<-done
				}
				return -1, err
			}
			switch {
			case pw != nil:
				pw.Write(buf[:k])
			case count:
				lines.Write(buf[:k])
			}
			n -= int64(k)
		}
	}
	if pw != nil {
		pw.Close()
		if err := <-done; err != nil {
			return -1, a.fail("compressed table data does not decode: %v", err)
		}
	}
	if !count {
		return -1, nil
	}
	return lines.rows, nil
}

// copyLines counts the rows of COPY text: lines up to the "\." line that
// ends the data (a data line is never "\.": COPY escapes the backslash).
type copyLines struct {
	rows  int64
	line  [3]byte // the start of the current line
	n     int     // its length so far
	ended bool
}

func (c *copyLines) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 && !c.ended {
		i := bytes.IndexByte(p, '\n')
		part := p
		if i >= 0 {
			part = p[:i]
		}
		if c.n < len(c.line) {
			copy(c.line[c.n:], part)
		}
		c.n += len(part)
		if i < 0 {
			break
		}
		if c.n == 2 && c.line[0] == '\\' && c.line[1] == '.' {
			c.ended = true
		} else {
			c.rows++
		}
		c.n = 0
		p = p[i+1:]
	}
	return total, nil
}

// blobs reads a large-object block: (oid, chunks)… ended by oid 0.
func (a *archReader) blobs(compression string) error {
	for {
		oid, err := a.int()
		if err != nil {
			return err
		}
		if oid == 0 {
			return nil
		}
		if _, err := a.chunks(compression, false); err != nil {
			return err
		}
	}
}

// ReadTOC reads the header and table of contents at the start of a
// custom archive, and nothing after them.
func ReadTOC(r io.Reader) (*ArchiveInfo, error) {
	a := &archReader{r: bufio.NewReaderSize(r, 64<<10)}
	info, err := a.header()
	if err != nil {
		return nil, err
	}
	if _, err := a.toc(info); err != nil {
		return nil, err
	}
	return info, nil
}

// ArchiveHeader reads the header at the start of a custom archive (the
// first few hundred bytes suffice): its format version, and the versions
// of the server dumped and of the pg_dump that wrote it.
func ArchiveHeader(start []byte) (*ArchiveInfo, error) {
	a := &archReader{r: bufio.NewReader(bytes.NewReader(start))}
	return a.header()
}

// PatchOffsets writes each entry's data position into the TOC of an
// archive stored in w (a spool file of the stream WalkArchive read), so
// that pg_restore --jobs seeks straight to each block instead of
// scanning the file for it. Entries without a block are left as they are.
func PatchOffsets(w io.WriterAt, info *ArchiveInfo) error {
	field := make([]byte, 1+info.offSize)
	for _, e := range info.Entries {
		if !e.HasData || e.DataAt == 0 {
			continue
		}
		field[0] = offsetSet
		v := e.DataAt
		for i := 0; i < info.offSize; i++ {
			field[1+i] = byte(v)
			v >>= 8
		}
		if _, err := w.WriteAt(field, e.stateAt); err != nil {
			return fmt.Errorf("patch the data offset of entry %d: %w", e.DumpID, err)
		}
	}
	return nil
}

// String summarises an archive: "1.14 archive of app (PostgreSQL 15.4),
// 42 entries, 7 data blocks".
func (a *ArchiveInfo) String() string {
	v, _, _ := strings.Cut(a.ServerVersion, " ")
	return fmt.Sprintf("%s archive of %s (PostgreSQL %s), %d entries, %d data blocks", a.Version, a.Database, v, len(a.Entries), a.DataBlocks)
}
