package ingest

import (
	"testing"

	"github.com/imbridge/imbridge/message"
)

// The capacity DecodeWire reserves counts only items of at least
// minWireMessage or minWireRecall bytes: no message or recall is shorter.
func TestMinWireItems(t *testing.T) {
	var m message.Message
	if n := len(m.AppendBinary(nil)); n < minWireMessage {
		t.Fatalf("an empty message takes %d bytes, minWireMessage is %d", n, minWireMessage)
	}
	var r message.Recall
	if n := len(r.AppendBinary(nil)); n < minWireRecall {
		t.Fatalf("an empty recall takes %d bytes, minWireRecall is %d", n, minWireRecall)
	}
	// A batch of empty items reserves nothing and fails at its first item.
	for _, kind := range []byte{kindMessage, kindRecall} {
		b := append([]byte(nil), wireMagic...)
		for range 1000 {
			b = append(b, kind, 0)
		}
		if nm, nr := countWire(b[len(wireMagic):]); nm+nr != 0 {
			t.Fatalf("kind %d: countWire counted %d + %d empty items", kind, nm, nr)
		}
		if _, _, err := DecodeWire(b); err == nil {
			t.Fatalf("kind %d: a batch of empty items decoded", kind)
		}
	}
	// Real items are counted exactly.
	b := AppendWire(nil, make([]message.Message, 3), make([]message.Recall, 2))
	if nm, nr := countWire(b[len(wireMagic):]); nm != 3 || nr != 2 {
		t.Fatalf("countWire = %d, %d; want 3, 2", nm, nr)
	}
}
