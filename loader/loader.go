// Package loader moves spooled messages into ClickHouse in seq order, in large
// batches, and releases them from the spool once ClickHouse holds them. Its
// watermark is the highest seq below which every message is in ClickHouse:
// pull serves nothing above it, so a pull can never skip a message that is
// still on its way.
package loader

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/imbridge/imbridge/spool"
	"github.com/imbridge/imbridge/store"
)

// messageWriter is the part of the store the loader needs.
type messageWriter interface {
	// InsertMessages writes rows in one INSERT block.
	InsertMessages(ctx context.Context, rows []store.Message) error
	// ExistingSeqs returns the seqs in [lo, hi] already stored.
	ExistingSeqs(ctx context.Context, lo, hi uint64) (map[uint64]bool, error)
}

// spoolReader is the part of the spool the loader needs.
type spoolReader interface {
	Read(from uint64, max int, maxBytes int) ([]spool.Entry, error)
	Release(seq uint64) error
	LastSeq() uint64
	Released() uint64
	Changed() <-chan struct{}
}

// Options tunes batching.
type Options struct {
	BatchRows  int           // most rows per INSERT (default 20000)
	BatchBytes int           // most record bytes per INSERT (default 32 MiB)
	Linger     time.Duration // how long to wait for a fuller batch (default 200ms)
	Logger     *slog.Logger
}

// Loader is the single writer of the messages table.
type Loader struct {
	sp     spoolReader
	st     messageWriter
	opts   Options
	logger *slog.Logger

	watermark atomic.Uint64
	inserts   atomic.Uint64
	rows      atomic.Uint64
	failures  atomic.Uint64
	lastErr   atomic.Pointer[string]
}

// New returns a loader that starts after the spool's released seq.
func New(sp spoolReader, st messageWriter, opts Options) *Loader {
	if opts.BatchRows <= 0 {
		opts.BatchRows = 50000
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 32 << 20
	}
	if opts.Linger <= 0 {
		opts.Linger = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Loader{sp: sp, st: st, opts: opts, logger: opts.Logger}
	l.watermark.Store(sp.Released())
	return l
}

// Watermark is the highest seq such that every seq up to it is in ClickHouse.
func (l *Loader) Watermark() uint64 { return l.watermark.Load() }

// Lag is how many spooled messages are not yet in ClickHouse.
func (l *Loader) Lag() uint64 {
	last, wm := l.sp.LastSeq(), l.watermark.Load()
	if last < wm {
		return 0
	}
	return last - wm
}

// Stats are counters for metrics.
type Stats struct {
	Inserts, Rows, Failures uint64
	LastError               string
}

// Stats returns the loader's counters.
func (l *Loader) Stats() Stats {
	s := Stats{Inserts: l.inserts.Load(), Rows: l.rows.Load(), Failures: l.failures.Load()}
	if e := l.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	return s
}

// Run loads until ctx ends, then makes one last attempt to load what is
// spooled (bounded by drainTimeout, on a fresh context) and returns. Messages
// it cannot load stay in the spool for the next start.
func (l *Loader) Run(ctx context.Context, drainTimeout time.Duration) {
	next := l.watermark.Load() + 1
	verify := true // after a start or a failed INSERT, check what ClickHouse already has
	backoff := 100 * time.Millisecond
	var pendingSince time.Time
	for {
		if ctx.Err() != nil {
			l.drain(next, verify, drainTimeout)
			return
		}
		last := l.sp.LastSeq()
		if last < next {
			pendingSince = time.Time{}
			select {
			case <-l.sp.Changed():
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if avail := last - next + 1; avail < uint64(l.opts.BatchRows) {
			if pendingSince.IsZero() {
				pendingSince = time.Now()
			}
			if wait := l.opts.Linger - time.Since(pendingSince); wait > 0 {
				select {
				case <-l.sp.Changed():
				case <-ctx.Done():
				case <-time.After(wait):
				}
				if time.Since(pendingSince) < l.opts.Linger && ctx.Err() == nil {
					continue
				}
			}
		}
		pendingSince = time.Time{}
		hi, err := l.loadBatch(ctx, next, verify)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			verify = true
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
}

// loadBatch inserts the next batch from seq next and returns the last seq it
// covered. With verify set it first asks ClickHouse which of the batch's seqs
// it already holds (an INSERT that failed on our side may have succeeded on
// the server), so no row is inserted twice.
func (l *Loader) loadBatch(ctx context.Context, next uint64, verify bool) (uint64, error) {
	entries, err := l.sp.Read(next, l.opts.BatchRows, l.opts.BatchBytes)
	if err != nil {
		return 0, err
	}
	if len(entries) == 0 {
		return next - 1, nil
	}
	lo, hi := entries[0].Seq, entries[len(entries)-1].Seq
	var have map[uint64]bool
	if verify {
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		have, err = l.st.ExistingSeqs(qctx, lo, hi)
		cancel()
		if err != nil {
			return 0, err
		}
	}
	rows := make([]store.Message, 0, len(entries))
	for _, e := range entries {
		if have[e.Seq] {
			continue
		}
		var r store.Message
		if err := r.UnmarshalBinary(e.Data); err != nil {
			return 0, fmt.Errorf("spooled seq %d: %w", e.Seq, err)
		}
		r.Seq = e.Seq
		rows = append(rows, r)
	}
	if len(rows) > 0 {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err = l.st.InsertMessages(ictx, rows)
		cancel()
		if err != nil {
			return 0, err
		}
		l.inserts.Add(1)
		l.rows.Add(uint64(len(rows)))
	}
	l.watermark.Store(hi)
	if err := l.sp.Release(hi); err != nil {
		// Loaded but not released: the next start re-checks these seqs.
		l.logger.Error("releasing loaded records from the spool failed", "err", err, "seq", hi)
	}
	return hi, nil
}
