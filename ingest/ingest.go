// Package ingest turns decoded messages into spool records (the exact line,
// the audit row and the de-duplication key) and makes them durable. Every
// source — callbacks and bulk import alike — enters imbridge through it.
package ingest

import (
	"context"
	"time"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/spool"
	"github.com/imbridge/imbridge/store"
)

// spooler makes records durable.
type spooler interface {
	// Append returns once recs are fsync'd. Returns spool.ErrFull when there
	// is no room, spool.ErrClosed or spool.ErrFailed otherwise.
	Append(ctx context.Context, recs []spool.Record) (spool.Result, error)
}

// Ingester is the one way into the spool.
type Ingester struct {
	sp  spooler
	now func() time.Time
}

// New returns an Ingester writing to sp.
func New(sp spooler) *Ingester { return &Ingester{sp: sp, now: time.Now} }

// Ingest makes msgs durable as one unit: all of them are spooled (or dropped
// as duplicates), or none. msgs must be valid.
func (in *Ingester) Ingest(ctx context.Context, msgs []message.Message) (spool.Result, error) {
	if len(msgs) == 0 {
		return spool.Result{}, nil
	}
	recs := Records(msgs, in.now())
	return in.sp.Append(ctx, recs)
}

// Records encodes msgs as spool records received at the given time.
func Records(msgs []message.Message, received time.Time) []spool.Record {
	var enc message.Encoder
	recs := make([]spool.Record, len(msgs))
	var line, attach []byte
	for i := range msgs {
		m := &msgs[i]
		line = enc.AppendLine(line[:0], m)
		row := Row(m, string(line), received)
		if attach = attachColumn(attach[:0], m); len(attach) > 0 {
			row.Attach = string(attach)
		}
		recs[i] = spool.NewRecord(m.Identity().DedupKey(m.Source), row.BinarySize(), row.AppendBinary)
	}
	return recs
}

// Row is the audit row of m (without seq and attach).
func Row(m *message.Message, line string, received time.Time) store.Message {
	return store.Message{
		Source:      m.Source,
		SourceMsgID: m.SourceID,
		Scene:       m.Scene.String(),
		Type:        uint16(m.Type),
		MsgID:       m.MsgID,
		From:        m.From,
		To:          m.To,
		TID:         m.TID,
		Accid2:      m.Accid2,
		CreateTime:  m.CreateTime,
		ClientType:  uint8(m.ClientType),
		Body:        m.Body,
		Ext:         m.Ext,
		Line:        line,
		ReceivedAt:  received.UnixMilli(),
	}
}

// attachColumn is what the attach column holds: the attach object as JSON
// text, or a custom string payload as it is.
func attachColumn(dst []byte, m *message.Message) []byte {
	if c, ok := m.Attach.(*message.CustomData); ok && c.Object == nil {
		return append(dst, c.String...)
	}
	return message.AttachJSON(dst, m.Attach)
}
