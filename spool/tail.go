package spool

import (
	"encoding/binary"

	"github.com/hashicorp/raft"
)

// maxTailBytes bounds the in-memory copy of recent records (rows, headers
// and bookkeeping); older ones are read back from the log.
const maxTailBytes = 8 << 20

// tailEntryCost is what the tail spends on a record besides the record's
// buffer: its entry, twice over for the slack of a growing slice.
const tailEntryCost = 2 * 32

// tail holds the most recent records, contiguous seqs ending at the last
// one, so that the loader reads them from memory and Release finds the
// header of the first record it keeps without a read. Its size is bounded
// by maxTailBytes, whatever the number of records.
type tail struct {
	first   uint64 // seq of entries[0]
	entries []tailEntry
	bytes   int
}

type tailEntry struct {
	data []byte // flags | key | row: the Record's own buffer
	off  uint64
}

func (e tailEntry) cost() int { return cap(e.data) + tailEntryCost }

// add appends just-written records, dropping the oldest past maxTailBytes.
func (t *tail) add(logs []raft.Log) {
	if len(logs) == 0 {
		return
	}
	if len(t.entries) > 0 && t.first+uint64(len(t.entries)) != logs[0].Index {
		t.dropFront(len(t.entries))
	}
	if len(t.entries) == 0 {
		t.first = logs[0].Index
	}
	for _, l := range logs {
		e := tailEntry{data: l.Data, off: binary.BigEndian.Uint64(l.Extensions)}
		t.entries = append(t.entries, e)
		t.bytes += e.cost()
	}
	drop, over := 0, t.bytes-maxTailBytes
	for over > 0 && drop < len(t.entries) {
		over -= t.entries[drop].cost()
		drop++
	}
	t.dropFront(drop)
}

// dropFront forgets the n oldest records. Re-slicing from the front is O(n);
// the dropped prefix of the array is garbage once append next reallocates,
// which happens before the array holds more than twice the live entries.
func (t *tail) dropFront(n int) {
	n = min(n, len(t.entries))
	if n == 0 {
		return
	}
	for _, e := range t.entries[:n] {
		t.bytes -= e.cost()
	}
	clear(t.entries[:n]) // let the records' buffers go
	t.entries = t.entries[n:]
	t.first += uint64(n)
	if len(t.entries) == 0 {
		t.entries, t.bytes = nil, 0
	}
}

// dropThrough forgets records up to and including seq.
func (t *tail) dropThrough(seq uint64) {
	if len(t.entries) > 0 && seq >= t.first {
		t.dropFront(int(min(seq-t.first+1, uint64(len(t.entries)))))
	}
}

// holds reports whether seq is in the tail.
func (t *tail) holds(seq uint64) bool {
	return len(t.entries) > 0 && seq >= t.first && seq-t.first < uint64(len(t.entries))
}

// header returns the header of seq if the tail holds it.
func (t *tail) header(seq uint64) (header, bool) {
	if !t.holds(seq) {
		return header{}, false
	}
	e := t.entries[seq-t.first]
	return header{off: e.off, size: int64(len(e.data) + offsetLen)}, true
}

// read returns up to max records from seq from, stopping once maxBytes of
// rows are read. from must be held.
func (t *tail) read(from uint64, max, maxBytes int) []Entry {
	var out []Entry
	size := 0
	for i, e := range t.entries[from-t.first:] {
		if len(out) >= max || size >= maxBytes {
			break
		}
		out = append(out, tailToEntry(from+uint64(i), e))
		size += len(e.data) - dataHeader
	}
	return out
}

func tailToEntry(seq uint64, e tailEntry) Entry {
	out := Entry{Seq: seq, Data: e.data[dataHeader:], Reissue: e.data[0]&flagReissue != 0}
	copy(out.Key[:], e.data[1:dataHeader])
	return out
}
