package message

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"unicode/utf8"
)

// Recall says that a source message was taken back by its sender (or an
// admin). Yunxin's line format cannot carry a recall, so imbridge records it
// and stops serving and exporting the recalled message: every stored line
// whose (Source, recall key) matches is filtered out of later pulls and
// exports, whether the recall arrived after the message or before it.
type Recall struct {
	Source string // the source of the recalled message
	// Key names the recalled message as Message.RecallKey does (the
	// message's SourceID when it has no RecallKey): Easemob recall_id,
	// Tencent C2C MsgKey, Tencent group "GroupId:MsgSeq", Yunxin msgidServer.
	Key string
	// ID is the recall event's own id when the provider gives one ("" when
	// not); kept for auditing.
	ID string
	// Operator is who recalled it ("" when the provider does not say).
	Operator string
	Time     int64 // epoch ms of the recall (the event's time, else receipt)
}

// RecallKeyOf is the key recalls name m by: RecallKey, or SourceID when empty.
func (m *Message) RecallKeyOf() string {
	if m.RecallKey != "" {
		return m.RecallKey
	}
	return m.SourceID
}

// Validate checks r: a key, UTF-8 fields of bounded length, a plausible time.
func (r *Recall) Validate() error {
	for _, f := range []struct{ name, v string }{{"recall key", r.Key}, {"recall id", r.ID}, {"recall operator", r.Operator}} {
		if len(f.v) > MaxFieldBytes {
			return fieldErr(f.name, "longer than %d bytes", MaxFieldBytes)
		}
		if !utf8.ValidString(f.v) {
			return fieldErr(f.name, "is not valid UTF-8")
		}
	}
	if r.Key == "" {
		return fieldErr("recall key", "required: the id of the recalled message")
	}
	if r.Time < minCreateTime || r.Time >= maxCreateTime {
		return fieldErr("recall time", "%d is not epoch milliseconds between 2000 and 2100", r.Time)
	}
	return nil
}

// DedupKey is the key a recall is remembered under: a retried recall
// callback is stored once. It never collides with a message's key (the
// hash starts with a marker no message key has).
func (r *Recall) DedupKey() DedupKey {
	h := fnv.New128a()
	var buf [8]byte
	h.Write([]byte("\x00recall"))
	for _, s := range []string{r.Source, r.Key} {
		binary.BigEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.Write([]byte(s))
	}
	var k DedupKey
	h.Sum(k[:0])
	return k
}

// AppendBinary appends r's binary form (the spool record body).
func (r *Recall) AppendBinary(dst []byte) []byte {
	for _, s := range []string{r.Source, r.Key, r.ID, r.Operator} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return binary.AppendVarint(dst, r.Time)
}

// BinarySizeHint is an upper bound of AppendBinary's output.
func (r *Recall) BinarySizeHint() int {
	return 5*binary.MaxVarintLen64 + len(r.Source) + len(r.Key) + len(r.ID) + len(r.Operator)
}

// UnmarshalBinary reads what AppendBinary wrote.
func (r *Recall) UnmarshalBinary(b []byte) error {
	var fields [4]string
	for i := range fields {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return errors.New("recall: truncated string")
		}
		fields[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	t, k := binary.Varint(b)
	if k <= 0 {
		return errors.New("recall: bad time")
	}
	if k != len(b) {
		return fmt.Errorf("recall: %d trailing bytes", len(b)-k)
	}
	r.Source, r.Key, r.ID, r.Operator, r.Time = fields[0], fields[1], fields[2], fields[3], t
	return nil
}
