package loader_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/loader"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// flakyRecalls inserts recalls for real, then reports failure once: the
// batch's messages are already stored, its recalls too, and the loader must
// store neither twice.
type flakyRecalls struct {
	*store.Store
	failed atomic.Bool
}

func (f *flakyRecalls) InsertRecalls(ctx context.Context, rows []store.Recall) error {
	if err := f.Store.InsertRecalls(ctx, rows); err != nil {
		return err
	}
	if f.failed.CompareAndSwap(false, true) {
		return errors.New("connection reset after the server committed")
	}
	return nil
}

func recall(key string) message.Recall {
	return message.Recall{Key: key, ID: "r-" + key, Operator: "a", Time: 1700000009000}
}

func TestRecallsWinWhetherTheyComeBeforeOrAfterTheMessage(t *testing.T) {
	st := &flakyRecalls{Store: storetest.Open(t)}
	sp := openSpool(t, t.TempDir())
	in := ingest.New(sp)
	ctx := context.Background()
	// Message 1's recall arrives first (callbacks race), then both messages
	// in one request with message 2's recall; then a retried recall.
	if _, err := in.IngestBatch(ctx, "test", nil, []message.Recall{recall("1")}); err != nil {
		t.Fatal(err)
	}
	res, err := in.IngestBatch(ctx, "test", messages(0, 4), []message.Recall{recall("2")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 4 || res.Recalls != 1 || res.Duplicates != 0 {
		t.Errorf("result %+v, want 4 accepted and 1 recall", res)
	}
	res, err = in.IngestBatch(ctx, "test", nil, []message.Recall{recall("2"), recall("3")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 0 || res.Duplicates != 1 || res.Recalls != 1 {
		t.Errorf("retried recall: result %+v, want 1 duplicate and 1 new recall", res)
	}

	ld := newLoader(sp, st, st.Store, loader.Options{})
	loadUntil(t, ld, sp.LastSeq())
	expectRows(t, st.Store, 4)
	var recalls, distinct uint64
	if err := st.Conn().QueryRow(ctx, "SELECT count(), uniqExact(seq) FROM recalls").Scan(&recalls, &distinct); err != nil {
		t.Fatal(err)
	}
	if recalls != 3 || distinct != 3 {
		t.Errorf("recalls table has %d rows (%d seqs), want 3 once each after the failed insert", recalls, distinct)
	}
	var lines []string
	if err := st.StreamLines(ctx, store.LineFilter{UpTo: ld.Watermark()}, func(l string) error {
		lines = append(lines, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || msgidOf(lines[0]) != 0 {
		t.Errorf("pull serves %q; want only message 0 (1, 2 and 3 are recalled)", lines)
	}
	if n, ok, err := st.NthSeq(ctx, store.LineFilter{UpTo: ld.Watermark()}, 2); err != nil || ok {
		t.Errorf("NthSeq(2) = %d, %v, %v: recalled messages must not count toward a pull's limit", n, ok, err)
	}
}

func TestRecallRecordRoundTrips(t *testing.T) {
	sp := openSpool(t, t.TempDir())
	r := message.Recall{Key: "@TGS#1:77", ID: "", Operator: "admin", Time: 1700000000123}
	if _, err := ingest.New(sp).IngestBatch(context.Background(), "tencent", nil, []message.Recall{r}); err != nil {
		t.Fatal(err)
	}
	entries, err := sp.Read(sp.FirstSeq(), 10, 1<<20)
	if err != nil || len(entries) != 1 {
		t.Fatalf("read %d entries, %v", len(entries), err)
	}
	got, err := ingest.Decode(entries[0].Data)
	r.Source = "tencent"
	if err != nil || !got.IsRecall || got.Recall != r {
		t.Errorf("decoded %+v, %v; want recall %+v", got, err, r)
	}
}

func TestInvalidRecallStoresNothing(t *testing.T) {
	sp := openSpool(t, t.TempDir())
	_, err := ingest.New(sp).IngestBatch(context.Background(), "test", messages(0, 2), []message.Recall{{Key: "", Time: 1700000000000}})
	var ie *ingest.InvalidError
	if !errors.As(err, &ie) || ie.Index != 2 {
		t.Fatalf("err %v; want an InvalidError at index 2 (after the two messages)", err)
	}
	if sp.LastSeq() != 0 {
		t.Errorf("spool last seq %d: the request's messages were stored", sp.LastSeq())
	}
}

func msgidOf(line string) int64 {
	var m message.Message
	m, err := message.DecodeLine([]byte(line))
	if err != nil {
		return -1
	}
	return m.MsgID
}
