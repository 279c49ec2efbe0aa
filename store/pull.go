package store

import (
	"context"
	"strconv"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
)

// LineFilter selects messages for pull: seq in (After, UpTo], not held, not
// recalled and, when MinCreateTime is not zero, create_time >= MinCreateTime
// (ms).
type LineFilter struct {
	After         uint64
	UpTo          uint64
	MinCreateTime int64
}

// streamWindow is how many seqs one SELECT covers while streaming. Each
// window is sorted by the server on its own, so neither side ever holds more
// than one window, however many messages a pull carries.
const streamWindow = 262144

// NotRecalled is the condition on messages that keeps out recalled ones: a
// recall names a message by (source, recall_key) and wins whenever it is
// stored, before or after the message.
const NotRecalled = "(source, recall_key) NOT IN (SELECT source, recall_key FROM recalls)"

func (f LineFilter) where() (string, []any) {
	q := "seq > ? AND seq <= ? AND held = 0 AND " + NotRecalled
	args := []any{f.After, f.UpTo}
	if f.MinCreateTime != 0 {
		q += " AND create_time >= ?"
		args = append(args, f.MinCreateTime)
	}
	return q, args
}

// lineBlockRows caps the rows of one block the server sends when lines are
// streamed (pull, export). The client decodes a block's strings into one
// fresh buffer grown row by row (ch-go's ColStr: 1.25x steps for strings of
// 128 bytes or more), so a default 65 536-row block of ~300-byte lines is
// copied several times over ~20 MiB buffers that eat the headroom under the
// soft memory limit, and the collector runs nearly all the time. Blocks of
// 4096 rows keep that garbage around a megabyte: the 1M-line pull went from
// 47-51 % to 70-71 % of clickhouse-client, peak RSS 168-172 -> 145-154 MiB.
const lineBlockRows = 4096

// lineSettings are the settings of every query that streams lines, through
// either reader: blocks of lineBlockRows, and no extremes (a profile's
// extremes=1 would add its min and max rows as lines).
var lineSettings = []struct {
	name  string
	value int
}{{"max_block_size", lineBlockRows}, {"extremes", 0}}

// lineBlocks is ctx for a query that streams lines through the driver.
func lineBlocks(ctx context.Context) context.Context {
	set := clickhouse.Settings{}
	for _, s := range lineSettings {
		set[s.name] = s.value
	}
	return clickhouse.Context(ctx, clickhouse.WithSettings(set))
}

// lineSettingsClause is lineSettings as a SELECT's SETTINGS clause, for
// the block reader (which sends no settings of its own).
func lineSettingsClause() string {
	clause := " SETTINGS "
	for i, s := range lineSettings {
		if i > 0 {
			clause += ", "
		}
		clause += s.name + " = " + strconv.Itoa(s.value)
	}
	return clause
}

// NthSeq returns the seq of the n-th message (1-based) that f selects, and
// false when f selects fewer than n.
func (s *Store) NthSeq(ctx context.Context, f LineFilter, n int) (_ uint64, ok bool, err error) {
	defer wrap(&err, "store.NthSeq")
	where, args := f.where()
	args = append(args, n-1)
	var seq uint64
	ok, err = s.firstRow(ctx, "SELECT seq FROM messages WHERE "+where+" ORDER BY seq LIMIT ?, 1", args, &seq)
	return seq, ok, err
}

// StreamLines calls fn with the line of every message f selects, in seq
// order. Memory stays constant: the range is read in windows.
func (s *Store) StreamLines(ctx context.Context, f LineFilter, fn func(line string) error) (err error) {
	defer wrap(&err, "store.StreamLines(%d, %d]", f.After, f.UpTo)
	for lo := f.After; lo < f.UpTo; {
		hi := f.UpTo
		if hi-lo > streamWindow {
			hi = lo + streamWindow
		}
		w := f
		w.After, w.UpTo = lo, hi
		if err := s.streamLineWindow(ctx, w, fn); err != nil {
			return err
		}
		lo = hi
	}
	return nil
}

// streamLineWindow calls fn with the lines of one window of f, through the
// block reader or, when it cannot serve, the driver.
func (s *Store) streamLineWindow(ctx context.Context, f LineFilter, fn func(line string) error) error {
	where, args := f.where()
	q := "SELECT line FROM messages WHERE " + where + " ORDER BY seq"
	var col proto.ColStr
	if done, err := s.queryBlocks(ctx, q, args, proto.Results{{Name: "line", Data: &col}}, func(rows int) error {
		lines := detach(&col)
		for i := range rows {
			if err := fn(lines.at(i)); err != nil {
				return err
			}
		}
		return nil
	}); done {
		return err
	}
	rows, err := s.conn.Query(lineBlocks(ctx), q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var line string
	for rows.Next() {
		if err := rows.Scan(&line); err != nil {
			return err
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Delivery is one pull response written completely.
type Delivery struct {
	At         time.Time
	Puller     string
	CursorFrom uint64
	CursorTo   uint64
	Count      uint64
	Bytes      uint64
	RemoteAddr string
	Advanced   bool // the puller's stored cursor moved to CursorTo
	Duration   time.Duration
}

// RecordDelivery writes d to the deliveries table.
func (s *Store) RecordDelivery(ctx context.Context, d Delivery) (err error) {
	defer wrap(&err, "store.RecordDelivery(%s)", d.Puller)
	var adv uint8
	if d.Advanced {
		adv = 1
	}
	return s.insertRow(ctx, `INSERT INTO deliveries (delivered_at, puller, cursor_from, cursor_to, count, bytes,
 remote_addr, advanced, duration_ms)`,
		d.At.UTC(), d.Puller, d.CursorFrom, d.CursorTo, d.Count, d.Bytes, d.RemoteAddr, adv, uint64(d.Duration.Milliseconds()))
}

// PullCursor returns the puller's stored cursor: the end of its last complete
// delivery that advanced it, 0 when it has none.
func (s *Store) PullCursor(ctx context.Context, puller string) (_ uint64, err error) {
	defer wrap(&err, "store.PullCursor(%s)", puller)
	var v uint64
	err = retryRead(ctx, func() error {
		return s.conn.QueryRow(ctx, "SELECT toUInt64(max(cursor_to)) FROM deliveries WHERE puller = ? AND advanced = 1", puller).Scan(&v)
	})
	return v, err
}
