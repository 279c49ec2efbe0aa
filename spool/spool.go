// Package spool is the durable write-ahead log between the callback handlers
// and ClickHouse. Append returns only once its records are fsync'd;
// concurrent appends share one fsync (group commit). One committer goroutine
// is the sequencer: it drops duplicates, refuses what does not fit and
// assigns each accepted record the next seq; a writer goroutine writes what
// was sequenced with one fsync, while the next group is being sequenced, and
// answers in seq order. The loader reads records back in seq order and
// releases them once ClickHouse holds them.
//
// The log itself is github.com/hashicorp/raft-wal: segment files of
// CRC-checked frames in which a torn tail after a crash is detected and
// ignored on recovery, prefix truncation that deletes whole segments, and one
// fsync per append batch. The raft log index is the seq. The layout of a
// record is described in format.go.
//
// # Memory
//
// Nothing the spool keeps in memory grows with the number of records or of
// remembered keys:
//
//   - the used-bytes figure is end(last) − offset(first), both read from
//     record headers (each record carries the running offset of the bytes
//     spooled before it), so Release costs one header read whatever remains;
//   - the tail of recent records kept for the loader is at most 8 MiB;
//   - the committer's scratch space is bounded by the largest group
//     (maxGroup requests), and at most 2×maxCoalesce groups are in flight;
//   - the de-duplication index (dedup.go) is a pebble database in
//     <dir>/dedup plus the keys not yet written to it. Its budget: up to
//     three sets of 64 Ki keys in memory (the one filling, the one being
//     written as an sstable, a spare; about 3 MiB each), a 24 MiB pebble
//     cache shared by two 4 MiB memtables and 16 MiB of index and bloom
//     filter blocks, at most 256 open sstables and one compaction at a time:
//     about 45 MiB, whether it holds a thousand keys or a hundred million.
//     Past about ten million keys the bloom filters outgrow the block cache
//     and lookups start reading them from the page cache. On disk a key
//     takes about 40 bytes, for one to one and a half windows.
package spool

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/imbridge/imbridge/message"
)

// Errors returned by Append.
var (
	// ErrFull means the spool holds spool.max_bytes of records not yet
	// loaded; the caller should answer 503 so that providers retry.
	ErrFull = errors.New("spool full: ClickHouse is behind or down and the spool reached spool.max_bytes")
	// ErrClosed means the spool is shutting down.
	ErrClosed = errors.New("spool closed")
	// ErrFailed means a write to disk failed; nothing more is accepted until
	// the process restarts and recovers the log.
	ErrFailed = errors.New("spool write failed")
)

// Result says what Append did with a request's records.
type Result struct {
	Accepted   int // new records now durable
	Duplicates int // records already seen within the de-duplication window
	// Dropped lists the positions (in the appended slice) of the duplicates.
	Dropped  []int
	FirstSeq uint64
	LastSeq  uint64
}

// Options configures Open.
type Options struct {
	Dir      string
	MaxBytes int64 // room for records not yet loaded (see MarkLoaded); 0 means no limit
	// DedupWindow is how long a key is remembered: a record whose key was
	// appended or remembered at least this long ago (at most one and a half
	// times) is dropped as a duplicate. 0 disables de-duplication.
	DedupWindow time.Duration
	Logger      *slog.Logger

	now         func() time.Time // the clock of the de-duplication window; tests set it
	reopenEvery int64            // tests set it; 0 = the constant reopenEvery
	holdScan    <-chan struct{}  // tests: the de-duplication filters' startup scan waits for it
}

// Stats are counters for metrics.
type Stats struct {
	Bytes      int64 // held by spooled records: Σ RecordOverhead+len(row)
	Unloaded   int64 // of Bytes, those not yet marked loaded: what counts against MaxBytes
	FirstSeq   uint64
	LastSeq    uint64
	Records    uint64 // accepted since start
	Duplicates uint64
	Refused    uint64 // refused because full
	Commits    uint64 // fsync'd batches
	Reopens    uint64 // times the log was closed and opened again to let go of written segments
	// DedupKeys estimates the keys remembered for de-duplication (one to one
	// and a half windows): it counts keys as they are written to the index,
	// so a key remembered twice counts twice.
	DedupKeys int
}

type pending struct {
	recs []Record
	res  Result
	err  error
	done chan struct{}
}

// Spool is an open spool. Its methods are safe for concurrent use.
type Spool struct {
	// logMu is held shared around every use of log and exclusively while
	// the writer reopens it (see reopenEvery).
	logMu    sync.RWMutex
	log      *wal.WAL
	dir      string
	diskMu   sync.Mutex  // guards disk
	disk     *diskReader // reads of records older than the tail, in seq order; nil once closed
	diskMiss atomic.Uint64
	written  int64 // the writer's: bytes of the writes since log was opened
	reopenAt int64 // reopen the log once written reaches it
	meta     *metadb.BoltMetaDB
	lock     *os.File    // flock'd: one process per spool
	dedup    *dedupIndex // nil when de-duplication is off
	logger   *slog.Logger
	maxBytes int64
	now      func() time.Time
	reqs     chan *pending
	changed  chan struct{}
	quit     chan struct{}
	stopped  chan struct{}

	// Append holds closeMu shared while it queues a request; Close takes it
	// exclusively to set closed, so that nothing is queued once the
	// committer may have stopped draining.
	closeMu   sync.RWMutex
	closed    bool
	closeOnce sync.Once
	closeErr  error

	releaseMu sync.Mutex // one Release at a time

	mu     sync.Mutex // guards start, end, failed, tail, reserved*; first and last change under it
	start  uint64     // offset of the first spooled record
	end    uint64     // offset after the last one: the spool holds end−start bytes
	loaded uint64     // offset after the last record marked loaded (MarkLoaded)
	failed error
	tail   tail

	first    atomic.Uint64 // first seq in the log, 0 when it holds none
	last     atomic.Uint64 // last durable seq, or the floor
	released atomic.Uint64 // highest seq released
	records  atomic.Uint64
	dups     atomic.Uint64
	refused  atomic.Uint64
	commits  atomic.Uint64
	reopens  atomic.Uint64
	full     atomic.Bool // an append was refused for room and none fitted since

	// What the committer reserved for batches on their way to the writer:
	// the last seq and the offset after it (equal to last and end when
	// nothing is in flight).
	reservedLast uint64
	reservedEnd  uint64

	// The group commit is a pipeline: the committer sequences a group (see
	// sequence) while the writer fsyncs the previous one (see write).
	writes     chan *batch // to the writer, in order
	free       chan *batch // batches to reuse
	sequencing atomic.Bool // the committer is sequencing a batch
	inflightMu sync.Mutex
	inflight   map[message.DedupKey]struct{} // keys of batches not yet in the index

	// The committer's scratch space, reused from one group to the next.
	inGroup map[message.DedupKey]struct{}
	known   map[message.DedupKey]struct{}
	keys    []message.DedupKey
	found   []bool
}

// maxGroup bounds how many requests share one fsync.
const maxGroup = 1024

// dedupDir is the de-duplication index's directory inside the spool's.
const dedupDir = "dedup"

// Open opens (or creates) the spool in opts.Dir, recovers the log after a
// crash, and opens the de-duplication index, re-adding the keys of spooled
// records it may have lost in a crash.
func Open(opts Options) (*Spool, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.DedupWindow < 0 {
		return nil, fmt.Errorf("spool: negative de-duplication window %v", opts.DedupWindow)
	}
	now := opts.now
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	hasFormat, err := readFormat(opts.Dir)
	if err != nil {
		lock.Close()
		return nil, err
	}
	// raft-wal's Close leaves its meta store open (and its file locked), so
	// the spool owns the meta store and closes it itself.
	meta := &metadb.BoltMetaDB{}
	log, err := openLog(opts.Dir, meta, logger)
	if err != nil {
		meta.Close()
		lock.Close()
		return nil, fmt.Errorf("spool: open %s: %w", opts.Dir, err)
	}
	s := &Spool{
		log:      log,
		dir:      opts.Dir,
		disk:     newDiskReader(opts.Dir),
		reopenAt: cmp.Or(opts.reopenEvery, reopenEvery),
		meta:     meta,
		lock:     lock,
		logger:   logger,
		maxBytes: opts.MaxBytes,
		now:      now,
		reqs:     make(chan *pending, maxGroup),
		changed:  make(chan struct{}, 1),
		quit:     make(chan struct{}),
		stopped:  make(chan struct{}),
		writes:   make(chan *batch, maxCoalesce),
		free:     make(chan *batch, 2*maxCoalesce),
		inflight: map[message.DedupKey]struct{}{},
		inGroup:  map[message.DedupKey]struct{}{},
		known:    map[message.DedupKey]struct{}{},
	}
	fail := func(err error) (*Spool, error) {
		if s.dedup != nil {
			s.dedup.close()
		}
		log.Close()
		meta.Close()
		lock.Close()
		return nil, err
	}
	first, err := log.FirstIndex()
	if err != nil {
		return fail(fmt.Errorf("spool: %w", err))
	}
	last, err := log.LastIndex()
	if err != nil {
		return fail(fmt.Errorf("spool: %w", err))
	}
	if !hasFormat {
		if last > 0 {
			return fail(oldFormatError(opts.Dir, first, last))
		}
		if err := writeFormat(opts.Dir); err != nil {
			return fail(err)
		}
	}
	if last > 0 && first > 0 {
		hf, err := s.readHeader(first)
		if err != nil {
			return fail(err)
		}
		hl, err := s.readHeader(last)
		if err != nil {
			return fail(err)
		}
		s.start, s.end = hf.off, hl.end()
		s.first.Store(first)
		s.released.Store(first - 1)
		logger.Info("spool recovered", "first_seq", first, "last_seq", last, "bytes", s.end-s.start)
	}
	s.last.Store(last)
	dir := filepath.Join(opts.Dir, dedupDir)
	if opts.DedupWindow > 0 {
		if s.dedup, err = openDedup(dir, opts.DedupWindow, last, logger, opts.holdScan); err != nil {
			return fail(err)
		}
		if err := s.catchUpIndex(); err != nil {
			return fail(err)
		}
	} else if _, err := os.Stat(dir); err == nil {
		// An index left behind would miss the keys appended while
		// de-duplication is off; drop it, so that turning it back on starts
		// from an index that says it is new.
		logger.Info("de-duplication is off: removing its index", "dir", dir)
		if err := os.RemoveAll(dir); err != nil {
			return fail(fmt.Errorf("spool: %w", err))
		}
	}
	s.reservedLast, s.reservedEnd = s.last.Load(), s.end
	for range cap(s.free) {
		s.free <- &batch{}
	}
	go s.commitLoop()
	go s.writeLoop()
	return s, nil
}

// catchUpIndex re-adds the keys of the spooled records the index may have
// lost in a crash: those after the last seq it durably knows.
func (s *Spool) catchUpIndex() error {
	d := s.dedup
	first, last := s.first.Load(), s.last.Load()
	known := d.lastKnown()
	if first == 0 || known >= last {
		return nil
	}
	if known+1 < first && !d.isNewIndex() {
		// Released records' keys were never durable in the index: only a
		// rebuild from ClickHouse can bring them back.
		s.logger.Warn("de-duplication index misses released records; marking it for a rebuild", "index_seq", known, "first_seq", first)
		if err := d.markNew(); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	from := max(known+1, first)
	started := time.Now()
	keys := make([]message.DedupKey, 0, 4096)
	var l raft.Log
	for seq := from; seq <= last; seq++ {
		if err := s.log.GetLog(seq, &l); err != nil {
			return fmt.Errorf("spool: re-index seq %d: %w", seq, err)
		}
		e, _, err := decodeLog(&l)
		if err != nil {
			return fmt.Errorf("spool: re-index: %w", err)
		}
		if !e.Reissue {
			keys = append(keys, e.Key)
		}
		if len(keys) == cap(keys) || seq == last {
			if err := d.add(keys, seq, s.now()); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			keys = keys[:0]
		}
	}
	s.logger.Info("de-duplication index caught up with the spool", "from_seq", from, "last_seq", last,
		"took", time.Since(started).Round(time.Millisecond))
	return nil
}

// readHeader reads the header of a record from the log.
func (s *Spool) readHeader(seq uint64) (header, error) {
	var l raft.Log
	s.logMu.RLock()
	err := s.log.GetLog(seq, &l)
	s.logMu.RUnlock()
	if err != nil {
		return header{}, fmt.Errorf("spool: read seq %d: %w", seq, err)
	}
	_, h, err := decodeLog(&l)
	if err != nil {
		return header{}, fmt.Errorf("spool: %w", err)
	}
	return h, nil
}

// SetFloor makes the next seq larger than floor, the highest seq ClickHouse
// already holds. It must be called before the first Append. A spool that
// still holds records below the floor does not belong to that database.
// On an empty spool, afterwards LastSeq and Released are floor and FirstSeq
// is 0.
func (s *Spool) SetFloor(floor uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.last.Load()
	if floor <= last {
		return nil
	}
	if s.first.Load() != 0 || s.reservedLast != last {
		return fmt.Errorf("spool ends at seq %d but ClickHouse already holds seq %d: this data_dir belongs to another database", max(last, s.reservedLast), floor)
	}
	s.last.Store(floor)
	s.reservedLast = floor
	storeMax(&s.released, floor)
	return nil
}

// Remember marks keys as seen (messages ClickHouse already holds), so that a
// re-delivery within the window is dropped. Remembered keys are durable
// once written to pebble: at the latest at DedupIndexRebuilt or Close.
func (s *Spool) Remember(keys ...message.DedupKey) error {
	if s.dedup == nil {
		return nil
	}
	if err := s.dedup.add(keys, 0, s.now()); err != nil {
		return fmt.Errorf("spool: remember: %w", err)
	}
	return nil
}

// DedupIndexIsNew reports that the de-duplication index was created empty
// (at this Open, or at an earlier one whose rebuild was never confirmed with
// DedupIndexRebuilt) while the caller may hold older messages, e.g. a fresh
// data_dir against a ClickHouse that already has messages, or a changed
// window. The caller should then Remember the keys of the messages it
// received within the window. It is false when de-duplication is off.
func (s *Spool) DedupIndexIsNew() bool {
	return s.dedup != nil && s.dedup.isNewIndex()
}

// DedupIndexRebuilt records (durably) that the caller finished remembering
// the keys of its messages within the window, so that DedupIndexIsNew is
// false from the next Open on. Until it is called, every Open reports the
// index as new: a rebuild cut short by a crash is redone.
func (s *Spool) DedupIndexRebuilt() error {
	if s.dedup == nil {
		return nil
	}
	if err := s.dedup.rebuilt(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// Append makes recs durable and returns once they are fsync'd, or with an
// error and none of them spooled. Duplicates are dropped.
func (s *Spool) Append(ctx context.Context, recs []Record) (Result, error) {
	for i, r := range recs {
		if len(r.entry) < dataHeader {
			return Result{}, fmt.Errorf("spool: record %d was not made with NewRecord or NewReissue", i)
		}
	}
	p := &pending{recs: recs, done: make(chan struct{})}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return Result{}, ErrClosed
	}
	select {
	case s.reqs <- p:
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return Result{}, ctx.Err()
	}
	s.closeMu.RUnlock()
	// Once queued the request is committed or refused by the committer; wait
	// for that outcome even if ctx ends, so the caller never reports a
	// failure for records that became durable.
	<-p.done
	return p.res, p.err
}

func (s *Spool) commitLoop() {
	defer close(s.writes) // the writer ends once it wrote what is queued
	group := make([]*pending, 0, maxGroup)
	for {
		select {
		case p := <-s.reqs:
			group = append(group[:0], p)
		case <-s.quit:
			// Close stopped all queueing before it closed quit, so what is
			// queued now is all there will be: commit it so no caller hangs.
			for len(s.reqs) > 0 {
				s.sequence(s.gather(group[:0]))
			}
			return
		}
		s.sequence(s.gather(group))
		clear(group)
	}
}

// gather adds the requests queued meanwhile to group, up to maxGroup.
func (s *Spool) gather(group []*pending) []*pending {
	for len(group) < maxGroup {
		select {
		case q := <-s.reqs:
			group = append(group, q)
		default:
			return group
		}
	}
	return group
}

// A batch is a sequenced group on its way to the writer.
type batch struct {
	group []*pending
	slab  []raft.Log // the accepted records, seqs base..base+len-1
	ptrs  []*raft.Log
	offs  []byte
	added []message.DedupKey // keys to add to the index once written
	base  uint64
	end   uint64 // offset after the batch
	bytes uint64 // the batch's records with their offsets, as written
	now   time.Time
}

// sequence is the first stage of a group commit, run by the committer: it
// drops duplicates, refuses what does not fit and assigns seqs and offsets,
// then queues the batch for the writer. It runs while the writer fsyncs the
// previous batch; keys of batches not yet written are found in s.inflight.
func (s *Spool) sequence(group []*pending) {
	b := <-s.free
	s.sequencing.Store(true)
	b.group = append(b.group[:0], group...)
	b.now = s.now()
	defer func() {
		// Cleared before the send: a writer that sees it set can count on
		// one more batch.
		s.sequencing.Store(false)
		s.writes <- b
	}()
	s.mu.Lock()
	failed := s.failed
	base := s.reservedLast + 1
	off := s.reservedEnd
	// Only records not yet loaded count against MaxBytes; Release and
	// MarkLoaded only lower it meanwhile.
	used := int64(s.reservedEnd - max(s.start, min(s.loaded, s.reservedEnd)))
	s.mu.Unlock()
	b.base, b.end = base, off
	if failed != nil {
		return // the writer fails the group
	}
	d := s.dedup
	if d != nil {
		if err := d.expire(b.now); err != nil {
			s.logger.Warn("dropping expired de-duplication keys failed", "err", err)
		}
	}

	// Look the group's keys up in the index at once, in key order.
	clear(s.inGroup)
	var known map[message.DedupKey]struct{}
	if d != nil {
		var err error
		if known, err = s.lookupGroup(group, b.now); err != nil {
			s.fail(err)
			return
		}
	}
	added, slab := b.added[:0], b.slab[:0]
	next := base
	for _, p := range group {
		keyMark, logMark := len(added), len(slab)
		var need int64
		for i, r := range p.recs {
			if d != nil && !r.Reissue() {
				_, dup := s.inGroup[r.Key]
				if !dup {
					_, dup = known[r.Key]
				}
				if dup {
					p.res.Duplicates++
					p.res.Dropped = append(p.res.Dropped, i)
					continue
				}
				s.inGroup[r.Key] = struct{}{}
				added = append(added, r.Key)
			}
			need += r.size()
			slab = append(slab, raft.Log{Data: r.entry})
		}
		n := len(slab) - logMark
		if n > 0 && s.maxBytes > 0 && used+need > s.maxBytes {
			// Refused: no trace of it, in the log or in the index.
			for _, k := range added[keyMark:] {
				delete(s.inGroup, k)
			}
			added, slab = added[:keyMark], slab[:logMark]
			p.res, p.err = Result{}, ErrFull
			s.refused.Add(uint64(n))
			s.full.Store(true)
			continue
		}
		if n > 0 {
			p.res.Accepted, p.res.FirstSeq, p.res.LastSeq = n, next, next+uint64(n)-1
			next += uint64(n)
			used += need
		}
	}

	// Seqs and running offsets, now that refused requests are out.
	if cap(b.offs) < offsetLen*len(slab) {
		b.offs = make([]byte, offsetLen*len(slab))
	}
	ptrs := b.ptrs[:0]
	end := off
	for i := range slab {
		l := &slab[i]
		l.Index = base + uint64(i)
		l.Extensions = binary.BigEndian.AppendUint64(b.offs[offsetLen*i:offsetLen*i], end)
		end += uint64(len(l.Data) + offsetLen)
		ptrs = append(ptrs, l)
	}
	b.added, b.slab, b.ptrs, b.end, b.bytes = added, slab, ptrs, end, end-off
	if len(added) > 0 {
		s.inflightMu.Lock()
		for _, k := range added {
			s.inflight[k] = struct{}{}
		}
		s.inflightMu.Unlock()
	}
	s.mu.Lock()
	s.reservedLast, s.reservedEnd = base+uint64(len(ptrs))-1, end
	s.mu.Unlock()
}

// writeLoop is the second stage of a group commit: it writes the batches
// sequenced while it wrote the previous ones with one fsync, adds their keys
// to the index and answers their requests, in order. A write that fails
// fails every later batch.
func (s *Spool) writeLoop() {
	defer close(s.stopped)
	var bs []*batch
	var w writeScratch
	for b := range s.writes {
		bs = append(bs[:0], b)
		size := b.bytes
		waited := false
	more:
		for len(bs) < maxCoalesce && size < maxCoalesceBytes {
			select {
			case b, ok := <-s.writes:
				if !ok {
					break more
				}
				bs = append(bs, b)
				size += b.bytes
				continue
			default:
			}
			// A batch being sequenced is ready in microseconds: wait for it
			// (once) rather than start an fsync without it.
			if waited || !s.sequencing.Load() {
				break
			}
			waited = true
			b, ok := <-s.writes
			if !ok {
				break
			}
			bs = append(bs, b)
			size += b.bytes
		}
		s.write(bs, &w)
		if s.written += int64(size); s.written >= s.reopenAt {
			s.reopenLog()
		}
		for _, b := range bs {
			clear(b.group)
			clear(b.slab) // let the records' buffers go; the tail keeps what it needs
			clear(b.ptrs) // and the pointers into it, or a slab trim drops stays alive
			b.group, b.slab, b.ptrs, b.added = b.group[:0], b.slab[:0], b.ptrs[:0], b.added[:0]
			b.trim()
			s.free <- b
		}
		clear(bs)
		w.trim()
	}
}

// maxCoalesce bounds how many sequenced batches share one fsync (and so the
// batches in flight).
const maxCoalesce = 16

// maxCoalesceBytes stops coalescing once a write holds this much: a write
// is several appends of maxAppendBytes, each fsync'd, and every request in
// it waits for all of them. A single larger batch still goes alone.
const maxCoalesceBytes = 4 << 20

// keepScratch is the most records a reused batch (and the writer's scratch)
// keeps room for between groups. Callbacks come a few records per request
// and fit; an import batch of thousands of records gets its room afresh
// (one allocation per batch) instead of every one of the 2×maxCoalesce
// pooled batches keeping the largest group it ever saw, for good.
const keepScratch = 1024

// trim lets go of scratch space grown past keepScratch records.
func (b *batch) trim() {
	if cap(b.slab) > keepScratch {
		b.slab = nil
	}
	if cap(b.ptrs) > keepScratch {
		b.ptrs = nil
	}
	if cap(b.added) > keepScratch {
		b.added = nil
	}
	if cap(b.offs) > offsetLen*keepScratch {
		b.offs = nil
	}
}

// trim lets go of scratch space grown past keepScratch records.
func (w *writeScratch) trim() {
	if cap(w.ptrs) > keepScratch {
		w.ptrs = nil
	}
	if cap(w.added) > keepScratch {
		w.added = nil
	}
}

// writeScratch is the writer's scratch space, reused from one write to the
// next.
type writeScratch struct {
	ptrs  []*raft.Log
	added []message.DedupKey
}

func (s *Spool) write(bs []*batch, w *writeScratch) {
	ptrs, added := w.ptrs[:0], w.added[:0]
	for _, b := range bs {
		ptrs = append(ptrs, b.ptrs...)
		added = append(added, b.added...)
	}
	w.ptrs, w.added = ptrs, added
	defer func() { clear(w.ptrs) }()
	var lastSeq, end uint64 // of the last batch that has records; batches are contiguous
	for _, b := range bs {
		if len(b.ptrs) > 0 {
			lastSeq, end = b.ptrs[len(b.ptrs)-1].Index, b.end
		}
	}

	s.mu.Lock()
	err := s.failed
	s.mu.Unlock()
	if err == nil && len(ptrs) > 0 {
		if err = s.storeLogs(ptrs); err != nil {
			s.fail(err)
		}
	}
	if err == nil && len(ptrs) > 0 && s.dedup != nil {
		if ierr := s.dedup.add(added, lastSeq, bs[len(bs)-1].now); ierr != nil {
			// The records are durable (their callers are told so) but their
			// keys are not in the index; a restart re-adds them.
			s.fail(ierr)
		}
	}
	if len(added) > 0 {
		s.inflightMu.Lock()
		for _, k := range added {
			delete(s.inflight, k)
		}
		s.inflightMu.Unlock()
	}
	if err == nil && len(ptrs) > 0 {
		s.mu.Lock()
		if s.first.Load() == 0 {
			s.first.Store(ptrs[0].Index)
		}
		s.end = end
		for _, b := range bs {
			s.tail.add(b.slab)
		}
		s.last.Store(lastSeq)
		s.mu.Unlock()
		s.records.Add(uint64(len(ptrs)))
		s.commits.Add(1)
		s.full.Store(false)
	}
	for _, b := range bs {
		s.finish(b.group, err)
	}
	if err == nil && len(ptrs) > 0 {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
}

// storeLogs writes ptrs to the log in appends of about maxAppendBytes, each
// fsync'd. raft-wal copies an append into its segment writer's buffer, which
// grows to the largest append and stays with every segment written since
// the start until the segment is deleted; coalesced bulk posts grew it to
// 8-32 MiB per segment, so serve's heap grew with the loader's backlog (15
// segments, 40 MiB of buffers, during a 10M-message bulk ingest). A crash
// between two appends leaves records durable but unanswered: their callers
// send them again and de-duplication drops the copies.
func (s *Spool) storeLogs(ptrs []*raft.Log) error {
	s.logMu.RLock()
	defer s.logMu.RUnlock()
	return inAppends(ptrs, maxAppendBytes, s.log.StoreLogs)
}

// segmentSize is the size of the log's segment files.
const segmentSize = 32 << 20

// reopenEvery is how much the writer appends before it closes and reopens
// the log. raft-wal keeps the writer of every segment this process wrote
// (its append buffer and an in-memory index of 4 bytes per record) until the
// segment is deleted, while a segment it opened from disk costs nothing
// between reads. So without a reopen serve's memory grew with the spool's
// backlog (a loader behind during a bulk ingest, ClickHouse down: up to
// spool.max_bytes, 128 segments at the default 4 GiB); with it, at most
// four written segments are held. A reopen re-reads the current segment's
// index from the page cache: a few tens of milliseconds every 128 MiB.
const reopenEvery = 4 * segmentSize

func openLog(dir string, meta *metadb.BoltMetaDB, logger *slog.Logger) (*wal.WAL, error) {
	if err := finishRotation(dir, meta, logger); err != nil {
		return nil, err
	}
	return wal.Open(dir, wal.WithSegmentSize(segmentSize), wal.WithMetaStore(meta))
}

// reopenLog closes the log and opens it again (see reopenEvery). The
// writer calls it between writes; readers wait meanwhile. A log that cannot
// be opened again fails the spool, like a failed write.
func (s *Spool) reopenLog() {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.written = 0
	err := s.log.Close()
	if err == nil {
		var log *wal.WAL
		if log, err = openLog(s.dir, s.meta, s.logger); err == nil {
			s.log = log
			s.reopens.Add(1)
			return
		}
	}
	s.fail(fmt.Errorf("reopening the log: %w", err))
}

// inAppends calls store with consecutive runs of ptrs of at most max bytes
// (a record larger than max goes alone), in order, stopping at an error.
func inAppends(ptrs []*raft.Log, max int, store func([]*raft.Log) error) error {
	for len(ptrs) > 0 {
		n, size := 0, 0
		for n < len(ptrs) {
			sz := len(ptrs[n].Data) + len(ptrs[n].Extensions)
			if n > 0 && size+sz > max {
				break
			}
			size += sz
			n++
		}
		if err := store(ptrs[:n]); err != nil {
			return err
		}
		ptrs = ptrs[n:]
	}
	return nil
}

// maxAppendBytes bounds one raft-wal append (see storeLogs): its segment
// writers' buffers stay at most 1 MiB each (unless one record is larger).
const maxAppendBytes = 512 << 10

// lookupGroup returns the keys of a group's records (re-issues aside) that
// the index or a batch not yet written already holds. It uses s.inGroup as
// scratch and leaves it empty.
func (s *Spool) lookupGroup(group []*pending, now time.Time) (map[message.DedupKey]struct{}, error) {
	keys := s.keys[:0]
	for _, p := range group {
		for _, r := range p.recs {
			if _, ok := s.inGroup[r.Key]; !ok && !r.Reissue() {
				s.inGroup[r.Key] = struct{}{}
				keys = append(keys, r.Key)
			}
		}
	}
	clear(s.inGroup)
	slices.SortFunc(keys, func(a, b message.DedupKey) int { return bytes.Compare(a[:], b[:]) })
	found := slices.Grow(s.found[:0], len(keys))[:len(keys)]
	s.keys, s.found = keys, found
	clear(s.known)
	s.inflightMu.Lock()
	for i, k := range keys {
		_, found[i] = s.inflight[k]
	}
	s.inflightMu.Unlock()
	if err := s.dedup.lookup(keys, found, now); err != nil {
		return nil, err
	}
	for i, k := range keys {
		if found[i] {
			s.known[k] = struct{}{}
		}
	}
	return s.known, nil
}

// finish answers a group's requests; err, if not nil, fails those not
// already answered.
func (s *Spool) finish(group []*pending, err error) {
	for _, p := range group {
		if err != nil && p.err == nil {
			p.res = Result{}
			p.err = fmt.Errorf("%w: %v", ErrFailed, err)
		}
		s.dups.Add(uint64(p.res.Duplicates))
		close(p.done)
	}
}

func (s *Spool) fail(err error) {
	s.mu.Lock()
	s.failLocked(err)
	s.mu.Unlock()
}

func (s *Spool) failLocked(err error) {
	if s.failed == nil {
		s.failed = err
		s.logger.Error("spool write failed; refusing ingest until restart", "err", err)
	}
}

// Changed receives a value after records were appended.
func (s *Spool) Changed() <-chan struct{} { return s.changed }

// LastSeq is the seq of the last durable record (or the floor).
func (s *Spool) LastSeq() uint64 { return s.last.Load() }

// FirstSeq is the seq of the first record still in the log, 0 when it holds
// none. Records from FirstSeq to LastSeq can be read; a loader that
// restarts reads from here and checks what ClickHouse already holds.
func (s *Spool) FirstSeq() uint64 { return s.first.Load() }

// Released is the highest seq released: every seq up to it is in ClickHouse.
func (s *Spool) Released() uint64 { return s.released.Load() }

// Read returns up to max records starting at seq from, stopping early past
// maxBytes of data.
func (s *Spool) Read(from uint64, max int, maxBytes int) ([]Entry, error) {
	s.mu.Lock()
	last := s.last.Load()
	if s.tail.holds(from) {
		out := s.tail.read(from, max, maxBytes)
		s.mu.Unlock()
		// Caught up: let go of the segment file the disk reader had open,
		// which Release may have deleted since.
		s.diskMu.Lock()
		if s.disk != nil {
			s.disk.close()
		}
		s.diskMu.Unlock()
		return out, nil
	}
	if len(s.tail.entries) > 0 && from < s.tail.first {
		last = s.tail.first - 1 // older records come from the log
	}
	s.mu.Unlock()
	var out []Entry
	size := 0
	var l raft.Log
	s.logMu.RLock()
	defer s.logMu.RUnlock()
	s.diskMu.Lock()
	defer s.diskMu.Unlock()
	// A single record (the gauges' oldest unloaded one) is one raft-wal
	// read either way, and leaves the loader's place in the file alone.
	fast := s.disk != nil && max > 1
	for seq := from; seq <= last && len(out) < max && size < maxBytes; seq++ {
		if fast {
			ok, err := s.disk.get(seq, last, &l)
			if !ok {
				// raft-wal reads it (and the rest of this call), one
				// record per read.
				fast = false
				s.diskMiss.Add(1)
				s.logger.Debug("spool: reading the log through raft-wal", "seq", seq, "err", err)
			}
		}
		if !fast {
			if err := s.log.GetLog(seq, &l); err != nil {
				return out, fmt.Errorf("spool: read seq %d: %w", seq, err)
			}
		}
		e, _, err := decodeLog(&l)
		if err != nil {
			return out, fmt.Errorf("spool: read: %w", err)
		}
		out = append(out, e)
		size += len(e.Data)
	}
	return out, nil
}

// Release deletes the records up to and including seq, which the caller
// no longer needs (ClickHouse holds them). The most recent record is kept so
// that the log always knows its last seq. It costs one header read and the
// deletion of whole segments, whatever the number of records released or
// remaining.
func (s *Spool) Release(seq uint64) error {
	s.releaseMu.Lock()
	defer s.releaseMu.Unlock()
	storeMax(&s.released, seq)

	s.mu.Lock()
	first, last := s.first.Load(), s.last.Load()
	s.mu.Unlock()
	if first == 0 || min(seq, last-1) < first {
		s.mu.Lock()
		s.tail.dropThrough(seq)
		s.mu.Unlock()
		return nil
	}
	upTo := min(seq, last-1)
	if d := s.dedup; d != nil {
		// Once deleted, a record's key can no longer be re-added after a
		// crash: make the index durable first.
		durable, err := d.persist(upTo, false)
		if err != nil {
			return fmt.Errorf("spool: release to %d: %w", upTo, err)
		}
		upTo = min(upTo, durable) // below only if an index write failed
		if upTo < first {
			return nil
		}
	}

	s.mu.Lock()
	h, ok := s.tail.header(upTo + 1)
	s.tail.dropThrough(seq)
	s.mu.Unlock()
	if !ok {
		var err error
		if h, err = s.readHeader(upTo + 1); err != nil {
			return fmt.Errorf("spool: release to %d: %w", upTo, err)
		}
	}
	s.logMu.RLock()
	err := s.log.DeleteRange(first, upTo)
	s.logMu.RUnlock()
	if err != nil {
		return fmt.Errorf("spool: release to %d: %w", upTo, err)
	}
	s.mu.Lock()
	s.first.Store(upTo + 1)
	s.start = h.off
	s.mu.Unlock()
	s.full.Store(false)
	return nil
}

// MarkLoaded tells the spool that every record up to seq is in ClickHouse,
// though perhaps not yet on its disk. Such records stay until Release, but
// no longer count against MaxBytes: ingest is not refused while loaded data
// waits to become durable (the disk may then hold up to MaxBytes plus what
// was loaded meanwhile).
func (s *Spool) MarkLoaded(seq uint64) error {
	s.mu.Lock()
	first, last := s.first.Load(), s.last.Load()
	if first == 0 || seq < first {
		s.mu.Unlock()
		return nil
	}
	seq = min(seq, last)
	h, ok := s.tail.header(seq)
	s.mu.Unlock()
	if !ok {
		var err error
		if h, err = s.readHeader(seq); err != nil {
			return fmt.Errorf("spool: mark loaded %d: %w", seq, err)
		}
	}
	s.mu.Lock()
	if e := h.end(); e > s.loaded {
		s.loaded = e
	}
	s.mu.Unlock()
	s.full.Store(false)
	return nil
}

func storeMax(a *atomic.Uint64, v uint64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// Healthy reports nil unless a write failed or the spool is full.
func (s *Spool) Healthy() error {
	s.mu.Lock()
	failed := s.failed
	s.mu.Unlock()
	if failed != nil {
		return fmt.Errorf("%w: %v", ErrFailed, failed)
	}
	if s.full.Load() {
		return ErrFull
	}
	return nil
}

// Stats returns counters for metrics.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	bytes := int64(s.end - s.start)
	unloaded := int64(s.end - max(s.start, min(s.loaded, s.end)))
	first, last := s.first.Load(), s.last.Load()
	s.mu.Unlock()
	st := Stats{
		Bytes: bytes, Unloaded: unloaded, FirstSeq: first, LastSeq: last,
		Records: s.records.Load(), Duplicates: s.dups.Load(), Refused: s.refused.Load(), Commits: s.commits.Load(),
		Reopens: s.reopens.Load(),
	}
	if s.dedup != nil {
		st.DedupKeys = s.dedup.estimate(s.now())
	}
	return st
}

// Close stops the committer after the requests already queued (later
// Appends return ErrClosed), syncs the de-duplication index and closes the
// log.
func (s *Spool) Close() error {
	s.closeOnce.Do(func() {
		s.closeMu.Lock()
		s.closed = true
		s.closeMu.Unlock()
		close(s.quit)
		<-s.stopped
		var err error
		if s.dedup != nil {
			err = s.dedup.close()
		}
		s.logMu.Lock()
		s.closeErr = errors.Join(err, s.log.Close(), s.meta.Close(), s.lock.Close())
		s.logMu.Unlock()
		s.diskMu.Lock()
		s.disk.close()
		s.disk = nil // a Read after Close goes to the closed log and fails
		s.diskMu.Unlock()
	})
	return s.closeErr
}

// ErrLocked is returned by Open when another process has the spool open.
var ErrLocked = errors.New("spool is in use by another imbridge process")

// lockDir takes an exclusive, non-blocking lock on dir/LOCK, so a second
// process fails at once instead of waiting forever on the log's meta store.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w (%s): stop it, or give this one its own data_dir", ErrLocked, dir)
	}
	return f, nil
}
