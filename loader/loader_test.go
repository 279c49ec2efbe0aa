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
	"github.com/imbridge/imbridge/mapping"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/spool"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// flakyStore inserts for real but then reports failure for the first failN
// inserts: the worst case, an INSERT that succeeded on the server while the
// client saw an error. With cancel set, the failure is the loader's own
// context being cancelled (a shutdown during the INSERT).
type flakyStore struct {
	*store.Store
	failN  atomic.Int32
	cancel context.CancelFunc
}

func (f *flakyStore) InsertMessageChunks(ctx context.Context, next func() ([]store.Message, error)) error {
	if err := f.Store.InsertMessageChunks(ctx, next); err != nil {
		return err
	}
	if f.failN.Add(-1) >= 0 {
		if f.cancel != nil {
			f.cancel()
			return context.Canceled
		}
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

func openSpool(t *testing.T, dir string) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: dir, DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

func ingestAll(t *testing.T, sp *spool.Spool, msgs []message.Message) {
	t.Helper()
	if _, err := ingest.New(sp).Ingest(context.Background(), "test", msgs); err != nil {
		t.Fatal(err)
	}
}

func newLoader(sp *spool.Spool, st interface {
	InsertMessageChunks(context.Context, func() ([]store.Message, error)) error
	QueryRunning(context.Context, string) (bool, error)
	InsertRecalls(context.Context, []store.Recall) error
	ExistingSeqs(context.Context, uint64, uint64) (map[uint64]bool, error)
}, maps *store.Store, opts loader.Options) *loader.Loader {
	if opts.Linger == 0 {
		opts.Linger = time.Millisecond
	}
	return loader.New(sp, st, mapping.NewSnapshots(maps), opts)
}

// run starts the loader and returns a stop function that waits for it.
func run(ld *loader.Loader) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ld.Run(ctx, 5*time.Second); close(done) }()
	return func() { cancel(); <-done }
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// loadUntil runs the loader until its watermark reaches want, then stops it.
func loadUntil(t *testing.T, ld *loader.Loader, want uint64) {
	t.Helper()
	stop := run(ld)
	defer stop()
	waitFor(t, fmt.Sprintf("watermark %d", want), func() bool { return ld.Watermark() >= want })
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
	sp := openSpool(t, t.TempDir())
	ingestAll(t, sp, messages(0, 500))
	ld := newLoader(sp, st, st.Store, loader.Options{BatchRows: 200})
	loadUntil(t, ld, 500)
	expectRows(t, st.Store, 500)
	if s := ld.Stats(); s.Failures < 2 {
		t.Errorf("failures = %d, want the two injected ones counted", s.Failures)
	}
}

func TestInsertInterruptedByShutdownIsNotLoadedTwice(t *testing.T) {
	st := &flakyStore{Store: storetest.Open(t)}
	st.failN.Store(1)
	sp := openSpool(t, t.TempDir())
	ingestAll(t, sp, messages(0, 300))
	ld := newLoader(sp, st, st.Store, loader.Options{BatchRows: 100})
	ctx, cancel := context.WithCancel(context.Background())
	st.cancel = cancel // the first INSERT commits, then serve is told to stop
	ld.Run(ctx, 10*time.Second)
	expectRows(t, st.Store, 300) // the shutdown drain checked before loading again
}

func TestLoaderResumesFromTheSpoolAfterRestart(t *testing.T) {
	st := storetest.Open(t)
	dir := t.TempDir()
	sp, err := spool.Open(spool.Options{Dir: dir, DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ingestAll(t, sp, messages(0, 100))
	loadUntil(t, newLoader(sp, st, st, loader.Options{}), 100)
	ingestAll(t, sp, messages(100, 150))
	sp.Close()

	// A new process: loaded records kept for durability are checked again,
	// the rest is loaded.
	sp = openSpool(t, dir)
	ld := newLoader(sp, st, st, loader.Options{})
	loadUntil(t, ld, 150)
	expectRows(t, st, 150)
}

func TestFreshSpoolOnAUsedDatabaseContinuesAfterIt(t *testing.T) {
	st := storetest.Open(t)
	first := openSpool(t, t.TempDir())
	ingestAll(t, first, messages(0, 40))
	loadUntil(t, newLoader(first, st, st, loader.Options{}), 40)

	// A replaced machine: a new data_dir, the same ClickHouse.
	sp := openSpool(t, t.TempDir())
	ld := newLoader(sp, st, st, loader.Options{}) // made before the floor is known, as serve does
	max, err := st.MaxSeq(context.Background())
	if err != nil || max != 40 {
		t.Fatalf("max seq %d, %v", max, err)
	}
	if err := sp.SetFloor(max); err != nil {
		t.Fatal(err)
	}
	ingestAll(t, sp, messages(40, 50))
	loadUntil(t, ld, 50)
	expectRows(t, st, 50)
}

// releaseCounter counts what the loader releases from the spool.
type releaseCounter struct {
	*spool.Spool
	released atomic.Uint64
}

func (r *releaseCounter) Release(seq uint64) error {
	r.released.Store(seq)
	return r.Spool.Release(seq)
}

func TestLoadedRecordsStayUntilClickHouseHasThemOnDisk(t *testing.T) {
	st := storetest.Open(t)
	for _, test := range []struct {
		name        string
		durable     func(context.Context) error
		retain      time.Duration
		wantRelease bool
	}{
		{"kept for the retention without a sync", nil, time.Hour, false},
		{"released after the retention", nil, time.Millisecond, true},
		{"released once synced", func(context.Context) error { return nil }, time.Hour, true},
		{"kept when the sync fails", func(context.Context) error { return errors.New("EIO") }, time.Hour, false},
	} {
		t.Run(test.name, func(t *testing.T) {
			sp := &releaseCounter{Spool: openSpool(t, t.TempDir())}
			ingestAll(t, sp.Spool, messages(0, 20))
			ingestAll(t, sp.Spool, messages(20, 21)) // a second loader pass, after the first batch was loaded
			ld := loader.New(sp, storetest.Open(t), mapping.NewSnapshots(st),
				loader.Options{Linger: time.Millisecond, BatchRows: 20, Durable: test.durable, Retain: test.retain})
			stop := run(ld)
			defer stop()
			waitFor(t, "watermark 21", func() bool { return ld.Watermark() >= 21 })
			if test.wantRelease {
				waitFor(t, "a release", func() bool { return sp.released.Load() >= 20 })
				return
			}
			// Nothing may be released however long we look: give the loader
			// a few more passes (it releases at the top of each).
			ingestAll(t, sp.Spool, messages(21, 22))
			waitFor(t, "watermark 22", func() bool { return ld.Watermark() >= 22 })
			if r := sp.released.Load(); r != 0 {
				t.Fatalf("released up to %d before ClickHouse had it on disk", r)
			}
		})
	}
}

// blockCounter counts the chunks of each INSERT and, once, fails the
// INSERT at its failAt-th chunk (after the chunks before it were handed over).
type blockCounter struct {
	*store.Store
	failAt  int
	failed  atomic.Bool
	inserts atomic.Int32
	blocks  atomic.Int32
}

func (b *blockCounter) InsertMessageChunks(ctx context.Context, next func() ([]store.Message, error)) error {
	calls := 0
	return b.Store.InsertMessageChunks(ctx, func() ([]store.Message, error) {
		calls++
		if calls == 1 {
			b.inserts.Add(1)
		}
		if calls == b.failAt && !b.failed.Swap(true) {
			return nil, errors.New("connection reset mid-INSERT")
		}
		rows, err := next()
		if len(rows) > 0 {
			b.blocks.Add(1)
		}
		return rows, err
	})
}

// A batch goes into one INSERT a chunk at a time (what is decoded and
// rendered is held one chunk at a time): 1000 messages in chunks of 100 are
// one INSERT of ten chunks.
func TestBatchGoesIntoOneInsertChunkByChunk(t *testing.T) {
	st := &blockCounter{Store: storetest.Open(t)}
	sp := openSpool(t, t.TempDir())
	ingestAll(t, sp, messages(0, 1000))
	ld := newLoader(sp, st, st.Store, loader.Options{BatchRows: 1000, ChunkRows: 100})
	loadUntil(t, ld, 1000)
	expectRows(t, st.Store, 1000)
	if n, b := st.inserts.Load(), st.blocks.Load(); n != 1 || b != 10 {
		t.Errorf("%d INSERTs of %d chunks in all, want 1 of 10", n, b)
	}
	if s := ld.Stats(); s.Inserts != 1 || s.Rows != 1000 {
		t.Errorf("stats %+v, want 1 insert of 1000 rows", s)
	}
}

// A failure while a batch is read (the spool, a map query) abandons its
// INSERT with nothing in it; the batch is loaded again, every row once, and
// counted once (Stats.Rows is imbridge_loader_rows_total).
func TestChunkFailureMidInsertLoadsEveryRowOnce(t *testing.T) {
	st := &blockCounter{Store: storetest.Open(t), failAt: 4}
	sp := openSpool(t, t.TempDir())
	ingestAll(t, sp, messages(0, 1000))
	ld := newLoader(sp, st, st.Store, loader.Options{BatchRows: 1000, ChunkRows: 100})
	loadUntil(t, ld, 1000)
	expectRows(t, st.Store, 1000)
	if s := ld.Stats(); s.Failures != 1 || s.Rows != 1000 {
		t.Errorf("failures = %d, rows = %d; want the injected failure and 1000 rows", s.Failures, s.Rows)
	}
}
