package loader_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/imbridge/imbridge/loader"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// downStore is a ClickHouse that refuses every INSERT.
type downStore struct{ *store.Store }

func (downStore) InsertMessageChunks(context.Context, func() ([]store.Message, error)) error {
	return errors.New("connection refused")
}

// OldestUnloaded is when the oldest message not yet in ClickHouse arrived:
// it stays put while ClickHouse refuses the load (so its age grows), and
// there is none once everything is loaded.
func TestOldestUnloaded(t *testing.T) {
	st := storetest.Open(t)
	sp := openSpool(t, t.TempDir())
	ld := newLoader(sp, downStore{st}, st, loader.Options{})
	if at, ok := ld.OldestUnloaded(); ok {
		t.Fatalf("empty spool: oldest unloaded %v, want none", at)
	}
	before := time.Now().Add(-time.Millisecond)
	ingestAll(t, sp, messages(0, 10))
	after := time.Now()
	first, ok := ld.OldestUnloaded()
	if !ok || first.Before(before) || first.After(after) {
		t.Fatalf("oldest unloaded %v (%v), want the time the messages were received, between %v and %v", first, ok, before, after)
	}
	stop := run(ld)
	waitFor(t, "a failed load", func() bool { return ld.Stats().Failures > 0 })
	ingestAll(t, sp, messages(10, 20))
	if at, ok := ld.OldestUnloaded(); !ok || !at.Equal(first) {
		t.Errorf("while ClickHouse refuses: %v (%v), want still %v", at, ok, first)
	}
	stop()

	ld = newLoader(sp, st, st, loader.Options{})
	loadUntil(t, ld, 20)
	if at, ok := ld.OldestUnloaded(); ok {
		t.Errorf("everything loaded: oldest unloaded %v, want none", at)
	}
}
