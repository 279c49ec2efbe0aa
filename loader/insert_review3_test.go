package loader_test

// Written by the review of 332d482, when an INSERT went to the server in
// several blocks (a Flush between them). Since then the chunks are appended
// on our side and sent as one block with the last; these tests hold and
// stay as regressions (their comments describe the earlier shape).

import (
	"context"
	"fmt"
	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/message"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imbridge/imbridge/loader"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// shutdownMidInsert stops serve (cancels the loader's Run context) while
// an INSERT is between blocks: SIGTERM during a 50 000-row batch.
type shutdownMidInsert struct {
	*store.Store
	at     int
	cancel context.CancelFunc
	done   atomic.Bool
}

func (s *shutdownMidInsert) InsertMessageChunks(ctx context.Context, next func() ([]store.Message, error)) error {
	calls := 0
	return s.Store.InsertMessageChunks(ctx, func() ([]store.Message, error) {
		calls++
		if calls == s.at && !s.done.Swap(true) {
			s.cancel()
			<-ctx.Done()
		}
		return next()
	})
}

// A shutdown between two blocks of an INSERT: the server commits the blocks
// it had when the connection goes, and the drain (verify, on a fresh
// context) loads the batch again. Every row must be stored once.
func TestReview3ShutdownMidInsertLoadsEveryRowOnce(t *testing.T) {
	st := &shutdownMidInsert{Store: storetest.Open(t), at: 8}
	sp := openSpool(t, t.TempDir())
	ingestAll(t, sp, messages(0, 20000))
	ld := newLoader(sp, st, st.Store, loader.Options{BatchRows: 20000})
	ctx, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	ld.Run(ctx, 10*time.Second)
	if ld.Watermark() != 20000 {
		t.Fatalf("watermark %d after the drain, want 20000", ld.Watermark())
	}
	time.Sleep(time.Second) // let the abandoned INSERT's commit land
	expectRows(t, st.Store, 20000)
}

// Byte bounds: a block bound smaller than any record (one record a block)
// and a batch bound of a few records; recalls between messages so that
// some blocks hold recalls only. Every row once, the watermark at the end.
func TestReview3TinyByteBoundsAndRecallOnlyBlocks(t *testing.T) {
	st := storetest.Open(t)
	sp := openSpool(t, t.TempDir())
	in := ingest.New(sp)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		var recalls []message.Recall
		for j := 0; j < 3; j++ {
			recalls = append(recalls, recall(fmt.Sprintf("x%d-%d", i, j)))
		}
		if _, err := in.IngestBatch(ctx, "test", messages(i*5, i*5+5), recalls); err != nil {
			t.Fatal(err)
		}
	}
	last := sp.LastSeq()
	ld := newLoader(sp, st, st, loader.Options{BatchRows: 1000, BatchBytes: 700, ChunkRows: 2, ChunkBytes: 1})
	loadUntil(t, ld, last)
	expectRows(t, st, 100)
	var recalls, distinct uint64
	if err := st.Conn().QueryRow(ctx, "SELECT count(), uniqExact(seq) FROM recalls").Scan(&recalls, &distinct); err != nil {
		t.Fatal(err)
	}
	if recalls != 60 || distinct != 60 {
		t.Errorf("recalls %d (%d seqs), want 60", recalls, distinct)
	}
	if s := ld.Stats(); s.Rows != 100 || s.Recalls != 60 {
		t.Errorf("stats %+v", s)
	}
}

// The loader's non-shutdown retry waits 100 ms before its verify. Under
// insert back-pressure (a partition with many parts: 18.16 delays each
// INSERT up to max_delay_to_insert = 1 s) the abandoned INSERT of a batch
// that failed between blocks commits after that verify: the retry loads the
// batch again.
func TestReview3MidInsertFailureUnderBackPressureLoadsEveryRowOnce(t *testing.T) {
	base := storeDelayingInserts(t)
	ctx := context.Background()
	st := &blockCounter{Store: base, failAt: 4}
	sp := openSpool(t, t.TempDir())
	if err := sp.SetFloor(280); err != nil {
		t.Fatal(err)
	}
	ingestAll(t, sp, messages(0, 1000))
	ld := newLoader(sp, st, st.Store, loader.Options{BatchRows: 1000, ChunkRows: 100})
	loadUntil(t, ld, 1280)
	time.Sleep(3 * time.Second) // let any abandoned INSERT land
	var n, distinct uint64
	if err := base.Conn().QueryRow(ctx, "SELECT count(), uniqExact(seq) FROM messages WHERE seq > 280").Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != 1000 || distinct != 1000 {
		t.Errorf("messages has %d rows (%d distinct seqs) of the batch, want 1000 once each", n, distinct)
	}
}

// The loader reuses its records, rows and the store its columns from block
// to block: every stored line is still its own message's.
func TestReview3BlocksRenderEachRowsOwnLine(t *testing.T) {
	st := storetest.Open(t)
	sp := openSpool(t, t.TempDir())
	ingestAll(t, sp, messages(0, 1000))
	ld := newLoader(sp, st, st, loader.Options{BatchRows: 1000, ChunkRows: 64})
	loadUntil(t, ld, 1000)
	var bad, n uint64
	if err := st.Conn().QueryRow(context.Background(), `SELECT countIf(position(line, concat('"msgid":', toString(msgid), ',')) = 0
 OR source_msg_id != toString(msgid) OR seq != toUInt64(msgid) + 1), count() FROM messages`).Scan(&bad, &n); err != nil {
		t.Fatal(err)
	}
	if bad != 0 || n != 1000 {
		t.Errorf("%d of %d rows carry another message's values", bad, n)
	}
}
