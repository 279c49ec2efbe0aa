// Package ingest is the one way into imbridge: it validates canonical
// messages and makes them durable in the spool (the callback sources, bulk
// import and the re-issue of mapped messages all go through it), and it
// defines the spool record that the loader reads back.
package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/spool"
)

// Errors of Ingest and Reissue. Callers answer ErrFull and ErrUnavailable
// with 503 so that providers retry.
var (
	// ErrFull: the spool holds spool.max_bytes not yet loaded into ClickHouse.
	ErrFull = errors.New("spool full: imbridge cannot store more until ClickHouse catches up")
	// ErrUnavailable: the spool is shutting down or cannot write to disk.
	ErrUnavailable = errors.New("ingest unavailable")
)

// InvalidError says which message of a request is invalid; nothing of the
// request was stored.
type InvalidError struct {
	Index int // 0-based position in the request
	Err   error
}

func (e *InvalidError) Error() string { return fmt.Sprintf("message %d: %v", e.Index+1, e.Err) }
func (e *InvalidError) Unwrap() error { return e.Err }

// Result says what Ingest did with a request's messages and recalls.
type Result struct {
	Accepted   int // new messages, now durable
	Duplicates int // already received within the de-duplication window
	Recalls    int // new recalls, now durable (a retried recall counts as a duplicate)
	// Dropped lists, in ascending order, the positions of the duplicates
	// (messages first, then recalls: a recall's position counts after the
	// messages).
	Dropped []int
}

// spooler makes records durable.
type spooler interface {
	Append(ctx context.Context, recs []spool.Record) (spool.Result, error)
}

// Ingester validates messages and spools them.
type Ingester struct {
	sp  spooler
	now func() time.Time
}

// New returns an Ingester writing to sp.
func New(sp spooler) *Ingester { return &Ingester{sp: sp, now: time.Now} }

// Ingest makes msgs, all from source, durable as one unit: every one of them
// is spooled (or dropped as a duplicate), or none is. It returns once they
// are fsync'd. Messages without a Source get source; one with another
// source, or one that fails validation, fails the whole request with an
// *InvalidError.
func (in *Ingester) Ingest(ctx context.Context, source string, msgs []message.Message) (Result, error) {
	return in.IngestBatch(ctx, source, msgs, nil)
}

// IngestBatch is Ingest for a request that also carries recalls: messages
// and recalls are made durable together, as one unit. A recall's
// InvalidError index counts after the messages.
func (in *Ingester) IngestBatch(ctx context.Context, source string, msgs []message.Message, recalls []message.Recall) (Result, error) {
	if len(msgs) == 0 && len(recalls) == 0 {
		return Result{}, nil
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Source == "" {
			m.Source = source
		}
		if m.Source != source {
			return Result{}, &InvalidError{Index: i, Err: fmt.Errorf("source %q in a request of source %q", m.Source, source)}
		}
		if err := m.Validate(); err != nil {
			return Result{}, &InvalidError{Index: i, Err: err}
		}
	}
	for i := range recalls {
		r := &recalls[i]
		if r.Source == "" {
			r.Source = source
		}
		if r.Source != source {
			return Result{}, &InvalidError{Index: len(msgs) + i, Err: fmt.Errorf("recall of source %q in a request of source %q", r.Source, source)}
		}
		if err := r.Validate(); err != nil {
			return Result{}, &InvalidError{Index: len(msgs) + i, Err: err}
		}
	}
	received := in.now().UnixMilli()
	recs := make([]spool.Record, 0, len(msgs)+len(recalls))
	for i := range msgs {
		m := &msgs[i]
		recs = append(recs, spool.NewRecord(m.Identity().DedupKey(m.Source), recordSizeHint(m), func(dst []byte) []byte {
			return appendRecord(dst, m, received, 0)
		}))
	}
	for i := range recalls {
		r := &recalls[i]
		recs = append(recs, spool.NewRecord(r.DedupKey(), 1+binary.MaxVarintLen64+r.BinarySizeHint(), func(dst []byte) []byte {
			return appendRecallRecord(dst, r, received)
		}))
	}
	res, err := in.sp.Append(ctx, recs)
	if err != nil {
		return Result{}, spoolError(err)
	}
	out := Result{Accepted: res.Accepted, Duplicates: res.Duplicates, Dropped: res.Dropped}
	if len(recalls) > 0 {
		// The spool counts per request; split its counts between the kinds.
		dupRecalls := 0
		for _, i := range res.Dropped {
			if i >= len(msgs) {
				dupRecalls++
			}
		}
		out.Recalls = len(recalls) - dupRecalls
		out.Accepted -= out.Recalls // Duplicates counts both kinds
	}
	return out, nil
}

// Copy is a stored message spooled again under a new seq (same msgid, same
// identity), so that it is rendered with the current maps and served again.
type Copy struct {
	Origin     uint64 // seq of the original
	ReceivedAt int64  // ms, the original's
	Message    message.Message
}

// Reissue spools copies; they bypass de-duplication. It returns the seq of
// the last one.
func (in *Ingester) Reissue(ctx context.Context, copies []Copy) (uint64, error) {
	recs := make([]spool.Record, len(copies))
	for i := range copies {
		c := &copies[i]
		recs[i] = spool.NewReissue(c.Message.Identity().DedupKey(c.Message.Source), recordSizeHint(&c.Message), func(dst []byte) []byte {
			return appendRecord(dst, &c.Message, c.ReceivedAt, c.Origin)
		})
	}
	res, err := in.sp.Append(ctx, recs)
	if err != nil {
		return 0, spoolError(err)
	}
	return res.LastSeq, nil
}

func spoolError(err error) error {
	switch {
	case errors.Is(err, spool.ErrFull):
		return fmt.Errorf("%w (spool.max_bytes)", ErrFull)
	case errors.Is(err, spool.ErrClosed), errors.Is(err, spool.ErrFailed):
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}

// Spooled record kinds: a message (kind, received time, origin, canonical
// message) or a recall (kind, received time, recall).
const (
	kindMessage = 1
	kindRecall  = 2
)

// Spooled is a record read back from the spool: a message, or (IsRecall) a
// recall.
type Spooled struct {
	Message    message.Message
	ReceivedAt int64  // ms
	Origin     uint64 // seq of the original for a re-issued copy, 0 for an original
	IsRecall   bool
	Recall     message.Recall
}

func recordSizeHint(m *message.Message) int { return 1 + 2*binary.MaxVarintLen64 + m.BinarySizeHint() }

func appendRecord(dst []byte, m *message.Message, received int64, origin uint64) []byte {
	dst = append(dst, kindMessage)
	dst = binary.AppendVarint(dst, received)
	dst = binary.AppendUvarint(dst, origin)
	return m.AppendBinary(dst)
}

func appendRecallRecord(dst []byte, r *message.Recall, received int64) []byte {
	dst = append(dst, kindRecall)
	dst = binary.AppendVarint(dst, received)
	return r.AppendBinary(dst)
}

// Decode reads a spooled record.
func Decode(data []byte) (Spooled, error) {
	var s Spooled
	if len(data) == 0 || (data[0] != kindMessage && data[0] != kindRecall) {
		return s, errors.New("spooled record: unknown kind")
	}
	b := data[1:]
	v, n := binary.Varint(b)
	if n <= 0 {
		return s, errors.New("spooled record: bad received time")
	}
	s.ReceivedAt, b = v, b[n:]
	if data[0] == kindRecall {
		s.IsRecall = true
		if err := s.Recall.UnmarshalBinary(b); err != nil {
			return s, fmt.Errorf("spooled record: %w", err)
		}
		return s, nil
	}
	o, n := binary.Uvarint(b)
	if n <= 0 {
		return s, errors.New("spooled record: bad origin")
	}
	s.Origin, b = o, b[n:]
	if err := s.Message.UnmarshalBinary(b); err != nil {
		return s, fmt.Errorf("spooled record: %w", err)
	}
	return s, nil
}
