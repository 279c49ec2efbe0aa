package mapping

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/store"
)

// reissueStore is what the re-issue reads and records.
type reissueStore interface {
	PendingReissues(ctx context.Context) ([]uint64, error)
	RecordReissue(ctx context.Context, version, messages uint64) error
	ReissueCandidates(ctx context.Context, from, to, upTo, after uint64, limit int) ([]uint64, error)
	MessagesBySeq(ctx context.Context, seqs []uint64, fn func(*store.Message) error) error
}

// copier spools copies of stored messages.
type copier interface {
	Reissue(ctx context.Context, copies []ingest.Copy) (lastSeq uint64, err error)
}

// Rendered reports the loader's progress: every message rendered with a map
// version below version is in ClickHouse, and every seq up to watermark.
type Rendered func() (version, watermark uint64)

// Reissuer spools copies of the stored messages that new map versions
// change. It runs beside the loader.
type Reissuer struct {
	st       reissueStore
	in       copier
	rendered Rendered
	logger   *slog.Logger
	poll     time.Duration
	maxBytes int // most bytes spooled at once

	done   atomic.Uint64 // highest map version fully re-issued
	copies atomic.Uint64
}

// chunk is how many messages are read at a time.
const chunk = 5000

// NewReissuer returns a re-issuer; poll is how often it looks for new map
// versions (default 1 s); maxBytes bounds one append to the spool (keep it
// well under spool.max_bytes; default 8 MiB).
func NewReissuer(st reissueStore, in copier, rendered Rendered, logger *slog.Logger, poll time.Duration, maxBytes int) *Reissuer {
	if poll <= 0 {
		poll = time.Second
	}
	if maxBytes <= 0 {
		maxBytes = 8 << 20
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reissuer{st: st, in: in, rendered: rendered, logger: logger, poll: poll, maxBytes: maxBytes}
}

// Done is the highest map version whose re-issue finished.
func (r *Reissuer) Done() uint64 { return r.done.Load() }

// Copies counts messages re-issued since start.
func (r *Reissuer) Copies() uint64 { return r.copies.Load() }

// Run re-issues until ctx ends: every committed map version not yet
// re-issued, one at a time in ascending order.
func (r *Reissuer) Run(ctx context.Context) {
	backoff := r.poll
	for ctx.Err() == nil {
		err := func() error {
			pending, err := r.st.PendingReissues(ctx)
			if err != nil {
				return err
			}
			for _, v := range pending {
				if err := r.reissue(ctx, v); err != nil {
					return err
				}
			}
			return nil
		}()
		wait := r.poll
		if err != nil && ctx.Err() == nil {
			r.logger.Warn("re-issuing mapped messages failed; retrying", "err", err, "retry_in", backoff)
			wait, backoff = backoff, min(backoff*2, 30*time.Second)
		} else {
			backoff = r.poll
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// reissue spools copies for map version v and records it once they are all
// in ClickHouse (so a lost spool — a fresh data_dir — redoes it).
func (r *Reissuer) reissue(ctx context.Context, v uint64) error {
	// Wait until every message rendered without v is in ClickHouse: from
	// then on the loader renders with it.
	upTo, err := r.waitFor(ctx, func(version, _ uint64) bool { return version >= v })
	if err != nil {
		return err
	}
	started := time.Now()
	var after, n, last uint64
	for {
		seqs, err := r.st.ReissueCandidates(ctx, v-1, v, upTo, after, chunk)
		if err != nil {
			return err
		}
		if len(seqs) == 0 {
			break
		}
		copies := make([]ingest.Copy, 0, len(seqs))
		err = r.st.MessagesBySeq(ctx, seqs, func(row *store.Message) error {
			m, err := row.Canonical()
			if err != nil {
				return err
			}
			copies = append(copies, ingest.Copy{Origin: row.Origin, ReceivedAt: row.ReceivedAt, Message: m})
			return nil
		})
		if err != nil {
			return err
		}
		for len(copies) > 0 {
			k, size := 0, 0
			for k < len(copies) && (k == 0 || size+copies[k].Message.BinarySizeHint() <= r.maxBytes) {
				size += copies[k].Message.BinarySizeHint()
				k++
			}
			seq, err := r.spool(ctx, copies[:k])
			if err != nil {
				return err
			}
			last = max(last, seq)
			n += uint64(k)
			r.copies.Add(uint64(k))
			copies = copies[k:]
		}
		after = seqs[len(seqs)-1]
	}
	if last > 0 {
		if _, err := r.waitFor(ctx, func(_, wm uint64) bool { return wm >= last }); err != nil {
			return err
		}
	}
	if err := r.st.RecordReissue(ctx, v, n); err != nil {
		return err
	}
	r.done.Store(max(r.done.Load(), v))
	r.logger.Info("map version applied: changed messages re-issued", "version", v,
		"messages", n, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// waitFor polls the loader's progress until cond holds and returns the
// watermark then.
func (r *Reissuer) waitFor(ctx context.Context, cond func(version, watermark uint64) bool) (uint64, error) {
	for {
		v, wm := r.rendered()
		if cond(v, wm) {
			return wm, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// spool appends copies, waiting while the spool is full (the loader drains
// it meanwhile).
func (r *Reissuer) spool(ctx context.Context, copies []ingest.Copy) (uint64, error) {
	wait := 100 * time.Millisecond
	for {
		seq, err := r.in.Reissue(ctx, copies)
		if err == nil || !isFull(err) {
			return seq, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func isFull(err error) bool { return errors.Is(err, ingest.ErrFull) }
