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

// One loader INSERT (one InsertMessageChunks call of several blocks, as
// loader.loadBatch makes) is
// not atomic when its rows fall into two partitions of messages (PARTITION
// BY toYYYYMM(received_at)): re-issued copies keep their original's
// received_at, so a batch of new messages plus copies of older ones — or any
// batch across a month boundary — spans partitions, and a reader can see the
// higher seqs without the lower ones. Incremental exports running meanwhile
// must still write every row exactly once over all runs.
func TestRegressIncrementalRunsDuringPartitionSpanningInsertsMissNothing(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	const batch, inserts = 10000, 12
	dir := t.TempDir()
	var written atomic.Uint64
	var stop atomic.Bool
	var wg sync.WaitGroup
	exportOnce := func() {
		m, err := exporter.New(st, exporter.Options{Dir: dir}).Run(ctx, exporter.Request{Trigger: "schedule"})
		if err != nil {
			t.Error(err)
			return
		}
		written.Add(m.Lines)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			exportOnce()
		}
	}()
	var base uint64
	for range inserts {
		rows := make([]store.Message, batch)
		for i := range rows {
			month := time.October + time.Month((i/500)%2)
			rows[i] = snapRow(base+uint64(i)+1, time.Date(2023, month, 15, 0, 0, 0, 0, time.UTC).UnixMilli())
			rows[i].Body = strings.Repeat("x", 300)
		}
		if err := st.InsertMessageChunks(ctx, inBlocks(rows, 2048)); err != nil {
			t.Fatal(err)
		}
		base += batch
	}
	stop.Store(true)
	wg.Wait()
	exportOnce() // the rest
	if got := written.Load(); got != batch*inserts {
		t.Errorf("incremental runs wrote %d lines in all, want each of the %d rows once", got, batch*inserts)
	}
}

// inBlocks hands rows to InsertMessageChunks n at a time.
func inBlocks(rows []store.Message, n int) func() ([]store.Message, error) {
	return func() ([]store.Message, error) {
		block := rows[:min(n, len(rows))]
		rows = rows[len(block):]
		return block, nil
	}
}
