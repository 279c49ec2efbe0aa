package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/imbridge/imbridge/message"
)

// The batch wire format carries a bulk import from `imbridge import` to a
// running serve's admin API (POST /v1/admin/import): canonical messages and
// recalls, already decoded from the provider's files, in the same binary
// forms the spool records use, so serve only validates and spools them.
//
//	"IMB1" | item* ;  item = kind (1 message, 2 recall) | uvarint length | body
var wireMagic = []byte("IMB1")

// ErrBadWire is returned by DecodeWire for a body that is not a wire batch.
var ErrBadWire = errors.New("bad import batch")

// AppendWire appends the wire form of msgs and recalls to dst.
func AppendWire(dst []byte, msgs []message.Message, recalls []message.Recall) []byte {
	dst = append(dst, wireMagic...)
	var scratch []byte
	for i := range msgs {
		scratch = msgs[i].AppendBinary(scratch[:0])
		dst = appendWireItem(dst, kindMessage, scratch)
	}
	for i := range recalls {
		scratch = recalls[i].AppendBinary(scratch[:0])
		dst = appendWireItem(dst, kindRecall, scratch)
	}
	return dst
}

func appendWireItem(dst []byte, kind byte, body []byte) []byte {
	dst = append(dst, kind)
	dst = binary.AppendUvarint(dst, uint64(len(body)))
	return append(dst, body...)
}

// DecodeWire reads a wire batch. Messages must come before recalls (the
// order AppendWire writes), so that an *InvalidError index means the same on
// both sides.
func DecodeWire(b []byte) (msgs []message.Message, recalls []message.Recall, err error) {
	if len(b) < len(wireMagic) || string(b[:len(wireMagic)]) != string(wireMagic) {
		return nil, nil, fmt.Errorf("%w: it does not start with %q", ErrBadWire, wireMagic)
	}
	b = b[len(wireMagic):]
	// Size the slices first: a message is a large struct, and growing the
	// slice by doubling copied each one several times over, with a write
	// barrier per pointer (more than half of decoding an import batch). At
	// most wireReserve items are reserved before any is decoded, so a batch
	// of undecodable items costs a few MiB, not 27 times its size.
	nm, nr := countWire(b)
	msgs, recalls = make([]message.Message, 0, min(nm, wireReserve)), make([]message.Recall, 0, min(nr, wireReserve))
	for item := 1; len(b) > 0; item++ {
		kind, body, rest, ok := splitWireItem(b)
		if !ok {
			return nil, nil, fmt.Errorf("%w: item %d is truncated", ErrBadWire, item)
		}
		b = rest
		switch kind {
		case kindMessage:
			if len(recalls) > 0 {
				return nil, nil, fmt.Errorf("%w: item %d: a message after a recall", ErrBadWire, item)
			}
			var m message.Message
			if err := m.UnmarshalBinary(body); err != nil {
				return nil, nil, fmt.Errorf("%w: item %d: %v", ErrBadWire, item, err)
			}
			msgs = append(msgs, m)
		case kindRecall:
			var r message.Recall
			if err := r.UnmarshalBinary(body); err != nil {
				return nil, nil, fmt.Errorf("%w: item %d: %v", ErrBadWire, item, err)
			}
			recalls = append(recalls, r)
		default:
			return nil, nil, fmt.Errorf("%w: item %d: unknown kind %d", ErrBadWire, item, kind)
		}
	}
	return msgs, recalls, nil
}

// minWireMessage and minWireRecall are the fewest bytes a message's and a
// recall's binary forms take (TestMinWireItems): shorter items are not
// counted, so a batch of empty items cannot make DecodeWire reserve more
// than a batch of real ones of the same size would need.
const (
	minWireMessage = 16
	minWireRecall  = 4
	// wireReserve bounds what DecodeWire reserves up front: about 8 MiB of
	// messages. An import batch (a 1 MiB chunk of lines) holds fewer.
	wireReserve = 1 << 14
)

// countWire counts the messages and recalls of a wire batch's items (after
// the magic), as far as their framing holds: DecodeWire reports the errors.
func countWire(b []byte) (msgs, recalls int) {
	for len(b) > 0 {
		kind, body, rest, ok := splitWireItem(b)
		if !ok {
			break
		}
		switch {
		case kind == kindMessage && len(body) >= minWireMessage:
			msgs++
		case kind == kindRecall && len(body) >= minWireRecall:
			recalls++
		}
		b = rest
	}
	return msgs, recalls
}

// splitWireItem splits the first item off b (not empty): its kind, its
// body and what follows; ok is false when the item is truncated.
func splitWireItem(b []byte) (kind byte, body, rest []byte, ok bool) {
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) {
		return 0, nil, nil, false
	}
	end := 1 + k + int(n)
	return b[0], b[1+k : end], b[end:], true
}
