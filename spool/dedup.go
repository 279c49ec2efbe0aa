package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/cockroachdb/pebble/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/sstable"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/imbridge/imbridge/message"
)

// The de-duplication index is a pebble database in <dir>/dedup. Keys:
//
//	'k' | bucket (8 bytes, big-endian) | de-duplication key (16 bytes)  → empty
//	"m.count" | bucket                                                 → keys written to the bucket
//	"m.seq"                                                            → last seq whose keys are in the index
//	"m.width"                                                          → bucket width in nanoseconds
//	"m.new"                                                            → present until the caller rebuilt the index
//
// A bucket is window/2 of wall-clock time (Unix nanoseconds / width). A key is
// written to the current bucket and looked up in the current one and the two
// before it, so it is found for at least one window after it was written and
// at most one and a half. Buckets older than that are dropped whole with one
// DeleteRange, so expiry never scans.
//
// New keys first go to an in-memory set (at most flushKeys keys). A full set
// is sorted and written as one sstable that is ingested into pebble in the
// background while the next set fills; lookups check the sets, then pebble.
// Pebble's own memtable (a skiplist) would cost several microseconds per
// lookup once it holds a few hundred thousand keys; sstables cost a bloom
// filter probe per level. When Release needs the keys of the records it
// deletes to be durable and the set is small, the set is written with one
// synced batch instead, so a quiet spool does not make tiny sstables.
//
// Each bucket looked up has a bloom filter in memory (keyfilter.go), fed by
// add: a key no filter may hold is new without asking pebble. At Open the
// filters of the buckets pebble already holds are filled by one scan in the
// background; until it ends, lookups ask pebble for them as before.
//
// After a crash, Open re-adds the keys of the spooled records above "m.seq";
// Release never deletes a record whose key is not durable in pebble.
const (
	dataKeyLen     = 1 + 8 + len(message.DedupKey{})
	flushKeys      = 1 << 16  // keys per in-memory set: about 3 MiB
	ingestMin      = 4 << 10  // smaller sets are written with a batch, not as an sstable
	dedupMemTable  = 4 << 20  // pebble memtable (metadata and small batches); at most two
	dedupCache     = 16 << 20 // block cache besides the memtables: index and bloom filter blocks
	dedupOpenFiles = 256      // table cache bound
	dedupBloomBits = 10       // ~1% false positives per sstable probed
	// dedupL0Tables is pebble's L0CompactionThreshold (its default: 4).
	// Pebble scores L0 as 2 × sublevels / threshold, so L0 is compacted into
	// the level below from 16 sublevels (ingested sets; random keys make
	// each its own sublevel) instead of 2. Every such compaction rewrites
	// that whole level: gathering more sets divides that work, for more
	// bloom filter probes per pebble lookup, which the filters in front
	// (keyfilter.go) mostly spare. A 2M-line import through serve: at 8,
	// 196k -> 204k msg/s over 4; at 32, 215k/202k -> 226k/215k over 8
	// (README).
	dedupL0Tables = 32
	ingestPrefix  = "ingest-"
)

var (
	metaSeq   = []byte("m.seq")
	metaWidth = []byte("m.width")
	metaNew   = []byte("m.new")
	metaCount = []byte("m.count")
)

// keySet is a set of keys not yet in pebble, all for one bucket.
type keySet struct {
	keys   map[message.DedupKey]struct{}
	bucket uint64
	seq    uint64 // every seq up to it has its keys in this set or before
}

type dedupIndex struct {
	db         *pebble.DB
	dir        string
	width      uint64 // bucket width, nanoseconds
	logger     *slog.Logger
	writerOpts sstable.WriterOptions

	mu      sync.Mutex
	flushed *sync.Cond // signalled (with mu) when a flush ends
	closed  bool
	err     error   // a failed flush: the index takes no more writes
	mem     keySet  // filling
	imm     *keySet // being flushed, or nil
	spare   map[message.DedupKey]struct{}
	memSeq  uint64            // highest seq given to add
	durable uint64            // every seq up to it has its keys durable in pebble
	counts  map[uint64]uint64 // keys in pebble per bucket not yet dropped
	expired uint64            // buckets below it were dropped
	top     uint64            // highest bucket used: the current one even if the clock steps back
	isNew   bool
	// filters holds the bloom filter of each bucket keys were added to
	// since Open or pebble held at Open; scanning is the ones the
	// startup scan still fills (it frees those dropped meanwhile).
	filters  map[uint64]*keyFilter
	scanning map[uint64]*keyFilter
	stopScan atomic.Bool
	scanDone sync.WaitGroup

	getKey   [dataKeyLen]byte   // the committer's lookup key
	probe    []uint8            // the committer's: buckets (bit i: buckets[i]) each key must be looked up in
	seeks    atomic.Uint64      // pebble lookups of a key in a bucket, for tests
	sortBuf  []message.DedupKey // the flusher's
	tableSeq int                // the flusher's
}

// openDedup opens (or creates) the index in dir for window. last is the
// spool's last seq: an index that claims to know later seqs belongs to
// another spool and is reset, like one written for another window.
func openDedup(dir string, window time.Duration, last uint64, logger *slog.Logger, holdScan <-chan struct{}) (*dedupIndex, error) {
	// Pebble carves its memtables out of the block cache: size it for both.
	cache := pebble.NewCache(dedupCache + 2*dedupMemTable)
	defer cache.Unref() // the database holds its own reference
	comparer := *pebble.DefaultComparer
	comparer.Split = func(k []byte) int { return len(k) } // bloom filters on whole keys, for SeekPrefixGE
	opts := &pebble.Options{
		Cache:                       cache,
		Comparer:                    &comparer,
		MemTableSize:                dedupMemTable,
		MemTableStopWritesThreshold: 2,
		MaxOpenFiles:                dedupOpenFiles,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      pebbleLogger{logger},
		Levels:                      make([]pebble.LevelOptions, 7),
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(dedupBloomBits)
		opts.Levels[i].FilterType = pebble.TableFilter
		opts.Levels[i].Compression = pebble.NoCompression // random keys: snappy only costs CPU
	}
	opts.L0CompactionThreshold = dedupL0Tables
	opts.L0StopWritesThreshold = 4 * dedupL0Tables // far above: ingest must not stall on compactions
	opts.EnsureDefaults()
	if err := removeIngestLeftovers(dir); err != nil {
		return nil, fmt.Errorf("spool: de-duplication index %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("spool: open de-duplication index %s: %w", dir, err)
	}
	d := &dedupIndex{
		db: db, dir: dir, width: max(uint64(window/2), 1), logger: logger,
		writerOpts: opts.MakeWriterOptions(0, db.FormatMajorVersion().MaxTableFormat()),
		counts:     map[uint64]uint64{},
		mem:        keySet{keys: map[message.DedupKey]struct{}{}},
		filters:    map[uint64]*keyFilter{},
	}
	d.flushed = sync.NewCond(&d.mu)
	if err := d.load(last); err != nil {
		db.Close()
		return nil, fmt.Errorf("spool: de-duplication index %s: %w", dir, err)
	}
	if err := d.startFilterScan(holdScan); err != nil {
		db.Close()
		return nil, fmt.Errorf("spool: de-duplication index %s: %w", dir, err)
	}
	return d, nil
}

// startFilterScan gives every bucket pebble holds keys of a filter, and
// fills them from one pebble iterator in the background. The iterator is a
// snapshot taken after the filters exist: a key added later sets its bits
// through add, and a key added before is in pebble (so in the snapshot) or
// in an in-memory set, which lookups check anyway.
func (d *dedupIndex) startFilterScan(hold <-chan struct{}) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.counts) == 0 {
		return nil
	}
	// Lookups read the current bucket and the two before it, and the
	// current one is never below the highest holding keys: older buckets
	// are only waiting for expire.
	top := slices.Max(slices.Collect(maps.Keys(d.counts)))
	lo := max(top, 2) - 2
	d.scanning = map[uint64]*keyFilter{}
	for b := range d.counts {
		if b < lo {
			continue
		}
		f := newKeyFilter()
		d.filters[b], d.scanning[b] = f, f
	}
	var zero message.DedupKey
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: dataKey(nil, lo, zero), UpperBound: []byte{'k' + 1}})
	if err != nil {
		return err
	}
	d.scanDone.Add(1)
	go d.fillFilters(it, d.scanning, hold)
	return nil
}

// stopFilterScan stops the startup scan and waits for it to end.
func (d *dedupIndex) stopFilterScan() {
	d.stopScan.Store(true)
	d.scanDone.Wait()
}

// fillFilters adds every key it reads to its bucket's filter, then marks
// the filters ready (or frees those expired meanwhile).
func (d *dedupIndex) fillFilters(it *pebble.Iterator, fill map[uint64]*keyFilter, hold <-chan struct{}) {
	defer d.scanDone.Done()
	if hold != nil {
		<-hold
	}
	started := time.Now()
	var n int
	var k message.DedupKey
	for it.First(); it.Valid() && !(n%4096 == 0 && d.stopScan.Load()); it.Next() {
		key := it.Key()
		if len(key) != dataKeyLen {
			continue
		}
		if f := fill[binary.BigEndian.Uint64(key[1:9])]; f != nil {
			copy(k[:], key[9:])
			f.add(&k)
			n++
		}
	}
	stopped := it.Valid()
	err := errors.Join(it.Error(), it.Close())
	d.mu.Lock()
	defer d.mu.Unlock()
	for b, f := range fill {
		switch {
		case d.filters[b] != f:
			f.free() // expired while the scan ran
		case err == nil && !stopped:
			f.ready = true
		}
	}
	d.scanning = nil
	switch {
	case err != nil:
		d.logger.Warn("de-duplication filters not filled: lookups read pebble", "err", err)
	case !stopped:
		d.logger.Info("de-duplication filters filled", "keys", n, "took", time.Since(started).Round(time.Millisecond))
	}
}

// filtersFilled reports whether the startup scan has ended.
func (d *dedupIndex) filtersFilled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.scanning == nil
}

// filterLocked is bucket b's filter, made when keys are first added to b
// (or again, after a clock step back to a bucket already expired). It gets
// the keys of b the in-memory sets hold, since they reach pebble later. A
// bucket pebble already holds keys of (load counts every bucket it holds)
// gets a filter that is never trusted: only a scan could fill it.
func (d *dedupIndex) filterLocked(b uint64) *keyFilter {
	f := d.filters[b]
	if f == nil {
		f = newKeyFilter()
		f.ready = d.counts[b] == 0
		for _, set := range []*keySet{&d.mem, d.imm} {
			if set != nil && set.bucket == b {
				for k := range set.keys {
					f.add(&k)
				}
			}
		}
		d.filters[b] = f
	}
	return f
}

// removeIngestLeftovers deletes sstables a crash left before their ingestion.
func removeIngestLeftovers(dir string) error {
	names, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasPrefix(n.Name(), ingestPrefix) {
			if err := os.Remove(filepath.Join(dir, n.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// load reads the index's metadata, resetting the index when it was just
// created or does not fit this spool.
func (d *dedupIndex) load(last uint64) error {
	width, found, err := d.getUint64(metaWidth)
	if err != nil {
		return err
	}
	seq, _, err := d.getUint64(metaSeq)
	if err != nil {
		return err
	}
	switch {
	case !found:
		return d.reset("created")
	case width != d.width:
		return d.reset(fmt.Sprintf("the window changed from %v to %v", 2*time.Duration(width), 2*time.Duration(d.width)))
	case seq > last:
		return d.reset(fmt.Sprintf("it knows seq %d but the spool ends at %d", seq, last))
	}
	_, d.isNew, err = d.getUint64(metaNew)
	if err != nil {
		return err
	}
	d.durable, d.memSeq = seq, seq
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: metaCount, UpperBound: append(slices.Clip(metaCount), 0xff)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != len(metaCount)+8 || len(v) != 8 {
			continue
		}
		b := binary.BigEndian.Uint64(k[len(metaCount):])
		d.counts[b] = binary.BigEndian.Uint64(v)
		d.top = max(d.top, b)
	}
	if err := it.Close(); err != nil {
		return err
	}
	return d.countUncountedBuckets()
}

// countUncountedBuckets gives a count of 1 to every bucket pebble holds keys
// of but has no count for: a crash between a set's ingestion and its
// count's write leaves such keys (Open re-adds the spool's, not remembered
// ones). Lookups then read the bucket, and its filter is scanned. One seek
// per bucket held.
func (d *dedupIndex) countUncountedBuckets() error {
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'k'}, UpperBound: []byte{'k' + 1}})
	if err != nil {
		return err
	}
	var zero message.DedupKey
	for valid := it.First(); valid; {
		key := it.Key()
		if len(key) < 9 {
			valid = it.Next()
			continue
		}
		b := binary.BigEndian.Uint64(key[1:9])
		if d.counts[b] == 0 {
			d.logger.Warn("de-duplication index holds keys of a bucket without a count (a crash between writes): counting it", "bucket", b)
			d.counts[b] = 1
		}
		d.top = max(d.top, b)
		if b == 1<<64-1 {
			break
		}
		valid = it.SeekGE(dataKey(d.getKey[:0], b+1, zero))
	}
	return errors.Join(it.Error(), it.Close())
}

// reset empties the index and marks it new.
func (d *dedupIndex) reset(why string) error {
	d.logger.Info("de-duplication index starts empty", "why", why)
	b := d.db.NewBatch()
	defer b.Close()
	_ = b.DeleteRange([]byte{0}, []byte{0xff}, nil)
	_ = b.Set(metaWidth, binary.BigEndian.AppendUint64(nil, d.width), nil)
	_ = b.Set(metaNew, binary.BigEndian.AppendUint64(nil, 1), nil)
	if err := d.db.Apply(b, pebble.Sync); err != nil {
		return err
	}
	d.isNew = true
	clear(d.counts)
	return nil
}

func (d *dedupIndex) getUint64(key []byte) (uint64, bool, error) {
	v, closer, err := d.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, false, fmt.Errorf("%s: %d bytes, want 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// bucketLocked is the bucket keys are written to at now.
func (d *dedupIndex) bucketLocked(now time.Time) uint64 {
	return max(uint64(now.UnixNano())/d.width, d.top)
}

func dataKey(dst []byte, bucket uint64, k message.DedupKey) []byte {
	dst = append(dst[:0], 'k')
	dst = binary.BigEndian.AppendUint64(dst, bucket)
	return append(dst, k[:]...)
}

func countKey(bucket uint64) []byte {
	return binary.BigEndian.AppendUint64(slices.Clip(metaCount), bucket)
}

// lookup reports in found[i] whether keys[i] was written within the window
// at now. keys must be sorted (bytewise): the pebble lookups then walk each
// bucket in key order through one iterator, several times cheaper than a Get
// per key and bucket. Only the committer (or Open, before it starts) calls it.
func (d *dedupIndex) lookup(keys []message.DedupKey, found []bool, now time.Time) error {
	var buckets [3]uint64
	n := 0
	d.mu.Lock()
	b := d.bucketLocked(now)
	for i := uint64(0); i < 3 && i <= b; i++ {
		if d.counts[b-i] > 0 { // pebble holds nothing for the others
			buckets[n] = b - i
			n++
		}
	}
	var filters [3]*keyFilter
	for i := range n {
		if f := d.filters[buckets[i]]; f != nil && f.ready {
			filters[i] = f
		}
	}
	probe := slices.Grow(d.probe[:0], len(keys))[:len(keys)]
	d.probe = probe
	var seek uint8 // buckets some key must be looked up in
	for i := range keys {
		k := &keys[i]
		found[i] = found[i] || d.mem.has(*k, b) || (d.imm != nil && d.imm.has(*k, b))
		probe[i] = 0
		if found[i] {
			continue
		}
		for j := range n {
			if filters[j] == nil || filters[j].mayHold(k) {
				probe[i] |= 1 << j
			}
		}
		seek |= probe[i]
	}
	d.mu.Unlock()
	if seek == 0 {
		return nil
	}
	// Pebble skips the bloom filters of the last level unless asked, as it
	// expects lookups there to hit; ours mostly miss.
	it, err := d.db.NewIter(&pebble.IterOptions{UseL6Filters: true})
	if err != nil {
		return fmt.Errorf("de-duplication lookup: %w", err)
	}
	for i := n - 1; i >= 0; i-- { // oldest bucket first: every seek moves forward
		for j, k := range keys {
			if found[j] || probe[j]&(1<<i) == 0 {
				continue
			}
			d.seeks.Add(1)
			if it.SeekPrefixGE(dataKey(d.getKey[:0], buckets[i], k)) {
				found[j] = true
			}
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("de-duplication lookup: %w", err)
	}
	return nil
}

// has reports whether the set holds k and its bucket is still looked up at
// bucket b.
func (s *keySet) has(k message.DedupKey, b uint64) bool {
	if s.bucket+2 < b {
		return false
	}
	_, ok := s.keys[k]
	return ok
}

// add remembers keys in the current bucket, and that every seq up to seq
// (when not 0) has its keys added.
func (d *dedupIndex) add(keys []message.DedupKey, seq uint64, now time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.writableLocked(); err != nil {
		return err
	}
	b := d.bucketLocked(now)
	d.top = b
	if len(d.mem.keys) > 0 && d.mem.bucket != b {
		if err := d.rotateLocked(); err != nil {
			return err
		}
	}
	d.mem.bucket = b
	f := d.filterLocked(b)
	for i, k := range keys {
		f.add(&keys[i])
		d.mem.keys[k] = struct{}{}
		if len(d.mem.keys) >= flushKeys {
			if err := d.rotateLocked(); err != nil {
				return err
			}
			// rotateLocked may have waited, unlocked: expire or close may
			// have dropped (and freed) the filter meanwhile.
			if err := d.writableLocked(); err != nil {
				return err
			}
			d.mem.bucket = b
			f = d.filterLocked(b)
		}
	}
	d.memSeq = max(d.memSeq, seq)
	return nil
}

func (d *dedupIndex) writableLocked() error {
	if d.closed {
		return ErrClosed
	}
	if d.err != nil {
		return fmt.Errorf("de-duplication index: %w", d.err)
	}
	return nil
}

// rotateLocked hands the filling set to a flush, after the previous flush
// ended.
func (d *dedupIndex) rotateLocked() error {
	for d.imm != nil && d.err == nil {
		d.flushed.Wait()
	}
	if d.err != nil {
		return fmt.Errorf("de-duplication index: %w", d.err)
	}
	if len(d.mem.keys) == 0 {
		return nil
	}
	imm := d.mem
	imm.seq = d.memSeq
	d.imm = &imm
	next := d.spare
	if next == nil {
		next = make(map[message.DedupKey]struct{}, len(imm.keys))
	}
	d.mem, d.spare = keySet{keys: next}, nil
	go d.flush(d.imm)
	return nil
}

// flush writes a set as one sstable, ingests it and records its seq.
func (d *dedupIndex) flush(s *keySet) {
	err := d.ingest(s)
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.flushed.Broadcast()
	if err == nil {
		d.counts[s.bucket] += uint64(len(s.keys))
		b := d.db.NewBatch()
		_ = b.Set(countKey(s.bucket), binary.BigEndian.AppendUint64(nil, d.counts[s.bucket]), nil)
		_ = b.Set(metaSeq, binary.BigEndian.AppendUint64(nil, s.seq), nil)
		// Synced, so that "m.seq" never lags behind what Release relies on.
		err = d.db.Apply(b, pebble.Sync)
		b.Close()
	}
	if err != nil {
		// The set stays in place for lookups; the index takes no more writes
		// and the spool refuses ingest until a restart re-adds the keys.
		d.err = fmt.Errorf("flush: %w", err)
		d.logger.Error("de-duplication index flush failed", "err", err)
		return
	}
	d.durable = max(d.durable, s.seq)
	clear(s.keys)
	d.spare, d.imm = s.keys, nil
}

func (d *dedupIndex) ingest(s *keySet) error {
	keys := d.sortBuf[:0]
	for k := range s.keys {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b message.DedupKey) int { return bytes.Compare(a[:], b[:]) })
	d.sortBuf = keys
	d.tableSeq++
	path := filepath.Join(d.dir, fmt.Sprintf("%s%d", ingestPrefix, d.tableSeq))
	f, err := vfs.Default.Create(path)
	if err != nil {
		return err
	}
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), d.writerOpts)
	var buf [dataKeyLen]byte
	for _, k := range keys {
		if err = w.Set(dataKey(buf[:0], s.bucket, k), nil); err != nil {
			break
		}
	}
	if err = errors.Join(err, w.Close()); err == nil { // Close syncs the file
		err = d.db.Ingest([]string{path}) // which pebble links, then removes
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// persist makes durable the keys of every seq up to upTo (or, with all, of
// every key added, remembered ones too) and returns the last seq whose keys
// are durable.
func (d *dedupIndex) persist(upTo uint64, all bool) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.writableLocked(); err != nil {
		return d.durable, err
	}
	for d.durable < min(upTo, d.memSeq) || (all && (d.imm != nil || len(d.mem.keys) > 0 || d.durable < d.memSeq)) {
		switch {
		case d.err != nil:
			return d.durable, fmt.Errorf("de-duplication index: %w", d.err)
		case d.imm != nil:
			d.flushed.Wait()
		case len(d.mem.keys) >= ingestMin:
			if err := d.rotateLocked(); err != nil {
				return d.durable, err
			}
		default:
			if err := d.writeMemLocked(); err != nil {
				return d.durable, err
			}
		}
	}
	return d.durable, nil
}

// writeMemLocked writes the filling set, and its seq, with one synced
// batch.
func (d *dedupIndex) writeMemLocked() error {
	b := d.db.NewBatch()
	defer b.Close()
	var buf [dataKeyLen]byte
	for k := range d.mem.keys {
		_ = b.Set(dataKey(buf[:0], d.mem.bucket, k), nil, nil)
	}
	n := d.counts[d.mem.bucket] + uint64(len(d.mem.keys))
	if len(d.mem.keys) > 0 {
		_ = b.Set(countKey(d.mem.bucket), binary.BigEndian.AppendUint64(nil, n), nil)
	}
	_ = b.Set(metaSeq, binary.BigEndian.AppendUint64(nil, d.memSeq), nil)
	if err := d.db.Apply(b, pebble.Sync); err != nil {
		return fmt.Errorf("de-duplication index write: %w", err)
	}
	if len(d.mem.keys) > 0 {
		d.counts[d.mem.bucket] = n
	}
	clear(d.mem.keys)
	d.durable = d.memSeq
	return nil
}

// expire drops the buckets no lookup at now reads any more: one range
// tombstone when a bucket ages out, nothing otherwise.
func (d *dedupIndex) expire(now time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.writableLocked(); err != nil {
		return err
	}
	b := d.bucketLocked(now)
	if b < 2 || b-2 <= d.expired {
		return nil
	}
	lo := b - 2
	batch := d.db.NewBatch()
	defer batch.Close()
	var zero message.DedupKey
	_ = batch.DeleteRange(dataKey(nil, 0, zero), dataKey(nil, lo, zero), nil)
	for bk := range d.counts {
		if bk < lo {
			_ = batch.Delete(countKey(bk), nil)
		}
	}
	if err := d.db.Apply(batch, pebble.NoSync); err != nil {
		return fmt.Errorf("de-duplication index expiry: %w", err)
	}
	for bk := range d.counts {
		if bk < lo {
			delete(d.counts, bk)
		}
	}
	for bk, f := range d.filters {
		if bk < lo {
			delete(d.filters, bk)
			if d.scanning[bk] != f { // else the scan frees it when it ends
				f.free()
			}
		}
	}
	d.expired = lo
	return nil
}

// isNewIndex reports whether the index awaits a rebuild by the caller.
func (d *dedupIndex) isNewIndex() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.isNew
}

// lastKnown is the last seq whose keys the index holds.
func (d *dedupIndex) lastKnown() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.memSeq
}

// markNew marks the index as missing keys the caller must Remember again.
func (d *dedupIndex) markNew() error {
	if err := d.db.Set(metaNew, binary.BigEndian.AppendUint64(nil, 1), pebble.Sync); err != nil {
		return fmt.Errorf("de-duplication index: %w", err)
	}
	d.mu.Lock()
	d.isNew = true
	d.mu.Unlock()
	return nil
}

// rebuilt makes every key added durable and clears the mark that the index
// was created empty.
func (d *dedupIndex) rebuilt() error {
	if _, err := d.persist(0, true); err != nil {
		return err
	}
	if err := d.db.Delete(metaNew, pebble.Sync); err != nil {
		return fmt.Errorf("de-duplication index: %w", err)
	}
	d.mu.Lock()
	d.isNew = false
	d.mu.Unlock()
	return nil
}

// estimate is the number of keys written to the buckets a lookup at now
// reads: exact but for keys remembered twice (each Remember writes).
func (d *dedupIndex) estimate(now time.Time) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.bucketLocked(now)
	var n int
	for bk, c := range d.counts {
		if bk+2 >= b {
			n += int(c)
		}
	}
	for _, s := range []*keySet{&d.mem, d.imm} {
		if s != nil && s.bucket+2 >= b {
			n += len(s.keys)
		}
	}
	return n
}

// close makes every key added durable and closes the database.
func (d *dedupIndex) close() error {
	_, err := d.persist(0, true)
	d.mu.Lock()
	for d.imm != nil && d.err == nil { // a flush of a failed index may still run
		d.flushed.Wait()
	}
	d.closed = true
	d.mu.Unlock()
	d.stopFilterScan()
	d.mu.Lock()
	for bk, f := range d.filters {
		delete(d.filters, bk)
		f.free()
	}
	d.mu.Unlock()
	if errors.Is(err, ErrClosed) {
		err = nil
	}
	return errors.Join(err, d.db.Close())
}

// pebbleLogger sends pebble's messages to the spool's logger.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "dedup-index")
}

// Fatalf is called by pebble on a broken invariant; it must not return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "dedup-index")
	panic("pebble: " + msg)
}
