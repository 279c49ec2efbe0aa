package spool

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// varied is record i of the disk-read tests: mostly callback-sized, every
// 97th larger than a read chunk, every 13th a few KiB.
func varied(i int) Record {
	n := 100 + i%300
	switch {
	case i%97 == 0:
		n = readChunk + 4096 + i
	case i%13 == 0:
		n = 5000 + i
	}
	return bigRec(i, n)
}

// fromRaftWal reads seq the way the spool did before the disk reader.
func fromRaftWal(t *testing.T, s *Spool, seq uint64) Entry {
	t.Helper()
	var l raft.Log
	s.logMu.RLock()
	defer s.logMu.RUnlock()
	if err := s.log.GetLog(seq, &l); err != nil {
		t.Fatal(err)
	}
	e, _, err := decodeLog(&l)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Records older than the tail are read from the segment files in chunks and
// come back as raft-wal reads them: across sealed segments, records larger
// than a chunk, reads that start anywhere and go back.
func TestDiskReadsMatchRaftWal(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DedupWindow: noDedup})
	var n int
	for size := 0; size < 3*segmentSize; n++ { // three segments and a bit
		r := varied(n)
		size += len(r.entry)
		mustAppend(t, s, r)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, Options{DedupWindow: noDedup}) // the tail starts empty
	defer s.Close()
	if segs, _ := segmentBases(dir); len(segs) < 3 {
		t.Fatalf("%d segment files, want 3 or more", len(segs))
	}
	for _, start := range []uint64{1, uint64(n) / 2, 7, uint64(n) - 3, 1} {
		var got []Entry
		for from := start; from <= uint64(n); {
			es, err := s.Read(from, 50, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, es...)
			from += uint64(len(es))
		}
		if len(got) != n-int(start)+1 {
			t.Fatalf("from %d: read %d records, want %d", start, len(got), n-int(start)+1)
		}
		for _, e := range got {
			if want := fromRaftWal(t, s, e.Seq); !bytes.Equal(e.Data, want.Data) || e.Key != want.Key || e.Reissue != want.Reissue {
				t.Fatalf("seq %d: the disk reader read %d bytes, raft-wal %d", e.Seq, len(e.Data), len(want.Data))
			}
		}
	}
	if m := s.diskMiss.Load(); m != 0 {
		t.Fatalf("%d reads fell back to raft-wal", m)
	}
}

// A crash can leave frames of a write that was never committed after the
// last commit; the next appends overwrite them. A chunk read before those
// appends holds the old frames: the reader must read them again rather
// than serve the stale copy.
func TestDiskReadDoesNotServeFramesWrittenOver(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DedupWindow: noDedup})
	for i := 1; i <= 10; i++ {
		mustAppend(t, s, rec(i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Frames for seqs 11–15 after the last commit, as a write cut off
	// before its commit frame leaves them.
	segs, err := segmentBases(dir)
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	path := filepath.Join(dir, segs[0].name)
	end := committedEnd(t, path)
	var stale []byte
	for i := 11; i <= 15; i++ {
		stale = appendEntryFrame(t, stale, uint64(i), bigRec(i+100, 200))
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(stale, end); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s = mustOpen(t, dir, Options{DedupWindow: noDedup})
	defer s.Close()
	if got := s.LastSeq(); got != 10 {
		t.Fatalf("last seq %d after recovery, want 10", got)
	}
	if es, err := s.Read(1, 10, 1<<30); err != nil || len(es) != 10 {
		t.Fatalf("read 1-10: %d records, %v", len(es), err) // the chunk now holds the stale frames
	}
	for i := 11; i <= 15; i++ {
		mustAppend(t, s, bigRec(i, 200)) // same sizes: over the stale frames
	}
	s.mu.Lock()
	s.tail = tail{} // as if they had left the tail
	s.mu.Unlock()
	es, err := s.Read(11, 5, 1<<30)
	if err != nil || len(es) != 5 {
		t.Fatalf("read 11-15: %d records, %v", len(es), err)
	}
	for _, e := range es {
		if want := bigRec(int(e.Seq), 200).Data(); !bytes.Equal(e.Data, want) {
			t.Fatalf("seq %d: read %q…, want %q…", e.Seq, e.Data[:8], want[:8])
		}
	}
	if m := s.diskMiss.Load(); m != 0 {
		t.Fatalf("%d reads fell back to raft-wal", m)
	}
}

// committedEnd is the offset after the last commit frame of a segment file.
func committedEnd(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := int64(segFileHeaderLen)
	for off := int64(segFileHeaderLen); off+segFrameHeaderLen <= int64(len(b)); {
		switch b[off] {
		case segFrameEntry:
			n := int64(binary.LittleEndian.Uint32(b[off+4:]))
			off += segFrameHeaderLen + n + padTo8(n)
		case segFrameCommit:
			off += segFrameHeaderLen
			end = off
		default:
			return end
		}
	}
	return end
}

// appendEntryFrame appends an entry frame holding r as seq idx.
func appendEntryFrame(t *testing.T, dst []byte, idx uint64, r Record) []byte {
	t.Helper()
	var payload bytes.Buffer
	l := raft.Log{Index: idx, Data: r.entry, Extensions: make([]byte, offsetLen)}
	if err := (&wal.BinaryCodec{}).Encode(&l, &payload); err != nil {
		t.Fatal(err)
	}
	h := make([]byte, segFrameHeaderLen)
	h[0] = segFrameEntry
	binary.LittleEndian.PutUint32(h[4:], uint32(payload.Len()))
	dst = append(append(dst, h...), payload.Bytes()...)
	return append(dst, make([]byte, padTo8(int64(payload.Len())))...)
}
