package exporter_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imbridge/imbridge/exporter"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// snapRow is a stored p2p text row with seq, received at receivedAt (ms).
func snapRow(seq uint64, receivedAt int64) store.Message {
	id := "snap" + strconv.FormatUint(seq, 10)
	return store.Message{Seq: seq, Origin: seq, Source: "easemob", SourceMsgID: id, RecallKey: id, Scene: "p2p", Type: 0,
		MsgID: int64(seq), From: "alice", To: "bob", CreateTime: 1600000000000 + int64(seq), ClientType: 32, Body: id,
		Line: fmt.Sprintf(`{"data":{"msgid":%d},"type":0}`, seq), ReceivedAt: receivedAt}
}

// An incremental run starts after the last run's seq_to, which is
// max(seq) of the tables when that run started. A message that becomes
// visible in ClickHouse with a seq below that after the run started is
// never written by any later incremental run.
func TestRegressIncrementalSkipsASeqThatBecameVisibleLate(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	now := time.Now().UnixMilli()
	if err := st.InsertMessages(ctx, []store.Message{snapRow(1, now), snapRow(3, now)}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	first := run(t, st, exporter.Options{Dir: dir}, exporter.Request{Trigger: "schedule"})
	if err := st.InsertMessages(ctx, []store.Message{snapRow(2, now)}); err != nil { // seq 2 becomes visible now
		t.Fatal(err)
	}
	second := run(t, st, exporter.Options{Dir: dir}, exporter.Request{Trigger: "schedule"})
	third := run(t, st, exporter.Options{Dir: dir}, exporter.Request{Trigger: "schedule"})
	if got := first.Lines + second.Lines + third.Lines; got != 3 {
		t.Errorf("incremental runs wrote %d lines in all (seq ranges (%d,%d], (%d,%d], (%d,%d]), want 3: seq 2 is skipped for good",
			got, first.SeqFrom, first.SeqTo, second.SeqFrom, second.SeqTo, third.SeqFrom, third.SeqTo)
	}
}

// One loader INSERT (one InsertMessages call, as loader.loadBatch makes) is
// not atomic when its rows fall into two partitions of messages (PARTITION
// BY toYYYYMM(received_at)): re-issued copies keep their original's
// received_at, so a batch of new messages plus copies of older ones — or any
// batch across a month boundary — spans partitions. While it is written a
// reader can see the higher seqs without the lower ones: max(seq), the
// exporter's snapshot bound, is then not a contiguous prefix.
func TestRegressOneInsertIsNotAContiguousPrefix(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	const batch = 10000
	var base uint64
	for attempt := 0; attempt < 60; attempt++ {
		rows := make([]store.Message, batch)
		for i := range rows {
			// Re-issued copies keep their original's received_at: a
			// batch holding two copy chunks (each over messages of
			// October, then November) between live messages has its
			// partitions interleaved in seq order.
			month := time.October + time.Month((i/500)%2)
			rows[i] = snapRow(base+uint64(i)+1, time.Date(2023, month, 15, 0, 0, 0, 0, time.UTC).UnixMilli())
			rows[i].Body = strings.Repeat("x", 300) // 3 MB: under the loader's 4 MiB batch
		}
		var polls, partial atomic.Int64
		var stop atomic.Bool
		var gap atomic.Value
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				var mx, n uint64
				if err := st.Conn().QueryRow(ctx, "SELECT toUInt64(max(seq)), count() FROM messages WHERE seq > ?", base).Scan(&mx, &n); err != nil {
					continue
				}
				if n > 0 && n < batch {
					partial.Add(1)
				}
				polls.Add(1)
				if mx > base && mx-base != n {
					gap.Store(fmt.Sprintf("max(seq) %d visible with only %d of the %d seqs in (%d, %d]", mx, n, mx-base, base, mx))
					return
				}
			}
		}()
		err := st.InsertMessages(ctx, rows)
		stop.Store(true)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if g := gap.Load(); g != nil {
			t.Fatalf("attempt %d: one InsertMessages call became visible in pieces: %s; an export starting then takes seq_to = max(seq) and incremental runs skip the rest", attempt, g)
		}
		base += batch
		t.Logf("attempt %d: %d polls, %d saw part of the insert", attempt, polls.Load(), partial.Load())
	}
	t.Logf("no partial visibility observed in 60 inserts")
}
