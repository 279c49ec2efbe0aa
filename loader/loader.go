// Package loader moves spooled messages into ClickHouse in seq order, in large
// batches: it decodes each canonical message, renders its line with a
// snapshot of the maps (the one render function), and inserts the rows. Its
// watermark is the highest seq below which every message is in ClickHouse:
// pull serves nothing above it, so a pull can never skip a message that is
// still on its way. Loaded records are released from the spool only once
// ClickHouse has them on disk (see Options.Durable and Options.Retain).
package loader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/mapping"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/render"
	"github.com/imbridge/imbridge/spool"
	"github.com/imbridge/imbridge/store"
)

// messageWriter is the part of the store the loader needs.
type messageWriter interface {
	// InsertMessageChunks writes the rows next returns, until it returns
	// none, in one INSERT; a chunk is copied before next is called again.
	InsertMessageChunks(ctx context.Context, next func() ([]store.Message, error)) error
	// QueryRunning reports whether the server still runs the query with id
	// (one given with store.WithQueryID).
	QueryRunning(ctx context.Context, id string) (bool, error)
	// InsertRecalls writes recall rows in one INSERT block.
	InsertRecalls(ctx context.Context, rows []store.Recall) error
	// ExistingSeqs returns the seqs in [lo, hi] already stored (messages
	// and recalls).
	ExistingSeqs(ctx context.Context, lo, hi uint64) (map[uint64]bool, error)
}

// snapshotter gives the maps a batch is rendered with: every chunk of one
// INSERT at the version the batch started with.
type snapshotter interface {
	Version(ctx context.Context) (uint64, error)
	TakeAt(ctx context.Context, version uint64, msgs []*message.Message) (*mapping.Snapshot, error)
}

// spoolReader is the part of the spool the loader needs.
type spoolReader interface {
	Read(from uint64, max int, maxBytes int) ([]spool.Entry, error)
	Release(seq uint64) error
	MarkLoaded(seq uint64) error
	FirstSeq() uint64
	LastSeq() uint64
	Changed() <-chan struct{}
}

// Options tunes batching and release.
type Options struct {
	BatchRows  int           // most rows per INSERT (default 10 000)
	BatchBytes int           // most record bytes per INSERT (default 4 MiB)
	ChunkRows  int           // most rows read, decoded and rendered at a time (default 2 048)
	ChunkBytes int           // most record bytes per chunk (default 1 MiB)
	Linger     time.Duration // how long to wait for a fuller batch (default 1 s)
	// Durable, when set, makes what ClickHouse has written so far durable
	// (the managed server: syncfs of its data directory); loaded records are
	// released right after it succeeds. Without it they are kept for Retain
	// after loading (longer than the server's dirty-page writeback).
	Durable func(ctx context.Context) error
	Retain  time.Duration // default 2 min
	// Urgent, when set and true, ends the wait for a fuller batch: the spool
	// is filling up and must be loaded (and released) now.
	Urgent func() bool
	Logger *slog.Logger
}

// Loader is the single writer of the messages table.
type Loader struct {
	sp     spoolReader
	st     messageWriter
	maps   snapshotter
	opts   Options
	logger *slog.Logger

	watermark atomic.Uint64
	mu        sync.Mutex // guards rendered
	rendered  uint64     // every row rendered with a map version below it is at or under the watermark (snapshots only grow)
	started   atomic.Bool
	loaded    []loadedMark // batches loaded, not yet released (owned by Run)

	inserts   atomic.Uint64
	rows      atomic.Uint64
	held      atomic.Uint64
	recalls   atomic.Uint64
	failures  atomic.Uint64
	releaseAt atomic.Uint64 // highest seq released
	lastErr   atomic.Pointer[string]
	caughtUp  atomic.Int64 // Unix ns when Run last found nothing left to load

	queryPrefix string // of this loader's INSERT query ids
	queries     uint64 // INSERTs made (owned by Run)
	abandoned   string // id of a failed INSERT the server may still commit (owned by Run)
}

type loadedMark struct {
	seq uint64
	at  time.Time
}

// New returns a loader. It starts, in Run, from the first record the spool
// still holds, checking against ClickHouse what it already has.
func New(sp spoolReader, st messageWriter, maps snapshotter, opts Options) *Loader {
	// The driver's columns hold a batch (one INSERT block); the records,
	// decoded messages and rendered rows are held a chunk at a time.
	if opts.BatchRows <= 0 {
		opts.BatchRows = 10000
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 4 << 20
	}
	if opts.ChunkRows <= 0 {
		opts.ChunkRows = 2048
	}
	if opts.ChunkBytes <= 0 {
		opts.ChunkBytes = 1 << 20
	}
	if opts.Linger <= 0 {
		opts.Linger = time.Second
	}
	if opts.Retain <= 0 {
		opts.Retain = 2 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &Loader{sp: sp, st: st, maps: maps, opts: opts, logger: opts.Logger,
		queryPrefix: "imbridge-load-" + hex.EncodeToString(b[:]) + "-"}
}

// Watermark is the highest seq such that every seq up to it is in ClickHouse.
func (l *Loader) Watermark() uint64 { return l.watermark.Load() }

// Rendered reports that every message rendered with a map version below
// version is in ClickHouse at a seq of at most watermark.
func (l *Loader) Rendered() (version, watermark uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rendered, l.watermark.Load()
}

// Lag is how many spooled messages are not yet in ClickHouse.
func (l *Loader) Lag() uint64 {
	if !l.started.Load() {
		return 0
	}
	last, wm := l.sp.LastSeq(), l.watermark.Load()
	if last < wm {
		return 0
	}
	return last - wm
}

// Stats are counters for metrics.
type Stats struct {
	Inserts, Rows, Held, Recalls, Failures uint64
	LastError                              string
}

// Stats returns the loader's counters.
func (l *Loader) Stats() Stats {
	s := Stats{Inserts: l.inserts.Load(), Rows: l.rows.Load(), Held: l.held.Load(), Recalls: l.recalls.Load(), Failures: l.failures.Load()}
	if e := l.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	return s
}

// OldestUnloaded returns when the oldest message not yet in ClickHouse was
// received, false when every spooled message is loaded. It is the received
// time of the first record above the watermark, bounded by the last moment
// the loader had loaded everything: a re-issued copy carries its original's
// (old) received time, yet it waits only since it was spooled.
func (l *Loader) OldestUnloaded() (time.Time, bool) {
	from := max(l.watermark.Load()+1, l.sp.FirstSeq())
	if from > l.sp.LastSeq() {
		return time.Time{}, false
	}
	entries, err := l.sp.Read(from, 1, 1)
	if err != nil || len(entries) == 0 {
		return time.Time{}, false
	}
	r, err := ingest.Decode(entries[0].Data)
	if err != nil {
		return time.Time{}, false
	}
	at := time.UnixMilli(r.ReceivedAt)
	if c := l.caughtUp.Load(); c > 0 && time.Unix(0, c).After(at) {
		at = time.Unix(0, c)
	}
	return at, true
}

// start is where loading begins: the first record the spool still holds
// (loaded before the last stop perhaps, kept until ClickHouse had it on
// disk: it is checked again), or after the last seq when it holds none.
func (l *Loader) start() uint64 {
	if first := l.sp.FirstSeq(); first > 0 && first <= l.sp.LastSeq() {
		return first
	}
	return l.sp.LastSeq() + 1
}

// Run loads until ctx ends, then makes one last attempt to load what is
// spooled (bounded by drainTimeout, on a fresh context) and returns. Messages
// it cannot load stay in the spool for the next start.
func (l *Loader) Run(ctx context.Context, drainTimeout time.Duration) {
	next := l.start()
	l.watermark.Store(next - 1)
	l.started.Store(true)
	verify := true // after a start or any failed INSERT, check what ClickHouse already has
	backoff := 100 * time.Millisecond
	var pendingSince time.Time
	for {
		if ctx.Err() != nil {
			l.drain(next, verify, drainTimeout)
			return
		}
		l.releaseLoaded(ctx)
		last := l.sp.LastSeq()
		if last < next {
			l.caughtUp.Store(time.Now().UnixNano())
			pendingSince = time.Time{}
			l.idle(ctx, next)
			select {
			case <-l.sp.Changed():
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if avail := last - next + 1; avail < uint64(l.opts.BatchRows) && !l.urgent() {
			if pendingSince.IsZero() {
				pendingSince = time.Now()
			}
			if wait := l.opts.Linger - time.Since(pendingSince); wait > 0 {
				select {
				case <-l.sp.Changed():
				case <-ctx.Done():
				case <-time.After(wait):
				}
				if time.Since(pendingSince) < l.opts.Linger && ctx.Err() == nil && !l.urgent() {
					continue
				}
			}
		}
		pendingSince = time.Time{}
		hi, err := l.loadBatch(ctx, next, verify)
		if err != nil {
			// Whatever the cause — cancellation included — the INSERT may
			// have committed on the server: check before loading again.
			verify = true
			if ctx.Err() != nil {
				continue
			}
			l.failures.Add(1)
			msg := err.Error()
			l.lastErr.Store(&msg)
			l.logger.Warn("loading into clickhouse failed; retrying", "err", err, "seq", next, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		if backoff > 100*time.Millisecond {
			l.logger.Info("loading into clickhouse resumed", "watermark", hi)
		}
		backoff = 100 * time.Millisecond
		verify = false
		next = hi + 1
	}
}

func (l *Loader) urgent() bool { return l.opts.Urgent != nil && l.opts.Urgent() }

// idle notes, when nothing waits to be loaded, that every later message
// will be rendered with the current map version or a newer one.
func (l *Loader) idle(ctx context.Context, next uint64) {
	version, err := l.maps.Version(ctx)
	if err != nil {
		return
	}
	if l.sp.LastSeq() < next {
		l.noteRendered(version)
	}
}

func (l *Loader) noteRendered(version uint64) {
	l.mu.Lock()
	if version > l.rendered {
		l.rendered = version
	}
	l.mu.Unlock()
}

func (l *Loader) drain(next uint64, verify bool, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for next <= l.sp.LastSeq() && ctx.Err() == nil {
		hi, err := l.loadBatch(ctx, next, verify)
		if err != nil {
			l.logger.Warn("final load at shutdown incomplete; the rest stays spooled for the next start", "err", err, "seq", next)
			return
		}
		verify = false
		next = hi + 1
	}
	l.releaseLoaded(ctx)
}

// loadBatch renders and inserts the next batch from seq next and returns the
// last seq it covered. With verify set it first asks ClickHouse which of the
// batch's seqs it already holds (an INSERT that failed on our side may have
// succeeded on the server), so no row is inserted twice. The batch is read,
// decoded and rendered a chunk at a time into one INSERT block (see
// Options); recalls go into their own INSERT after it.
func (l *Loader) loadBatch(ctx context.Context, next uint64, verify bool) (uint64, error) {
	last := l.sp.LastSeq()
	if last < next {
		return next - 1, nil
	}
	var have map[uint64]bool
	if verify {
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := l.waitAbandoned(qctx)
		if err == nil {
			have, err = l.st.ExistingSeqs(qctx, next, min(last, next+uint64(l.opts.BatchRows)-1))
		}
		cancel()
		if err != nil {
			return 0, err
		}
	}
	b := batchReader{l: l, have: have, cur: next, rowsLeft: l.opts.BatchRows, bytesLeft: l.opts.BatchBytes}
	ictx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	b.ctx = ictx
	err := l.insert(ictx, func(ctx context.Context) error { return l.st.InsertMessageChunks(ctx, b.next) })
	cancel()
	if err != nil {
		return 0, err
	}
	if b.rows > 0 {
		l.inserts.Add(1)
		l.rows.Add(uint64(b.rows))
		l.held.Add(uint64(b.held))
	}
	if len(b.recalls) > 0 {
		// After the messages: a failure here leaves them stored, and the
		// verify before the retry skips them.
		ictx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := l.insert(ictx, func(ctx context.Context) error { return l.st.InsertRecalls(ctx, b.recalls) })
		cancel()
		if err != nil {
			return 0, err
		}
		l.inserts.Add(1)
		l.recalls.Add(uint64(len(b.recalls)))
	}
	hi := b.cur - 1
	if hi < next { // the spool had nothing after all
		return next - 1, nil
	}
	l.watermark.Store(hi)
	if b.versioned {
		l.noteRendered(b.version)
	}
	l.loaded = append(l.loaded, loadedMark{seq: hi, at: time.Now()})
	if err := l.sp.MarkLoaded(hi); err != nil {
		l.logger.Error("marking loaded records in the spool failed", "err", err, "seq", hi)
	}
	return hi, nil
}

// insert runs one INSERT under a query id of its own and, when it fails,
// remembers the id: the server may still be committing what it received
// (18.16 takes a dropped connection for the end of the data, and commits a
// few milliseconds after the client gave up), so the check before the next
// attempt waits for that query to end first.
func (l *Loader) insert(ctx context.Context, do func(ctx context.Context) error) error {
	l.queries++
	id := l.queryPrefix + strconv.FormatUint(l.queries, 10)
	err := do(store.WithQueryID(ctx, id))
	if err != nil {
		l.abandoned = id
	}
	return err
}

// waitAbandoned waits until the last failed INSERT no longer runs on the
// server, polling, until ctx ends.
func (l *Loader) waitAbandoned(ctx context.Context) error {
	for l.abandoned != "" {
		running, err := l.st.QueryRunning(ctx, l.abandoned)
		if err != nil {
			return err
		}
		if !running {
			l.abandoned = ""
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the failed INSERT %s still runs on the server: %w", l.abandoned, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// batchReader reads one batch from the spool a chunk at a time for
// InsertMessageChunks, rendering each chunk's messages and setting its
// recalls aside. Its slices are reused from chunk to chunk.
type batchReader struct {
	l                   *Loader
	ctx                 context.Context
	have                map[uint64]bool // seqs ClickHouse already holds (verify)
	cur                 uint64          // next seq to read
	rowsLeft, bytesLeft int
	version             uint64 // the map version every chunk is rendered with
	versioned           bool
	recs                []ingest.Spooled
	seqs                []uint64
	msgs                []*message.Message
	out                 []store.Message
	recalls             []store.Recall
	rows, held          int
}

// next returns the rows of the next chunk that has any, or none at the end
// of the batch.
func (b *batchReader) next() ([]store.Message, error) {
	l := b.l
	for b.rowsLeft > 0 && b.bytesLeft > 0 {
		entries, err := l.sp.Read(b.cur, min(l.opts.ChunkRows, b.rowsLeft), min(l.opts.ChunkBytes, b.bytesLeft))
		if err != nil {
			return nil, err
		}
		if len(entries) == 0 {
			return nil, nil
		}
		b.rowsLeft -= len(entries)
		b.recs, b.seqs = b.recs[:0], b.seqs[:0]
		for _, e := range entries {
			b.bytesLeft -= len(e.Data)
			if b.have[e.Seq] {
				continue
			}
			r, err := ingest.Decode(e.Data)
			if err != nil {
				return nil, fmt.Errorf("spooled seq %d: %w", e.Seq, err)
			}
			if r.IsRecall {
				b.recalls = append(b.recalls, store.Recall{Seq: e.Seq, Source: r.Recall.Source, RecallKey: r.Recall.Key,
					RecallID: r.Recall.ID, Operator: r.Recall.Operator, RecallTime: r.Recall.Time, ReceivedAt: r.ReceivedAt})
				continue
			}
			b.recs = append(b.recs, r)
			b.seqs = append(b.seqs, e.Seq)
		}
		b.cur = entries[len(entries)-1].Seq + 1
		if len(b.recs) == 0 {
			continue
		}
		if !b.versioned {
			if b.version, err = l.maps.Version(b.ctx); err != nil {
				return nil, err
			}
			b.versioned = true
		}
		b.msgs = b.msgs[:0]
		for i := range b.recs {
			b.msgs = append(b.msgs, &b.recs[i].Message)
		}
		snap, err := l.maps.TakeAt(b.ctx, b.version, b.msgs)
		if err != nil {
			return nil, err
		}
		b.out = AppendRows(b.out[:0], b.seqs, b.recs, snap)
		b.rows += len(b.out)
		for i := range b.out {
			if b.out[i].Held {
				b.held++
			}
		}
		return b.out, nil
	}
	return nil, nil
}

// releaseLoaded deletes loaded records from the spool once ClickHouse has
// them on disk: with Durable, right after it succeeds (and never while it
// fails); without, after Retain.
func (l *Loader) releaseLoaded(ctx context.Context) {
	if len(l.loaded) == 0 {
		return
	}
	upTo := uint64(0)
	keep := 0
	if l.opts.Durable != nil {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := l.opts.Durable(dctx)
		cancel()
		if err == nil {
			upTo, keep = l.loaded[len(l.loaded)-1].seq, len(l.loaded)
		} else {
			l.logger.Warn("making ClickHouse's data durable failed; keeping loaded records in the spool", "err", err)
		}
	}
	if l.opts.Durable == nil {
		for keep < len(l.loaded) && time.Since(l.loaded[keep].at) >= l.opts.Retain {
			upTo = l.loaded[keep].seq
			keep++
		}
	}
	if keep == 0 {
		return
	}
	if err := l.sp.Release(upTo); err != nil {
		l.logger.Error("releasing loaded records from the spool failed", "err", err, "seq", upTo)
		return
	}
	l.releaseAt.Store(upTo)
	l.loaded = append(l.loaded[:0], l.loaded[keep:]...)
}

// Rows are the store rows of spooled records at seqs, rendered with maps.
func Rows(seqs []uint64, recs []ingest.Spooled, maps *mapping.Snapshot) []store.Message {
	return AppendRows(nil, seqs, recs, maps)
}

// AppendRows appends the store rows of spooled records at seqs, rendered
// with maps, to rows.
func AppendRows(rows []store.Message, seqs []uint64, recs []ingest.Spooled, maps *mapping.Snapshot) []store.Message {
	var enc message.Encoder
	base := len(rows)
	rows = slices.Grow(rows, len(recs))[:base+len(recs)]
	var line, buf []byte
	for i := range recs {
		r := &recs[i]
		m := &r.Message
		var out render.Outcome
		line, out = render.Line(line[:0], &enc, m, maps)
		row := &rows[base+i]
		*row = store.Message{
			Seq: seqs[i], Origin: r.Origin, Source: m.Source, SourceMsgID: m.SourceID, RecallKey: m.RecallKeyOf(),
			Scene: m.Scene.String(), Type: uint16(m.Type), MsgID: m.MsgID, From: m.From, To: m.To,
			TID: out.TID, GroupID: m.GroupID, Accid2: m.Accid2, CreateTime: m.CreateTime,
			ClientType: uint8(m.ClientType), Body: m.Body, AttachURL: out.MediaURL, Ext: m.Ext,
			Held: out.Held, RenderVersion: maps.Version(), ReceivedAt: r.ReceivedAt,
		}
		if row.Origin == 0 {
			row.Origin = row.Seq
		}
		if !out.Held {
			row.Line = string(line)
		}
		if m.Attach != nil {
			buf = message.AttachColumn(buf[:0], m.Attach)
			row.Attach = string(buf)
		}
		if m.TInfo.Len() > 0 {
			buf = message.TInfoColumn(buf[:0], &m.TInfo)
			row.TInfo = string(buf)
		}
	}
	return rows
}
