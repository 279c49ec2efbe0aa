package ingest

import (
	"runtime"
	"testing"
	"unsafe"

	"github.com/imbridge/imbridge/message"
)

// Found in review of 057b4db: countWire counted every item of at least
// minWireMessage bytes before a single one is decoded, so a batch of
// 16-byte items that are not messages at all (DecodeWire refuses it at item
// 1) made serve reserve one message.Message per item first: 27 times the
// body, ~1.7 GB for the 64 MiB the admin route takes. wireReserve bounds
// the reservation to a few MiB whatever the body.
func TestRegressDecodeWireReservesLittleBeforeValidating(t *testing.T) {
	const body = 4 << 20
	junk := make([]byte, minWireMessage)
	for i := range junk {
		junk[i] = 0xff // not canonicalVersion: UnmarshalBinary refuses it
	}
	b := append([]byte(nil), wireMagic...)
	items := 0
	for len(b)+2+len(junk) <= body {
		b = append(b, kindMessage, byte(len(junk)))
		b = append(b, junk...)
		items++
	}
	var m message.Message
	if err := m.UnmarshalBinary(junk); err == nil {
		t.Fatal("the junk item decodes; the test needs one that does not")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := DecodeWire(b)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a batch of junk items decoded")
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d junk items in %d bytes: DecodeWire allocated %d bytes before refusing item 1 (sizeof(Message) = %d)",
		items, len(b), alloc, unsafe.Sizeof(message.Message{}))
	bound := uint64(wireReserve)*uint64(unsafe.Sizeof(message.Message{})+unsafe.Sizeof(message.Recall{})) + 1<<20
	if alloc > bound {
		t.Fatalf("DecodeWire allocated %d bytes (%.1fx the body) for a batch it refuses at its first item; want at most %d", alloc, float64(alloc)/float64(len(b)), bound)
	}
}
