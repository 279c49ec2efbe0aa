package loader_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/loader"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/spool"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// flakyStore inserts for real but reports failure for the first failN
// inserts: the worst case, an INSERT that succeeded on the server while the
// client saw an error.
type flakyStore struct {
	*store.Store
	failN atomic.Int32
}

func (f *flakyStore) InsertMessages(ctx context.Context, rows []store.Message) error {
	if err := f.Store.InsertMessages(ctx, rows); err != nil {
		return err
	}
	if f.failN.Add(-1) >= 0 {
		return errors.New("connection reset after the server committed")
	}
	return nil
}

func messages(from, to int) []message.Message {
	var out []message.Message
	for i := from; i < to; i++ {
		out = append(out, message.Message{Source: "test", SourceID: fmt.Sprint(i), Scene: message.P2P, Type: message.TypeText,
			MsgID: int64(i), From: "a", To: "b", CreateTime: 1700000000000 + int64(i), ClientType: message.Web, Body: "hi"})
	}
	return out
}

// loadUntil runs the loader until its watermark reaches want, then stops it.
func loadUntil(t *testing.T, ld *loader.Loader, want uint64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ld.Run(ctx, time.Second); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for ld.Watermark() < want {
		if time.Now().After(deadline) {
			t.Fatalf("watermark %d, want %d", ld.Watermark(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// expectRows checks that messages holds exactly want rows with distinct seqs.
func expectRows(t *testing.T, st *store.Store, want uint64) {
	t.Helper()
	var n, distinct uint64
	if err := st.Conn().QueryRow(context.Background(), "SELECT count(), uniqExact(seq) FROM messages").Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != want || distinct != want {
		t.Errorf("messages has %d rows (%d distinct seqs), want %d and %d", n, distinct, want, want)
	}
}

func TestFailedInsertThatCommittedIsNotLoadedTwice(t *testing.T) {
	st := &flakyStore{Store: storetest.Open(t)}
	st.failN.Store(2)
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	in := ingest.New(sp)
	if _, err := in.Ingest(context.Background(), messages(0, 500)); err != nil {
		t.Fatal(err)
	}
	ld := loader.New(sp, st, loader.Options{BatchRows: 200, Linger: time.Millisecond})
	loadUntil(t, ld, 500)
	expectRows(t, st.Store, 500)
	if s := ld.Stats(); s.Failures < 2 {
		t.Errorf("failures = %d, want the two injected ones counted", s.Failures)
	}
}

func TestLoaderResumesFromTheSpoolAfterRestart(t *testing.T) {
	st := storetest.Open(t)
	dir := t.TempDir()
	sp, err := spool.Open(spool.Options{Dir: dir, DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ingest.New(sp).Ingest(context.Background(), messages(0, 100)); err != nil {
		t.Fatal(err)
	}
	ld := loader.New(sp, st, loader.Options{Linger: time.Millisecond})
	loadUntil(t, ld, 100)
	if _, err := ingest.New(sp).Ingest(context.Background(), messages(100, 150)); err != nil {
		t.Fatal(err)
	}
	sp.Close()

	// A new process: the spool remembers what was released, the loader resumes.
	sp, err = spool.Open(spool.Options{Dir: dir, DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	ld = loader.New(sp, st, loader.Options{Linger: time.Millisecond})
	if wm := ld.Watermark(); wm > 100 {
		t.Fatalf("watermark at start %d is past what ClickHouse holds", wm)
	}
	loadUntil(t, ld, 150)
	expectRows(t, st, 150)
}
