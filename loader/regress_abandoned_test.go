package loader_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imbridge/imbridge/loader"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// lateShutdown stops serve (cancels the loader's Run context) while the
// first INSERT waits for the server's answer, after all its data was sent.
type lateShutdown struct {
	*store.Store
	cancel context.CancelFunc
	done   atomic.Bool
}

func (s *lateShutdown) InsertMessageChunks(ctx context.Context, next func() ([]store.Message, error)) error {
	return s.Store.InsertMessageChunks(ctx, func() ([]store.Message, error) {
		rows, err := next()
		if len(rows) == 0 && err == nil && !s.done.Swap(true) {
			// The INSERT is sent now; the server holds it back (see below).
			time.AfterFunc(300*time.Millisecond, s.cancel)
		}
		return rows, err
	})
}

// A shutdown while ClickHouse holds an INSERT back (too many parts in the
// partition: 18.16 delays each INSERT up to a second) drops the connection,
// and the server then commits the INSERT anyway, after the loader gave up
// on it. The drain's check of what ClickHouse holds must wait for that
// query to end, or it loads the batch a second time.
func TestRegressShutdownWhileTheServerDelaysTheInsertLoadsEveryRowOnce(t *testing.T) {
	base := storeDelayingInserts(t)
	ctx := context.Background()
	st := &lateShutdown{Store: base}
	sp := openSpool(t, t.TempDir())
	if err := sp.SetFloor(280); err != nil {
		t.Fatal(err)
	}
	ingestAll(t, sp, messages(0, 1000))
	ld := newLoader(sp, st, st.Store, loader.Options{BatchRows: 1000, ChunkRows: 100})
	runCtx, cancel := context.WithCancel(ctx)
	st.cancel = cancel
	ld.Run(runCtx, 30*time.Second)
	if !st.done.Load() {
		t.Fatal("no INSERT was interrupted")
	}
	if wm := ld.Watermark(); wm != 1280 {
		t.Fatalf("watermark %d after the drain, want 1280", wm)
	}
	// Let an INSERT the drain did not wait for land, then count.
	waitFor(t, "no INSERT running", func() bool {
		var n uint64
		_ = base.Conn().QueryRow(ctx, "SELECT count() FROM system.processes WHERE query LIKE 'INSERT INTO messages%'").Scan(&n)
		return n == 0
	})
	var n, distinct uint64
	if err := base.Conn().QueryRow(ctx, "SELECT count(), uniqExact(seq) FROM messages WHERE seq > 280").Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != 1000 || distinct != 1000 {
		t.Errorf("messages has %d rows (%d distinct seqs) of the batch, want 1000 once each", n, distinct)
	}
}

// storeDelayingInserts is a store whose messages table holds seqs 1..280 in
// as many parts of this month's partition, merges stopped: 18.16 then holds
// every INSERT into that partition back for up to a second
// (parts_to_delay_insert).
func storeDelayingInserts(t *testing.T) *store.Store {
	t.Helper()
	st := storetest.Open(t)
	ctx := context.Background()
	if err := st.Conn().Exec(ctx, "SYSTEM STOP MERGES "+st.Database()+".messages"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Conn().Exec(ctx, "SYSTEM START MERGES "+st.Database()+".messages") })
	for i := uint64(1); i <= 280; i++ {
		if err := st.InsertMessages(ctx, []store.Message{{Seq: i, Origin: i, Source: "old", Scene: "p2p", Line: "{}", ReceivedAt: time.Now().UnixMilli()}}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}
