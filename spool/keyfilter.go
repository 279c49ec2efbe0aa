package spool

import (
	"encoding/binary"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/imbridge/imbridge/message"
)

// keyFilter is a bloom filter over the de-duplication keys of one bucket,
// in front of pebble: a key it does not hold is not in the bucket, so the
// lookup skips pebble's level iterators for it (a bloom probe and a table
// lookup per level, 3–4 µs per new message under load). It is a register-
// blocked filter: each key sets three bits of one 64-bit word, so a probe
// costs one cache miss.
//
// Its size is fixed (filterBytes), so memory does not grow with the keys:
// it answers "maybe" more often as a bucket fills (about 5 % of new keys
// at 10 million keys, 50 % at 40 million) and those keys are looked up in
// pebble as before. The words live outside the Go heap (an anonymous
// mapping), so they do not count against the collector's soft memory
// limit.
type keyFilter struct {
	words []uint64
	mem   []byte // the mapping behind words, nil when words is on the heap
	// ready is true once the filter holds every key of its bucket that
	// pebble holds: only then may a lookup trust a "no". Guarded by
	// dedupIndex.mu.
	ready bool
}

const (
	filterWordBits = 20                  // 2^20 words
	filterBytes    = 8 << filterWordBits // 8 MiB per bucket; at most three buckets are looked up
	filterShift    = 64 - filterWordBits // the word index is the hash's top 20 bits, the bit indices its low 18
)

func newKeyFilter() *keyFilter {
	f := &keyFilter{}
	mem, err := syscall.Mmap(-1, 0, filterBytes, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err == nil {
		f.mem = mem
		f.words = unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(mem))), filterBytes/8)
	} else {
		f.words = make([]uint64, filterBytes/8)
	}
	return f
}

// free gives the filter's memory back. The filter must not be used after.
func (f *keyFilter) free() {
	if f.mem != nil {
		_ = syscall.Munmap(f.mem)
	}
	f.mem, f.words = nil, nil
}

// filterProbe is the word and the bits of k. The key is already a hash
// (FNV-128a), but FNV's bits are not evenly mixed: both halves go through
// a 64-bit finaliser.
func filterProbe(k *message.DedupKey) (int, uint64) {
	h := mix64(binary.LittleEndian.Uint64(k[:8]) ^ mix64(binary.LittleEndian.Uint64(k[8:])))
	bits := uint64(1)<<(h&63) | uint64(1)<<(h>>6&63) | uint64(1)<<(h>>12&63)
	return int(h >> filterShift), bits
}

// mix64 is MurmurHash3's finaliser.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// add records k. It may run beside other adds and probes.
func (f *keyFilter) add(k *message.DedupKey) {
	w, bits := filterProbe(k)
	atomic.OrUint64(&f.words[w], bits)
}

// mayHold reports whether k may have been added: false means it was not.
func (f *keyFilter) mayHold(k *message.DedupKey) bool {
	w, bits := filterProbe(k)
	return atomic.LoadUint64(&f.words[w])&bits == bits
}
