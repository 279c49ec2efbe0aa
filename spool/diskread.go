package spool

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// diskReader reads consecutive records straight from the log's segment
// files, a chunk of readChunk bytes at a time.
//
// raft-wal's GetLog costs one 64 KiB pread per record: when the loader is
// behind the in-memory tail (an import, a bulk post, a catch-up after an
// outage) those reads took a fifth of the process's CPU. The loader reads
// in seq order, so the reader keeps its place in the file and parses frames
// out of one large read.
//
// The segment format is raft-wal v0.4.0's (segment/format.go): a 32-byte
// file header (magic, version, base index, segment id, codec), then 8-byte
// aligned frames: entry (type 1, length, payload), index (type 2: the
// segment is sealed, its records end here) and commit (type 3, a CRC). A
// payload is a raft.Log in the binary codec, whose first field is its own
// index: every record read is checked to be the one asked for.
//
// Bytes in a chunk are trusted only up to the records that were committed
// when the chunk was read (trusted): beyond them a file can hold frames of
// a write that a crash cut off, which the next appends overwrite. Anything
// past trusted is read again.
//
// get reports false, and the caller reads through raft-wal, whenever it
// cannot vouch for a record: no segment file or two for one base index, a
// header or frame it does not expect, a record of another index. Not safe
// for concurrent use.
type diskReader struct {
	dir     string
	f       *os.File
	segEnd  uint64 // last index the open segment may hold (next segment's base - 1), 0: none after it
	buf     []byte // the chunk read at bufAt
	bufAt   int64
	pos     int64  // file offset of the next frame
	next    uint64 // index of the next entry frame at pos
	trusted uint64 // records up to it were committed when buf was read
}

// readChunk is how much of a segment file one read takes: a few thousand
// records of a callback's size.
const readChunk = 1 << 20

const (
	segFileHeaderLen  = 32
	segFrameHeaderLen = 8
	segMagic          = 0x58eb6b0d
	segVersion        = 0
	segFrameEntry     = 1
	segFrameIndex     = 2
	segFrameCommit    = 3
	segMaxEntry       = 64 << 20 // raft-wal's MaxEntrySize
)

func newDiskReader(dir string) *diskReader { return &diskReader{dir: dir} }

// close lets go of the open segment file.
func (r *diskReader) close() {
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.buf, r.next = nil, r.buf[:0], 0
}

// get decodes record idx into l. committed is the last index the caller
// knows to be committed (idx <= committed). ok false: read it through
// raft-wal instead (err says why, for the log, when it is not a plain miss).
func (r *diskReader) get(idx, committed uint64, l *raft.Log) (ok bool, err error) {
	defer func() {
		if !ok {
			r.close() // the next get seeks afresh
		}
	}()
	if r.f == nil || idx < r.next {
		if err := r.seek(idx); err != nil {
			return false, err
		}
	}
	for r.next < idx { // forward, from where it is (the next segments included)
		if _, err := r.entry(committed); err != nil {
			return false, err
		}
		r.next++
	}
	payload, err := r.entry(committed)
	if err != nil {
		return false, err
	}
	if err := (&wal.BinaryCodec{}).Decode(payload, l); err != nil {
		return false, fmt.Errorf("spool: decode seq %d from the segment file: %w", idx, err)
	}
	if l.Index != idx {
		return false, fmt.Errorf("spool: the segment file holds seq %d where seq %d was expected", l.Index, idx)
	}
	r.next++
	return true, nil
}

// seek opens the segment that holds idx, at its first record.
func (r *diskReader) seek(idx uint64) error {
	r.close()
	bases, err := segmentBases(r.dir)
	if err != nil {
		return err
	}
	i := sort.Search(len(bases), func(i int) bool { return bases[i].base > idx }) - 1
	if i < 0 {
		return fmt.Errorf("spool: no segment file holds seq %d", idx)
	}
	return r.open(bases, i)
}

// open opens bases[i] and checks its header.
func (r *diskReader) open(bases []segmentFile, i int) error {
	b := bases[i]
	if i > 0 && bases[i-1].base == b.base || i+1 < len(bases) && bases[i+1].base == b.base {
		return fmt.Errorf("spool: two segment files start at seq %d", b.base)
	}
	f, err := os.Open(filepath.Join(r.dir, b.name))
	if err != nil {
		return err
	}
	var h [segFileHeaderLen]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		f.Close()
		return fmt.Errorf("spool: read the header of %s: %w", b.name, err)
	}
	if binary.LittleEndian.Uint32(h[0:4]) != segMagic || h[7] != segVersion ||
		binary.LittleEndian.Uint64(h[8:16]) != b.base || binary.LittleEndian.Uint64(h[24:32]) != wal.CodecBinaryV1 {
		f.Close()
		return fmt.Errorf("spool: %s has a header this reader does not know", b.name)
	}
	r.f, r.buf, r.bufAt, r.pos, r.next, r.trusted = f, r.buf[:0], 0, segFileHeaderLen, b.base, 0
	r.segEnd = 0
	if i+1 < len(bases) {
		r.segEnd = bases[i+1].base - 1
	}
	return nil
}

// entry returns the payload of the entry frame of r.next, which starts at or
// after r.pos (past commit frames), and moves r.pos past it. At the end of
// a sealed segment it goes on in the next one.
func (r *diskReader) entry(committed uint64) ([]byte, error) {
	for {
		if r.segEnd != 0 && r.next > r.segEnd {
			if err := r.nextSegment(); err != nil {
				return nil, err
			}
			continue
		}
		h, err := r.bytes(r.pos, segFrameHeaderLen, committed)
		if err != nil {
			return nil, err
		}
		switch h[0] {
		case segFrameCommit:
			r.pos += segFrameHeaderLen
		case segFrameIndex:
			if err := r.nextSegment(); err != nil {
				return nil, err
			}
		case segFrameEntry:
			n := int64(binary.LittleEndian.Uint32(h[4:8]))
			if n > segMaxEntry {
				return nil, fmt.Errorf("spool: a %d-byte frame for seq %d", n, r.next)
			}
			p, err := r.bytes(r.pos+segFrameHeaderLen, n, committed)
			if err != nil {
				return nil, err
			}
			r.pos += segFrameHeaderLen + n + padTo8(n)
			return p, nil
		default:
			return nil, fmt.Errorf("spool: frame type %d where seq %d was expected", h[0], r.next)
		}
	}
}

// nextSegment moves to the segment that starts at r.next.
func (r *diskReader) nextSegment() error {
	next := r.next
	if err := r.seek(next); err != nil {
		return err
	}
	if r.next != next { // the segment found starts before: none starts at next
		return fmt.Errorf("spool: no segment file starts at seq %d", next)
	}
	return nil
}

// bytes returns n bytes of the file at off, from the chunk when it holds
// them and they were committed when it was read, else from a new read.
func (r *diskReader) bytes(off, n int64, committed uint64) ([]byte, error) {
	if r.next <= r.trusted && off >= r.bufAt && off+n <= r.bufAt+int64(len(r.buf)) {
		return r.buf[off-r.bufAt : off-r.bufAt+n], nil
	}
	if n > readChunk {
		// Larger than a chunk: its own read (committed, as the caller
		// asks only for committed records).
		b := make([]byte, n)
		if _, err := r.f.ReadAt(b, off); err != nil {
			return nil, fmt.Errorf("spool: read the segment file: %w", err)
		}
		return b, nil
	}
	if cap(r.buf) < readChunk {
		r.buf = make([]byte, readChunk)
	}
	r.trusted = committed // read after the caller learnt it
	m, err := r.f.ReadAt(r.buf[:readChunk], off)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("spool: read the segment file: %w", err)
	}
	r.buf, r.bufAt = r.buf[:m], off
	if int64(m) < n {
		return nil, fmt.Errorf("spool: the segment file ends before seq %d", r.next)
	}
	return r.buf[:n], nil
}

func padTo8(n int64) int64 { return (8 - n%8) % 8 }

type segmentFile struct {
	base uint64
	name string
}

// segmentBases lists the log's segment files by base index
// (raft-wal names them "%020d-%016x.wal": base index, segment id).
func segmentBases(dir string) ([]segmentFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []segmentFile
	for _, e := range ents {
		name := e.Name()
		b, _, ok := strings.Cut(strings.TrimSuffix(name, ".wal"), "-")
		if !strings.HasSuffix(name, ".wal") || !ok || len(b) != 20 {
			continue
		}
		base, err := strconv.ParseUint(b, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, segmentFile{base: base, name: name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].base < out[j].base })
	return out, nil
}
