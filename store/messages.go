package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/imbridge/imbridge/message"
)

// Message is one row of the messages table: the canonical message (every
// source fact needed to render it again), its rendering at load time, and
// where it sits in the ingest order. ReceivedAt is Unix milliseconds.
type Message struct {
	Seq           uint64
	Origin        uint64 // seq of the original; a re-issued copy points back to it
	Source        string
	SourceMsgID   string
	RecallKey     string // the key recalls name it by (RecallKey, else SourceMsgID)
	Scene         string // p2p or team
	Type          uint16
	MsgID         int64
	From          string // from (p2p) or accid (team)
	To            string // to (p2p)
	TID           int64  // the line's tid (team); 0 while held
	GroupID       string // the provider's group id (team, provider sources)
	Accid2        string
	TInfo         string // tinfo keys 14–24 as JSON, without tid
	CreateTime    int64  // ms
	ClientType    uint8
	Body          string
	Attach        string // the original attach (media URLs before the URL map)
	AttachURL     string // the original media URL, "" when none
	Ext           string
	Line          string // the line served, "" while held
	Held          bool
	RenderVersion uint64 // the map version Line was rendered with
	ReceivedAt    int64  // ms
}

// Canonical rebuilds the canonical message the row was made from.
func (r *Message) Canonical() (message.Message, error) {
	m := message.Message{
		Source: r.Source, SourceID: r.SourceMsgID, RecallKey: r.RecallKey, GroupID: r.GroupID,
		Type: message.Type(r.Type), MsgID: r.MsgID, From: r.From, To: r.To, CreateTime: r.CreateTime,
		ClientType: message.ClientType(r.ClientType), Body: r.Body, Ext: r.Ext, Accid2: r.Accid2,
	}
	if m.RecallKey == m.SourceID { // the column holds the effective key
		m.RecallKey = ""
	}
	switch r.Scene {
	case "p2p":
		m.Scene = message.P2P
	case "team":
		m.Scene = message.Team
		if r.GroupID == "" {
			m.TID = r.TID
		}
	default:
		return m, fmt.Errorf("seq %d: scene %q", r.Seq, r.Scene)
	}
	var err error
	if m.Attach, err = message.AttachFromColumn(m.Type, r.Attach); err != nil {
		return m, fmt.Errorf("seq %d: %w", r.Seq, err)
	}
	if m.TInfo, err = message.TInfoFromColumn(r.TInfo); err != nil {
		return m, fmt.Errorf("seq %d: %w", r.Seq, err)
	}
	return m, nil
}

// messageColumns are the columns of Message, in its field order.
const messageColumns = `seq, origin, source, source_msg_id, recall_key, scene, type, msgid, from_account, to_account,
 tid, group_id, accid2, tinfo, create_time, client_type, body, attach, attach_url, ext, line, held, render_version, received_at`

// InsertMessages writes rows in one INSERT (one block). A block whose rows
// fall into several partitions (months of received_at) becomes visible one
// part at a time: readers that need a complete prefix of seqs count it (see
// CountSeqs); the pull uses the loader's watermark.
func (s *Store) InsertMessages(ctx context.Context, rows []Message) error {
	done := false
	return s.InsertMessageChunks(ctx, func() ([]Message, error) {
		if done {
			return nil, nil
		}
		done = true
		return rows, nil
	})
}

// InsertMessageChunks writes, in one INSERT of one block, the rows next
// returns until it returns none. Each chunk is copied into the driver's
// columns before next is called again, so next may reuse its slice: what
// the caller decodes and renders is held one chunk at a time, the block
// once. Nothing reaches the server before next returned its last chunk:
// when next fails the INSERT is abandoned with nothing in it, and nothing
// is sent when next's first call returns no rows. An INSERT that fails
// while it is sent may still be committed by the server after this returns
// (18.16 takes a dropped connection for the end of the data): give it a
// query id (WithQueryID) and wait for QueryRunning to turn false before
// checking ExistingSeqs.
func (s *Store) InsertMessageChunks(ctx context.Context, next func() ([]Message, error)) error {
	rows, err := next()
	if err != nil || len(rows) == 0 {
		return err
	}
	n := 0
	fail := func(err error) error { return fmt.Errorf("store.InsertMessages(%d rows): %w", n, err) }
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO messages ("+messageColumns+", created_at)")
	if err != nil {
		return fail(err)
	}
	defer batch.Close() // a no-op after Send or Abort
	var cols messageBlock
	for {
		n += len(rows)
		for i, col := range cols.fill(rows) {
			if err := batch.Column(i).Append(col); err != nil {
				_ = batch.Abort()
				return fail(err)
			}
		}
		if rows, err = next(); err != nil {
			_ = batch.Abort()
			return err // the caller's, as it is
		}
		if len(rows) == 0 {
			if err := batch.Send(); err != nil {
				return fail(err)
			}
			return nil
		}
	}
}

// WithQueryID gives the query made with the returned context the id id.
func WithQueryID(ctx context.Context, id string) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithQueryID(id))
}

// QueryRunning reports whether the server still runs the query with id.
func (s *Store) QueryRunning(ctx context.Context, id string) (_ bool, err error) {
	defer wrap(&err, "store.QueryRunning")
	var n uint64
	err = s.conn.QueryRow(ctx, "SELECT count() FROM system.processes WHERE query_id = ?", id).Scan(&n)
	return n > 0, err
}

// messageBlock holds one chunk's columns, in messageColumns order plus
// created_at; fill reuses them from chunk to chunk.
type messageBlock struct {
	seq, origin, renderVersion                           []uint64
	typ                                                  []uint16
	msgid, tid, createTime                               []int64
	clientType, held                                     []uint8
	receivedAt, createdAt                                []time.Time
	source, sourceID, recallKey, scene, from, to         []string
	groupID, accid2, tinfo, body, attach, attachURL, ext []string
	line                                                 []string
}

// fill sets the columns to rows and returns them in INSERT order.
func (b *messageBlock) fill(rows []Message) []any {
	b.seq, b.origin, b.renderVersion = b.seq[:0], b.origin[:0], b.renderVersion[:0]
	b.typ, b.msgid, b.tid, b.createTime = b.typ[:0], b.msgid[:0], b.tid[:0], b.createTime[:0]
	b.clientType, b.held, b.receivedAt, b.createdAt = b.clientType[:0], b.held[:0], b.receivedAt[:0], b.createdAt[:0]
	b.source, b.sourceID, b.recallKey, b.scene, b.from, b.to = b.source[:0], b.sourceID[:0], b.recallKey[:0], b.scene[:0], b.from[:0], b.to[:0]
	b.groupID, b.accid2, b.tinfo, b.body, b.attach, b.attachURL, b.ext = b.groupID[:0], b.accid2[:0], b.tinfo[:0], b.body[:0], b.attach[:0], b.attachURL[:0], b.ext[:0]
	b.line = b.line[:0]
	for i := range rows {
		r := &rows[i]
		var held uint8
		if r.Held {
			held = 1
		}
		b.seq, b.origin, b.renderVersion = append(b.seq, r.Seq), append(b.origin, r.Origin), append(b.renderVersion, r.RenderVersion)
		b.typ, b.msgid, b.tid, b.createTime = append(b.typ, r.Type), append(b.msgid, r.MsgID), append(b.tid, r.TID), append(b.createTime, r.CreateTime)
		b.clientType, b.held = append(b.clientType, r.ClientType), append(b.held, held)
		b.receivedAt, b.createdAt = append(b.receivedAt, msTime(r.ReceivedAt)), append(b.createdAt, msTime(r.CreateTime))
		b.source, b.sourceID, b.recallKey, b.scene = append(b.source, r.Source), append(b.sourceID, r.SourceMsgID), append(b.recallKey, r.RecallKey), append(b.scene, r.Scene)
		b.from, b.to, b.groupID, b.accid2, b.tinfo = append(b.from, r.From), append(b.to, r.To), append(b.groupID, r.GroupID), append(b.accid2, r.Accid2), append(b.tinfo, r.TInfo)
		b.body, b.attach, b.attachURL, b.ext, b.line = append(b.body, r.Body), append(b.attach, r.Attach), append(b.attachURL, r.AttachURL), append(b.ext, r.Ext), append(b.line, r.Line)
	}
	return []any{b.seq, b.origin, b.source, b.sourceID, b.recallKey, b.scene, b.typ, b.msgid, b.from, b.to,
		b.tid, b.groupID, b.accid2, b.tinfo, b.createTime, b.clientType, b.body, b.attach, b.attachURL, b.ext, b.line,
		b.held, b.renderVersion, b.receivedAt, b.createdAt}
}

// MessagesBySeq calls fn with the stored rows of seqs (in seq order).
func (s *Store) MessagesBySeq(ctx context.Context, seqs []uint64, fn func(*Message) error) (err error) {
	if len(seqs) == 0 {
		return nil
	}
	defer wrap(&err, "store.MessagesBySeq(%d seqs)", len(seqs))
	list := make([]byte, 0, len(seqs)*8)
	for i, v := range seqs {
		if i > 0 {
			list = append(list, ',')
		}
		list = strconv.AppendUint(list, v, 10)
	}
	rows, err := s.conn.Query(ctx, "SELECT "+messageColumns+" FROM messages WHERE seq IN ("+string(list)+") ORDER BY seq")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var r Message
		var held uint8
		var receivedAt time.Time
		if err := rows.Scan(&r.Seq, &r.Origin, &r.Source, &r.SourceMsgID, &r.RecallKey, &r.Scene, &r.Type, &r.MsgID,
			&r.From, &r.To, &r.TID, &r.GroupID, &r.Accid2, &r.TInfo, &r.CreateTime, &r.ClientType, &r.Body, &r.Attach,
			&r.AttachURL, &r.Ext, &r.Line, &held, &r.RenderVersion, &receivedAt); err != nil {
			return err
		}
		r.Held, r.ReceivedAt = held == 1, receivedAt.UnixMilli()
		if err := fn(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// msTime converts Unix milliseconds to a DateTime value, clamped to the range
// a ClickHouse DateTime holds.
func msTime(ms int64) time.Time {
	sec := ms / 1000
	if sec < 0 {
		sec = 0
	}
	if sec > 4294967295 {
		sec = 4294967295
	}
	return time.Unix(sec, 0).UTC()
}

// ExistingSeqs returns which seqs in [lo, hi] are already stored (as a
// message or as a recall).
func (s *Store) ExistingSeqs(ctx context.Context, lo, hi uint64) (_ map[uint64]bool, err error) {
	defer wrap(&err, "store.ExistingSeqs(%d, %d)", lo, hi)
	var out map[uint64]bool
	err = retryRead(ctx, func() error {
		rows, err := s.conn.Query(ctx, `SELECT seq FROM messages WHERE seq >= ? AND seq <= ?
 UNION ALL SELECT seq FROM recalls WHERE seq >= ? AND seq <= ?`, lo, hi, lo, hi)
		if err != nil {
			return err
		}
		defer rows.Close()
		out = map[uint64]bool{}
		for rows.Next() {
			var v uint64
			if err := rows.Scan(&v); err != nil {
				return err
			}
			out[v] = true
		}
		return rows.Err()
	})
	return out, err
}

// MaxSeq returns the highest stored seq (of a message or a recall), 0 when
// none is stored.
func (s *Store) MaxSeq(ctx context.Context) (_ uint64, err error) {
	defer wrap(&err, "store.MaxSeq")
	var m, r uint64
	err = retryRead(ctx, func() error {
		if err := s.conn.QueryRow(ctx, "SELECT toUInt64(max(seq)) FROM messages").Scan(&m); err != nil {
			return err
		}
		return s.conn.QueryRow(ctx, "SELECT toUInt64(max(seq)) FROM recalls").Scan(&r)
	})
	return max(m, r), err
}

// RecentIdentities calls fn with the de-duplication identity and source of
// every original message (not re-issued copies) received at or after since.
func (s *Store) RecentIdentities(ctx context.Context, since time.Time, fn func(source string, id message.Identity)) (err error) {
	defer wrap(&err, "store.RecentIdentities")
	rows, err := s.conn.Query(ctx, `SELECT source, scene, msgid, from_account, to_account, tid, group_id, create_time
 FROM messages WHERE received_at >= ? AND origin = seq`, since.UTC())
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var source, scene string
		var id message.Identity
		if err := rows.Scan(&source, &scene, &id.MsgID, &id.From, &id.To, &id.TID, &id.GroupID, &id.CreateTime); err != nil {
			return err
		}
		id.Scene = message.P2P
		if scene == "team" {
			id.Scene = message.Team
			if id.GroupID != "" {
				id.TID = 0
			}
		}
		fn(source, id)
	}
	return rows.Err()
}

func wrap(errp *error, format string, args ...any) {
	if *errp != nil {
		*errp = fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), *errp)
	}
}

// Recall is one row of the recalls table. Times are Unix milliseconds.
type Recall struct {
	Seq        uint64
	Source     string
	RecallKey  string
	RecallID   string
	Operator   string
	RecallTime int64
	ReceivedAt int64
}

// InsertRecalls writes rows in one INSERT.
func (s *Store) InsertRecalls(ctx context.Context, rows []Recall) (err error) {
	if len(rows) == 0 {
		return nil
	}
	defer wrap(&err, "store.InsertRecalls(%d rows)", len(rows))
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO recalls (seq, source, recall_key, recall_id, operator, recalled_at, recall_time, received_at)")
	if err != nil {
		return err
	}
	defer batch.Close()
	for i := range rows {
		r := &rows[i]
		if err := batch.Append(r.Seq, r.Source, r.RecallKey, r.RecallID, r.Operator, msTime(r.RecallTime), r.RecallTime, msTime(r.ReceivedAt)); err != nil {
			return err
		}
	}
	return batch.Send()
}
