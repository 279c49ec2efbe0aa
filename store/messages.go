package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Message is one row of the messages table. Seq is assigned by the spool;
// ReceivedAt is Unix milliseconds.
type Message struct {
	Seq         uint64
	Source      string
	SourceMsgID string
	Scene       string // p2p or team
	Type        uint16
	MsgID       int64
	From        string // from (p2p) or accid (team)
	To          string // to (p2p)
	TID         int64  // tid (team)
	Accid2      string
	CreateTime  int64 // ms
	ClientType  uint8
	Body        string
	Attach      string
	Ext         string
	Line        string
	ReceivedAt  int64 // ms
}

const rowCodecVersion = 1

// ErrBadRecord is returned when a spooled record cannot be decoded.
var ErrBadRecord = errors.New("bad message record")

// AppendBinary appends the row's spool encoding to dst. Seq is not part of it:
// the spool index is the seq.
func (m *Message) AppendBinary(dst []byte) []byte {
	dst = append(dst, rowCodecVersion)
	for _, s := range []string{m.Source, m.SourceMsgID, m.Scene} {
		dst = appendString(dst, s)
	}
	dst = binary.AppendUvarint(dst, uint64(m.Type))
	dst = binary.AppendVarint(dst, m.MsgID)
	dst = appendString(dst, m.From)
	dst = appendString(dst, m.To)
	dst = binary.AppendVarint(dst, m.TID)
	dst = appendString(dst, m.Accid2)
	dst = binary.AppendVarint(dst, m.CreateTime)
	dst = append(dst, m.ClientType)
	for _, s := range []string{m.Body, m.Attach, m.Ext, m.Line} {
		dst = appendString(dst, s)
	}
	return binary.AppendVarint(dst, m.ReceivedAt)
}

// BinarySize is about how many bytes AppendBinary appends (never less).
func (m *Message) BinarySize() int {
	n := 1 + 1 + 1 + 3*binary.MaxVarintLen64 + 3*binary.MaxVarintLen64 + 2*binary.MaxVarintLen64
	for _, s := range []string{m.Source, m.SourceMsgID, m.Scene, m.From, m.To, m.Accid2, m.Body, m.Attach, m.Ext, m.Line} {
		n += binary.MaxVarintLen64 + len(s)
	}
	return n
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// UnmarshalBinary decodes what AppendBinary wrote.
func (m *Message) UnmarshalBinary(b []byte) error {
	r := reader{b: b}
	if v := r.byte(); v != rowCodecVersion {
		return fmt.Errorf("%w: version %d", ErrBadRecord, v)
	}
	m.Source = r.str()
	m.SourceMsgID = r.str()
	m.Scene = r.str()
	m.Type = uint16(r.uvarint())
	m.MsgID = r.varint()
	m.From = r.str()
	m.To = r.str()
	m.TID = r.varint()
	m.Accid2 = r.str()
	m.CreateTime = r.varint()
	m.ClientType = r.byte()
	m.Body = r.str()
	m.Attach = r.str()
	m.Ext = r.str()
	m.Line = r.str()
	m.ReceivedAt = r.varint()
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadRecord, len(r.b))
	}
	return nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated", ErrBadRecord)
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string {
	n := r.uvarint()
	if r.err != nil || uint64(len(r.b)) < n {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

const insertMessagesSQL = `INSERT INTO messages (seq, source, source_msg_id, scene, type, msgid, from_account, to_account,
 tid, accid2, create_time, created_at, client_type, body, attach, ext, line, received_at)`

// InsertMessages writes rows in one INSERT (one block). Callers keep batches
// well under max_insert_block_size so the block is written atomically.
func (s *Store) InsertMessages(ctx context.Context, rows []Message) (err error) {
	if len(rows) == 0 {
		return nil
	}
	defer wrap(&err, "store.InsertMessages(%d rows)", len(rows))
	batch, err := s.conn.PrepareBatch(ctx, insertMessagesSQL)
	if err != nil {
		return err
	}
	defer batch.Close() // a no-op after Send; ends the query if Send is never reached
	n := len(rows)
	var (
		seq        = make([]uint64, n)
		source     = make([]string, n)
		sourceID   = make([]string, n)
		scene      = make([]string, n)
		typ        = make([]uint16, n)
		msgid      = make([]int64, n)
		from       = make([]string, n)
		to         = make([]string, n)
		tid        = make([]int64, n)
		accid2     = make([]string, n)
		createTime = make([]int64, n)
		createdAt  = make([]time.Time, n)
		clientType = make([]uint8, n)
		body       = make([]string, n)
		attach     = make([]string, n)
		ext        = make([]string, n)
		line       = make([]string, n)
		receivedAt = make([]time.Time, n)
	)
	for i := range rows {
		r := &rows[i]
		seq[i], source[i], sourceID[i], scene[i] = r.Seq, r.Source, r.SourceMsgID, r.Scene
		typ[i], msgid[i], from[i], to[i], tid[i], accid2[i] = r.Type, r.MsgID, r.From, r.To, r.TID, r.Accid2
		createTime[i], createdAt[i], clientType[i] = r.CreateTime, msTime(r.CreateTime), r.ClientType
		body[i], attach[i], ext[i], line[i], receivedAt[i] = r.Body, r.Attach, r.Ext, r.Line, msTime(r.ReceivedAt)
	}
	for i, col := range []any{seq, source, sourceID, scene, typ, msgid, from, to, tid, accid2,
		createTime, createdAt, clientType, body, attach, ext, line, receivedAt} {
		if err := batch.Column(i).Append(col); err != nil {
			return err
		}
	}
	return batch.Send()
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

// ExistingSeqs returns which seqs in [lo, hi] are already stored.
func (s *Store) ExistingSeqs(ctx context.Context, lo, hi uint64) (_ map[uint64]bool, err error) {
	defer wrap(&err, "store.ExistingSeqs(%d, %d)", lo, hi)
	var out map[uint64]bool
	err = retryRead(ctx, func() error {
		rows, err := s.conn.Query(ctx, "SELECT seq FROM messages WHERE seq >= ? AND seq <= ?", lo, hi)
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

// MaxSeq returns the highest stored seq, 0 when the table is empty.
func (s *Store) MaxSeq(ctx context.Context) (_ uint64, err error) {
	defer wrap(&err, "store.MaxSeq")
	var v uint64
	err = retryRead(ctx, func() error {
		return s.conn.QueryRow(ctx, "SELECT toUInt64(max(seq)) FROM messages").Scan(&v)
	})
	return v, err
}

// Identity is what de-duplication needs to know of a stored message.
type Identity struct {
	Source     string
	Scene      string
	MsgID      int64
	From       string
	To         string
	TID        int64
	CreateTime int64
}

// RecentIdentities calls fn for every message received at or after since.
func (s *Store) RecentIdentities(ctx context.Context, since time.Time, fn func(Identity)) (err error) {
	defer wrap(&err, "store.RecentIdentities")
	rows, err := s.conn.Query(ctx, `SELECT source, scene, msgid, from_account, to_account, tid, create_time
 FROM messages WHERE received_at >= ?`, since.UTC())
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id Identity
		if err := rows.Scan(&id.Source, &id.Scene, &id.MsgID, &id.From, &id.To, &id.TID, &id.CreateTime); err != nil {
			return err
		}
		fn(id)
	}
	return rows.Err()
}

func wrap(errp *error, format string, args ...any) {
	if *errp != nil {
		*errp = fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), *errp)
	}
}
