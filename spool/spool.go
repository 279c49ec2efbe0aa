// Package spool is the durable write-ahead log between the callback handlers
// and ClickHouse. Append returns only once its records are fsync'd;
// concurrent appends share one fsync (group commit). One committer goroutine
// is the sequencer: it drops duplicates, assigns each accepted record the next
// seq and writes it. The loader reads records back in seq order and releases
// them once ClickHouse holds them.
//
// The log itself is github.com/hashicorp/raft-wal: segment files of
// CRC-checked frames in which a torn tail after a crash is detected and
// ignored on recovery, prefix truncation that deletes whole segments, and one
// fsync per append batch. The raft log index is the seq.
package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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

// Record is one message to spool: its de-duplication key and its encoded
// row, laid out as the log stores it (key first). Make one with NewRecord.
type Record struct {
	Key   message.DedupKey
	entry []byte // Key followed by the row
}

// NewRecord builds a record in one allocation: fill appends the row to the
// slice it is given (about sizeHint bytes are reserved for it).
func NewRecord(key message.DedupKey, sizeHint int, fill func(dst []byte) []byte) Record {
	b := make([]byte, len(key), len(key)+sizeHint)
	copy(b, key[:])
	return Record{Key: key, entry: fill(b)}
}

// Data is the record's row.
func (r Record) Data() []byte { return r.entry[len(r.Key):] }

// Entry is a spooled record with its seq.
type Entry struct {
	Seq  uint64
	Key  message.DedupKey
	Data []byte
}

// Result says what Append did with a request's records.
type Result struct {
	Accepted   int // new records now durable
	Duplicates int // records already seen within the de-duplication window
	FirstSeq   uint64
	LastSeq    uint64
}

// Options configures Open.
type Options struct {
	Dir         string
	MaxBytes    int64         // room for records not yet released
	DedupWindow time.Duration // 0 disables de-duplication
	Logger      *slog.Logger
}

// Stats are counters for metrics.
type Stats struct {
	Bytes      int64
	FirstSeq   uint64
	LastSeq    uint64
	Records    uint64 // accepted since start
	Duplicates uint64
	Refused    uint64 // refused because full
	Commits    uint64 // fsync'd batches
	DedupKeys  int    // keys remembered for de-duplication
}

type pending struct {
	recs []Record
	res  Result
	err  error
	done chan struct{}
}

// Spool is an open spool. Its methods are safe for concurrent use.
type Spool struct {
	log      *wal.WAL
	meta     *metadb.BoltMetaDB
	lock     *os.File // flock'd: one process per spool
	logger   *slog.Logger
	maxBytes int64
	reqs     chan *pending
	changed  chan struct{}
	quit     chan struct{}
	stopped  chan struct{}

	mu     sync.Mutex // guards dedup, sizes, first, failed
	dedup  *dedupIndex
	sizes  []int64 // encoded size of each record in [first, last]
	first  uint64  // first seq still spooled (valid when len(sizes) > 0)
	failed error
	// tail holds the most recent records (contiguous seqs ending at the last
	// one) so the loader reads them from memory, not back from disk.
	tail      []Entry
	tailBytes int
	closeOnce sync.Once

	last     atomic.Uint64
	bytes    atomic.Int64
	records  atomic.Uint64
	dups     atomic.Uint64
	refused  atomic.Uint64
	commits  atomic.Uint64
	released atomic.Uint64 // highest seq released
	full     atomic.Bool   // an append was refused for room and none fitted since
}

// maxGroup bounds how many requests share one fsync.
const maxGroup = 1024

// maxTailBytes bounds the in-memory copy of recent records; older ones are
// read back from the log.
const maxTailBytes = 64 << 20

// Open opens (or creates) the spool in opts.Dir, recovers the log after a
// crash, and remembers the keys of every record still spooled.
func Open(opts Options) (*Spool, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	// raft-wal's Close leaves its meta store open (and its file locked), so
	// the spool owns the meta store and closes it itself.
	meta := &metadb.BoltMetaDB{}
	log, err := wal.Open(opts.Dir, wal.WithSegmentSize(32<<20), wal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		lock.Close()
		return nil, fmt.Errorf("spool: open %s: %w", opts.Dir, err)
	}
	s := &Spool{
		log:      log,
		meta:     meta,
		lock:     lock,
		logger:   logger,
		maxBytes: opts.MaxBytes,
		reqs:     make(chan *pending, maxGroup),
		changed:  make(chan struct{}, 1),
		quit:     make(chan struct{}),
		stopped:  make(chan struct{}),
		dedup:    newDedupIndex(opts.DedupWindow, time.Now()),
	}
	fail := func(err error) (*Spool, error) {
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
	if last > 0 && first > 0 {
		s.first = first
		var l raft.Log
		for seq := first; seq <= last; seq++ {
			if err := log.GetLog(seq, &l); err != nil {
				return fail(fmt.Errorf("spool: recover seq %d: %w", seq, err))
			}
			e, err := decodeEntry(seq, l.Data)
			if err != nil {
				return fail(fmt.Errorf("spool: recover seq %d: %w", seq, err))
			}
			s.dedup.add(e.Key)
			s.sizes = append(s.sizes, int64(len(l.Data)))
			s.bytes.Add(int64(len(l.Data)))
		}
		s.released.Store(first - 1)
		logger.Info("spool recovered", "first_seq", first, "last_seq", last, "bytes", s.bytes.Load())
	}
	s.last.Store(last)
	go s.commitLoop()
	return s, nil
}

// SetFloor makes the next seq larger than floor, the highest seq ClickHouse
// already holds. It must be called before the first Append. A spool that
// still holds records below the floor does not belong to that database.
func (s *Spool) SetFloor(floor uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.last.Load()
	if floor <= last {
		return nil
	}
	if len(s.sizes) > 0 {
		return fmt.Errorf("spool ends at seq %d but ClickHouse already holds seq %d: this data_dir belongs to another database", last, floor)
	}
	s.last.Store(floor)
	s.released.Store(floor)
	return nil
}

// Remember marks a key as seen (a message ClickHouse already holds), so that
// a re-delivery within the window is dropped.
func (s *Spool) Remember(k message.DedupKey) {
	s.mu.Lock()
	s.dedup.add(k)
	s.mu.Unlock()
}

// Append makes recs durable and returns once they are fsync'd, or with an
// error and none of them spooled. Duplicates are dropped.
func (s *Spool) Append(ctx context.Context, recs []Record) (Result, error) {
	p := &pending{recs: recs, done: make(chan struct{})}
	select {
	case s.reqs <- p:
	case <-s.quit:
		return Result{}, ErrClosed
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	// Once queued the request is committed or refused by the committer; wait
	// for that outcome even if ctx ends, so the caller never reports a
	// failure for records that became durable.
	<-p.done
	return p.res, p.err
}

func (s *Spool) commitLoop() {
	defer close(s.stopped)
	group := make([]*pending, 0, maxGroup)
	for {
		var p *pending
		select {
		case p = <-s.reqs:
		case <-s.quit:
			// Drain what was queued before Close so no caller hangs.
			for {
				select {
				case p := <-s.reqs:
					s.commit([]*pending{p})
				default:
					return
				}
			}
		}
		group = append(group[:0], p)
	drain:
		for len(group) < maxGroup {
			select {
			case q := <-s.reqs:
				group = append(group, q)
			default:
				break drain
			}
		}
		s.commit(group)
	}
}

// commit sequences and writes one group with a single fsync.
func (s *Spool) commit(group []*pending) {
	s.mu.Lock()
	if s.failed != nil {
		err := s.failed
		s.mu.Unlock()
		for _, p := range group {
			p.err = fmt.Errorf("%w: %v", ErrFailed, err)
			close(p.done)
		}
		return
	}
	s.dedup.rotate(time.Now())
	next := s.last.Load() + 1
	used := s.bytes.Load()
	var logs []*raft.Log
	var added []message.DedupKey
	var newSizes []int64
	for _, p := range group {
		mark := len(added)
		var need int64
		var entries []*raft.Log
		for _, r := range p.recs {
			if s.dedup.seen(r.Key) {
				p.res.Duplicates++
				continue
			}
			s.dedup.add(r.Key)
			added = append(added, r.Key)
			data := r.entry
			need += int64(len(data))
			entries = append(entries, &raft.Log{Index: next + uint64(len(entries)), Data: data})
		}
		if len(entries) > 0 && s.maxBytes > 0 && used+need > s.maxBytes {
			for _, k := range added[mark:] {
				s.dedup.remove(k)
			}
			added = added[:mark]
			p.res = Result{}
			p.err = ErrFull
			s.refused.Add(uint64(len(entries)))
			s.full.Store(true)
			continue
		}
		if len(entries) > 0 {
			p.res.FirstSeq, p.res.LastSeq = next, next+uint64(len(entries))-1
			p.res.Accepted = len(entries)
			for _, e := range entries {
				newSizes = append(newSizes, int64(len(e.Data)))
			}
			next += uint64(len(entries))
			used += need
			logs = append(logs, entries...)
		}
	}
	s.mu.Unlock()

	var err error
	if len(logs) > 0 {
		err = s.log.StoreLogs(logs)
	}

	s.mu.Lock()
	if err != nil {
		for _, k := range added {
			s.dedup.remove(k)
		}
		s.failed = err
		s.logger.Error("spool write failed; refusing ingest until restart", "err", err)
	} else if len(logs) > 0 {
		if len(s.sizes) == 0 {
			s.first = logs[0].Index
		}
		s.sizes = append(s.sizes, newSizes...)
		s.bytes.Add(used - s.bytes.Load())
		s.keepTail(logs)
		s.last.Store(logs[len(logs)-1].Index)
		s.records.Add(uint64(len(logs)))
		s.commits.Add(1)
		s.full.Store(false)
	}
	s.mu.Unlock()

	for _, p := range group {
		if err != nil && p.err == nil {
			p.res = Result{}
			p.err = fmt.Errorf("%w: %v", ErrFailed, err)
		}
		s.dups.Add(uint64(p.res.Duplicates))
		close(p.done)
	}
	if len(logs) > 0 && err == nil {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
}

// keepTail adds just-written records to the in-memory tail, dropping the
// oldest past maxTailBytes. Called with s.mu held.
func (s *Spool) keepTail(logs []*raft.Log) {
	if n := len(s.tail); n > 0 && s.tail[n-1].Seq+1 != logs[0].Index {
		s.tail, s.tailBytes = nil, 0
	}
	for _, l := range logs {
		e := Entry{Seq: l.Index, Data: l.Data[16:]}
		copy(e.Key[:], l.Data[:16])
		s.tail = append(s.tail, e)
		s.tailBytes += len(l.Data)
	}
	drop := 0
	for s.tailBytes > maxTailBytes && drop < len(s.tail) {
		s.tailBytes -= len(s.tail[drop].Data) + 16
		drop++
	}
	s.trimTail(drop)
}

// trimTail drops the first n tail entries. Called with s.mu held.
func (s *Spool) trimTail(n int) {
	if n <= 0 {
		return
	}
	if n >= len(s.tail) {
		s.tail, s.tailBytes = nil, 0
		return
	}
	s.tail = s.tail[n:]
	if cap(s.tail) > 4*len(s.tail)+1024 {
		s.tail = append([]Entry(nil), s.tail...)
	}
}

// Changed receives a value after records were appended.
func (s *Spool) Changed() <-chan struct{} { return s.changed }

// LastSeq is the seq of the last durable record (or the floor).
func (s *Spool) LastSeq() uint64 { return s.last.Load() }

// Released is the highest seq released: every seq up to it is in ClickHouse.
func (s *Spool) Released() uint64 { return s.released.Load() }

// Read returns up to max records starting at seq from, stopping early past
// maxBytes of data.
func (s *Spool) Read(from uint64, max int, maxBytes int) ([]Entry, error) {
	s.mu.Lock()
	last := s.last.Load()
	if n := len(s.tail); n > 0 && from >= s.tail[0].Seq {
		var out []Entry
		size := 0
		for _, e := range s.tail[from-s.tail[0].Seq:] {
			if len(out) >= max || size >= maxBytes {
				break
			}
			out = append(out, e)
			size += len(e.Data)
		}
		s.mu.Unlock()
		return out, nil
	}
	if n := len(s.tail); n > 0 {
		last = s.tail[0].Seq - 1 // older records come from the log
	}
	s.mu.Unlock()
	var out []Entry
	size := 0
	var l raft.Log
	for seq := from; seq <= last && len(out) < max && size < maxBytes; seq++ {
		if err := s.log.GetLog(seq, &l); err != nil {
			return out, fmt.Errorf("spool: read seq %d: %w", seq, err)
		}
		e, err := decodeEntry(seq, l.Data)
		if err != nil {
			return out, fmt.Errorf("spool: read seq %d: %w", seq, err)
		}
		out = append(out, e)
		size += len(e.Data)
	}
	return out, nil
}

// Release drops records up to and including seq, which ClickHouse now holds.
// The most recent record is kept so that the log always knows its last seq.
func (s *Spool) Release(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.released.Load() {
		s.released.Store(seq)
	}
	drop := 0
	for drop < len(s.tail) && s.tail[drop].Seq <= seq {
		s.tailBytes -= len(s.tail[drop].Data) + 16
		drop++
	}
	s.trimTail(drop)
	if len(s.sizes) == 0 {
		return nil
	}
	upTo := min(seq, s.last.Load()-1)
	if upTo < s.first {
		return nil
	}
	if err := s.log.DeleteRange(s.first, upTo); err != nil {
		return fmt.Errorf("spool: release to %d: %w", upTo, err)
	}
	n := upTo - s.first + 1
	var freed int64
	for _, sz := range s.sizes[:n] {
		freed += sz
	}
	s.sizes = append(s.sizes[:0:0], s.sizes[n:]...)
	s.first = upTo + 1
	s.bytes.Add(-freed)
	if freed > 0 {
		s.full.Store(false)
	}
	return nil
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
	first := s.first
	if len(s.sizes) == 0 {
		first = 0
	}
	keys := s.dedup.len()
	s.mu.Unlock()
	return Stats{
		Bytes: s.bytes.Load(), FirstSeq: first, LastSeq: s.last.Load(),
		Records: s.records.Load(), Duplicates: s.dups.Load(), Refused: s.refused.Load(), Commits: s.commits.Load(),
		DedupKeys: keys,
	}
}

// Close stops the committer after the requests already queued and closes
// the log.
func (s *Spool) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.quit)
		<-s.stopped
		err = errors.Join(s.log.Close(), s.meta.Close(), s.lock.Close())
	})
	return err
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

// An entry on disk is the 16-byte de-duplication key followed by the row.
func decodeEntry(seq uint64, b []byte) (Entry, error) {
	if len(b) < 16 {
		return Entry{}, errors.New("entry shorter than its key")
	}
	var e Entry
	e.Seq = seq
	copy(e.Key[:], b[:16])
	e.Data = append([]byte(nil), b[16:]...) // b may be the log's pooled buffer
	return e, nil
}
