package store

import "math/rand/v2"

// identities is the set of Yunxin identity hashes an export window has
// written: open addressing with linear probing over a table twice the
// window's size, allocated once per export and cleared per window. A Go
// map of the same keys was an eighth of the export's CPU, nearly all of it
// cache misses in its probes; here a probe is one load, usually in the
// slot the key hashes to.
type identities struct {
	slots []uint64 // 0 is an empty slot; the key 0 is kept in zero
	mask  uint64
	seed  uint64 // mixed into the slot choice: keys crafted to share their low bits do not share a slot run
	zero  bool
	n     int
	sink  uint64 // what touch read, kept so the reads are not optimised away
}

// newIdentities holds up to n keys at a load of at most one half.
func newIdentities(n int) *identities {
	size := 1
	for size < 2*n {
		size <<= 1
	}
	return &identities{slots: make([]uint64, size), mask: uint64(size - 1), seed: rand.Uint64() | 1}
}

// slot is where key's probe starts: the high bits of a seeded
// multiplicative hash (cityHash64 is not seeded, and its inputs come from
// the providers' callbacks).
func (s *identities) slot(key uint64) uint64 {
	return ((key ^ s.seed) * 0x9e3779b97f4a7c15 >> 32) & s.mask
}

// add adds key and reports whether it was new.
func (s *identities) add(key uint64) bool {
	if key == 0 {
		was := s.zero
		s.zero = true
		return !was
	}
	for i := s.slot(key); ; i = (i + 1) & s.mask {
		switch s.slots[i] {
		case key:
			return false
		case 0:
			s.slots[i] = key
			if s.n++; s.n > len(s.slots)/2 { // more keys than it was made for: never in a window, but never a full table either
				s.grow()
			}
			return true
		}
	}
}

// grow doubles the table.
func (s *identities) grow() {
	old := s.slots
	s.slots, s.mask, s.n = make([]uint64, 2*len(old)), uint64(2*len(old)-1), 0
	for _, k := range old {
		if k != 0 {
			s.add(k)
		}
	}
}

// touch reads the slots where the batch's probes start, all at once: the
// loads do not depend on each other, so the CPU overlaps their cache
// misses, and the adds that follow find their slots in cache instead of
// waiting for memory one row at a time.
func (s *identities) touch(batch []exportRow) {
	var sum uint64
	for i := range batch {
		sum += s.slots[s.slot(batch[i].identity)]
	}
	s.sink = sum
}

// reset empties the set.
func (s *identities) reset() {
	clear(s.slots)
	s.zero = false
	s.n = 0
}
