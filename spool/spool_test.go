package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/imbridge/imbridge/message"
)

func key(i int) message.DedupKey {
	return message.Identity{Scene: message.P2P, MsgID: int64(i), From: "a", To: "b", CreateTime: 1}.DedupKey("test")
}

func rec(i int) Record {
	return NewRecord(key(i), 16, func(b []byte) []byte { return fmt.Appendf(b, "record-%d", i) })
}

func reissue(i int) Record {
	return NewReissue(key(i), 16, func(b []byte) []byte { return fmt.Appendf(b, "reissue-%d", i) })
}

// noDedup asks mustOpen for a spool without de-duplication (a zero
// DedupWindow gets the tests' default of an hour).
const noDedup time.Duration = -1

func mustOpen(tb testing.TB, dir string, opts Options) *Spool {
	tb.Helper()
	opts.Dir = dir
	switch opts.DedupWindow {
	case 0:
		opts.DedupWindow = time.Hour
	case noDedup:
		opts.DedupWindow = 0
	}
	s, err := Open(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func appendN(tb testing.TB, s *Spool, from, to int) Result {
	tb.Helper()
	var recs []Record
	for i := from; i < to; i++ {
		recs = append(recs, rec(i))
	}
	return mustAppend(tb, s, recs...)
}

func mustAppend(tb testing.TB, s *Spool, recs ...Record) Result {
	tb.Helper()
	res, err := s.Append(context.Background(), recs)
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

func readAll(tb testing.TB, s *Spool, from uint64) []string {
	tb.Helper()
	es, err := s.Read(from, 1<<30, 1<<30)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, fmt.Sprintf("%d:%s", e.Seq, e.Data))
	}
	return out
}

// spooledBytes is what the records still in the spool occupy, read back
// one by one: what Stats().Bytes must say.
func spooledBytes(tb testing.TB, s *Spool) int64 {
	tb.Helper()
	if s.FirstSeq() == 0 {
		return 0
	}
	es, err := s.Read(s.FirstSeq(), 1<<30, 1<<30)
	if err != nil {
		tb.Fatal(err)
	}
	if n := uint64(len(es)); n != s.LastSeq()-s.FirstSeq()+1 {
		tb.Fatalf("read %d records from %d to %d", n, s.FirstSeq(), s.LastSeq())
	}
	var n int64
	for _, e := range es {
		n += int64(RecordOverhead + len(e.Data))
	}
	return n
}

// clock is a settable clock for the de-duplication window.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// waitFor fails the test unless every goroutine that wg waits for returns
// within d.
func waitFor(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still running after %v", what, d)
	}
}

func TestAppendIsDurableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	res := appendN(t, s, 0, 3)
	if res.Accepted != 3 || res.FirstSeq != 1 || res.LastSeq != 3 {
		t.Fatalf("result = %+v", res)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, Options{})
	defer s.Close()
	want := []string{"1:record-0", "2:record-1", "3:record-2"}
	if got := readAll(t, s, 1); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after reopen read %v, want %v", got, want)
	}
	if res := appendN(t, s, 3, 4); res.FirstSeq != 4 {
		t.Errorf("next seq after reopen = %d, want 4", res.FirstSeq)
	}
}

func TestDuplicatesAreStoredOnce(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	appendN(t, s, 0, 2)
	res := mustAppend(t, s, rec(1), rec(2), rec(2))
	if res.Accepted != 1 || res.Duplicates != 2 {
		t.Errorf("result = %+v, want 1 accepted and 2 duplicates", res)
	}
	s.Close()
	// The window survives a restart: the index is on disk.
	s = mustOpen(t, dir, Options{})
	defer s.Close()
	if res := appendN(t, s, 0, 1); res.Duplicates != 1 || res.Accepted != 0 {
		t.Errorf("after restart: %+v, want the duplicate dropped", res)
	}
	// Keys ClickHouse holds are remembered through Remember, many at a time.
	if err := s.Remember(key(98), key(99)); err != nil {
		t.Fatal(err)
	}
	if res := appendN(t, s, 98, 101); res.Duplicates != 2 || res.Accepted != 1 {
		t.Errorf("remembered keys: %+v, want 2 duplicates and 1 accepted", res)
	}
}

func TestConcurrentRequestsWithOneKeyStoreItOnce(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{})
	defer s.Close()
	const requests = 64
	var accepted, dups atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := s.Append(context.Background(), []Record{rec(7)})
			if err != nil {
				t.Error(err)
			}
			accepted.Add(int64(res.Accepted))
			dups.Add(int64(res.Duplicates))
		}()
	}
	close(start)
	wg.Wait()
	if accepted.Load() != 1 || dups.Load() != requests-1 {
		t.Errorf("%d accepted and %d duplicates, want 1 and %d", accepted.Load(), dups.Load(), requests-1)
	}
}

func TestDedupWindow(t *testing.T) {
	const window = time.Hour
	// Buckets are window/2 wide and aligned on the Unix epoch; a key is
	// written at the start, the middle and the very end of one.
	bucketStart := time.Unix(0, 0).Add(1000 * window / 2)
	writtenAt := map[string]time.Duration{"at a bucket's start": 0, "mid-bucket": window / 4, "at a bucket's end": window/2 - 1}
	for _, tc := range []struct {
		later     time.Duration
		duplicate bool
	}{
		{0, true},
		{window / 2, true},
		{window - time.Nanosecond, true}, // remembered for at least a window
		{window * 3 / 2, false},          // and at most one and a half
		{2 * window, false},
	} {
		for where, at := range writtenAt {
			t.Run(fmt.Sprintf("again %v later, written %s", tc.later, where), func(t *testing.T) {
				c := newClock(bucketStart.Add(at))
				s := mustOpen(t, t.TempDir(), Options{DedupWindow: window, now: c.now})
				defer s.Close()
				mustAppend(t, s, rec(1))
				c.advance(tc.later)
				res := mustAppend(t, s, rec(1))
				if got := res.Duplicates == 1; got != tc.duplicate {
					t.Errorf("duplicate = %v, want %v (%+v)", got, tc.duplicate, res)
				}
			})
		}
	}
}

func TestExpiredKeysAreDroppedWhole(t *testing.T) {
	const window = time.Hour
	c := newClock(time.Unix(0, 0).Add(1000 * window / 2))
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
	appendN(t, s, 0, 100)
	if err := s.Remember(key(500), key(501)); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().DedupKeys; n != 102 {
		t.Errorf("DedupKeys = %d, want 102", n)
	}
	s.Close() // the keys are in pebble now, not only in memory
	s = mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
	defer s.Close()
	if n := s.Stats().DedupKeys; n != 102 {
		t.Errorf("after reopen DedupKeys = %d, want 102", n)
	}
	c.advance(2 * window)
	res := appendN(t, s, 0, 1) // expires the old buckets
	if res.Accepted != 1 {
		t.Errorf("two windows later: %+v, want the key accepted", res)
	}
	if n := s.Stats().DedupKeys; n != 1 {
		t.Errorf("after expiry DedupKeys = %d, want 1", n)
	}
}

func TestReissues(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []Record // appended one request each
		want  []Result // Accepted and Duplicates of each step
	}{
		{"a re-issue of a stored message is stored, and the key stays seen",
			[]Record{rec(1), reissue(1), rec(1)},
			[]Result{{Accepted: 1}, {Accepted: 1}, {Duplicates: 1}}},
		{"a re-issue does not make its key seen",
			[]Record{reissue(1), rec(1), rec(1)},
			[]Result{{Accepted: 1}, {Accepted: 1}, {Duplicates: 1}}},
		{"re-issues of one message are all stored",
			[]Record{reissue(1), reissue(1), reissue(1)},
			[]Result{{Accepted: 1}, {Accepted: 1}, {Accepted: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustOpen(t, t.TempDir(), Options{})
			defer s.Close()
			for i, r := range tc.steps {
				res := mustAppend(t, s, r)
				if res.Accepted != tc.want[i].Accepted || res.Duplicates != tc.want[i].Duplicates {
					t.Errorf("step %d (reissue=%v): %+v, want %d accepted and %d duplicates",
						i, r.Reissue(), res, tc.want[i].Accepted, tc.want[i].Duplicates)
				}
			}
			es, err := s.Read(1, 100, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				if e.Reissue != strings.HasPrefix(string(e.Data), "reissue-") || e.Key != key(1) {
					t.Errorf("read back %+v", e)
				}
			}
		})
	}
	t.Run("within one request", func(t *testing.T) {
		s := mustOpen(t, t.TempDir(), Options{})
		defer s.Close()
		if res := mustAppend(t, s, rec(1), reissue(1), reissue(1), rec(1)); res.Accepted != 3 || res.Duplicates != 1 {
			t.Errorf("%+v, want 3 accepted and 1 duplicate", res)
		}
	})
}

func TestFullSpoolRefusesAndForgets(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{MaxBytes: 200})
	defer s.Close()
	var n int
	for ; n < 100; n++ {
		_, err := s.Append(context.Background(), []Record{rec(n)})
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n == 100 {
		t.Fatal("a 200-byte spool never filled")
	}
	if err := s.Healthy(); !errors.Is(err, ErrFull) {
		t.Errorf("Healthy() = %v, want ErrFull", err)
	}
	// The refused record was not remembered, so once there is room it is accepted.
	if err := s.Release(uint64(n)); err != nil {
		t.Fatal(err)
	}
	res, err := s.Append(context.Background(), []Record{rec(n)})
	if err != nil || res.Accepted != 1 {
		t.Errorf("after release: %+v, %v; want the refused record accepted", res, err)
	}
}

func TestFailedWriteLeavesNoTraceInTheIndex(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{})
	appendN(t, s, 0, 1)
	s.log.Close() // every write fails from now on
	_, err := s.Append(context.Background(), []Record{rec(1)})
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("append on a broken log = %v, want ErrFailed", err)
	}
	if err := s.Healthy(); !errors.Is(err, ErrFailed) {
		t.Errorf("Healthy() = %v, want ErrFailed", err)
	}
	found := []bool{false, false}
	if err := s.dedup.lookup([]message.DedupKey{key(0), key(1)}, found, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !found[0] || found[1] {
		t.Errorf("index holds the stored key: %v, the failed one: %v; want true, false", found[0], found[1])
	}
	s.Close()
}

func TestIndexCatchesUpWithTheSpoolAfterACrash(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	appendN(t, s, 0, 10)
	mustAppend(t, s, reissue(100))
	last := s.LastSeq()
	s.Close()
	// A crash loses the index's unsynced writes: its keys and its last seq.
	d, err := openDedup(filepath.Join(dir, dedupDir), time.Hour, last, s.logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	var zero message.DedupKey
	if err := d.db.DeleteRange(dataKey(nil, 0, zero), dataKey(nil, 1<<63, zero), nil); err != nil {
		t.Fatal(err)
	}
	if err := d.db.Delete(metaSeq, nil); err != nil {
		t.Fatal(err)
	}
	d.stopFilterScan() // as close does, before pebble goes
	d.db.Close()

	s = mustOpen(t, dir, Options{})
	defer s.Close()
	if res := appendN(t, s, 0, 10); res.Duplicates != 10 {
		t.Errorf("spooled keys after the crash: %+v, want all 10 re-added and dropped", res)
	}
	if res := appendN(t, s, 100, 101); res.Accepted != 1 {
		t.Errorf("the re-issued key after the crash: %+v, want it new", res)
	}
}

func TestReleaseMakesTheIndexDurableFirst(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{})
	defer s.Close()
	appendN(t, s, 0, 10)
	if err := s.Release(5); err != nil {
		t.Fatal(err)
	}
	s.dedup.mu.Lock()
	durable := s.dedup.durable
	s.dedup.mu.Unlock()
	if durable < 5 {
		t.Errorf("released seq 5 while the index has durable keys up to seq %d only", durable)
	}
}

func TestDedupIndexIsNew(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(t *testing.T, dir string) // with the spool closed
		window time.Duration
		want   bool
	}{
		{"a fresh data_dir", nil, time.Hour, true},
		{"the rebuild was never confirmed", func(t *testing.T, dir string) {
			mustOpen(t, dir, Options{}).Close()
		}, time.Hour, true},
		{"the rebuild was confirmed", func(t *testing.T, dir string) {
			s := mustOpen(t, dir, Options{})
			if err := s.DedupIndexRebuilt(); err != nil {
				t.Fatal(err)
			}
			s.Close()
		}, time.Hour, false},
		{"the window changed", func(t *testing.T, dir string) {
			s := mustOpen(t, dir, Options{})
			s.DedupIndexRebuilt()
			s.Close()
		}, 2 * time.Hour, true},
		{"the index directory was removed", func(t *testing.T, dir string) {
			s := mustOpen(t, dir, Options{})
			s.DedupIndexRebuilt()
			s.Close()
			if err := os.RemoveAll(filepath.Join(dir, dedupDir)); err != nil {
				t.Fatal(err)
			}
		}, time.Hour, true},
		{"de-duplication is off", nil, noDedup, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.before != nil {
				tc.before(t, dir)
			}
			s := mustOpen(t, dir, Options{DedupWindow: tc.window})
			defer s.Close()
			if got := s.DedupIndexIsNew(); got != tc.want {
				t.Errorf("DedupIndexIsNew() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewIndexRelearnsTheSpooledKeys(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	appendN(t, s, 0, 5)
	s.Close()
	if err := os.RemoveAll(filepath.Join(dir, dedupDir)); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, Options{})
	defer s.Close()
	if res := appendN(t, s, 0, 5); res.Duplicates != 5 {
		t.Errorf("%+v, want the spooled keys known again", res)
	}
}

func TestManyRememberedKeysGoThroughSSTables(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	keys := make([]message.DedupKey, flushKeys+5)
	for i := range keys {
		keys[i] = key(1000 + i)
	}
	if err := s.Remember(keys...); err != nil {
		t.Fatal(err)
	}
	check := func(when string, fresh int) {
		t.Helper()
		res := mustAppend(t, s, rec(1000), rec(1000+flushKeys+4), rec(fresh))
		if res.Duplicates != 2 || res.Accepted != 1 {
			t.Errorf("%s: %+v, want the first and last remembered keys dropped", when, res)
		}
	}
	check("remembered", 1)
	if err := s.DedupIndexRebuilt(); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().DedupKeys; n < len(keys) {
		t.Errorf("DedupKeys = %d, want at least %d", n, len(keys))
	}
	s.Close()
	s = mustOpen(t, dir, Options{})
	defer s.Close()
	check("after reopen", 2)
}

func TestNoDedupWindowStoresEverything(t *testing.T) {
	dir := t.TempDir()
	mustOpen(t, dir, Options{}).Close() // an index left from when it was on
	s := mustOpen(t, dir, Options{DedupWindow: noDedup})
	defer s.Close()
	if res := mustAppend(t, s, rec(1), rec(1)); res.Accepted != 2 {
		t.Errorf("%+v, want both stored", res)
	}
	if err := s.Remember(key(2)); err != nil {
		t.Fatal(err)
	}
	if res := mustAppend(t, s, rec(2)); res.Accepted != 1 {
		t.Errorf("%+v, want it stored", res)
	}
	if _, err := os.Stat(filepath.Join(dir, dedupDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the index directory is still there: %v", err)
	}
}

func TestConcurrentAppendsShareFsyncs(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{})
	defer s.Close()
	const workers, each = 32, 50
	var wg sync.WaitGroup
	seqs := make(chan uint64, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				res, err := s.Append(context.Background(), []Record{rec(w*each + i)})
				if err != nil || res.Accepted != 1 {
					t.Errorf("append: %+v %v", res, err)
					return
				}
				seqs <- res.FirstSeq
			}
		}(w)
	}
	wg.Wait()
	close(seqs)
	var all []int
	for q := range seqs {
		all = append(all, int(q))
	}
	sort.Ints(all)
	for i, q := range all {
		if q != i+1 {
			t.Fatalf("seqs are not 1..%d without gaps: position %d has %d", len(all), i, q)
		}
	}
	st := s.Stats()
	t.Logf("%d records in %d fsyncs", st.Records, st.Commits)
	if st.Records != workers*each {
		t.Errorf("records = %d", st.Records)
	}
}

// releaseBehind releases all but the last keep records each time the spool
// changes (reading the oldest records first when read is set), until the
// returned stop is called.
func releaseBehind(t *testing.T, s *Spool, keep uint64, read bool) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-s.Changed():
			}
			if first := s.FirstSeq(); read && first > 0 {
				if _, err := s.Read(first, 50, 1<<20); err != nil {
					t.Error(err)
					return
				}
			}
			if last := s.LastSeq(); last > keep {
				if err := s.Release(last - keep); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func TestBytesAreExactUnderConcurrentAppendsAndReleases(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	const workers, each = 16, 200
	var appenders sync.WaitGroup
	for w := range workers {
		appenders.Add(1)
		go func() {
			defer appenders.Done()
			for i := range each {
				n := w*each + i
				recs := []Record{rec(3 * n)}
				for j := range n % 3 { // requests of one to three records
					recs = append(recs, rec(3*n+1+j))
				}
				if _, err := s.Append(context.Background(), recs); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	stop := releaseBehind(t, s, 20, false) // releases while appends wait for their fsync
	appenders.Wait()
	stop()
	if got, want := s.Stats().Bytes, spooledBytes(t, s); got != want {
		t.Errorf("Stats().Bytes = %d, but the spooled records take %d", got, want)
	}
	s.Close()
	s = mustOpen(t, dir, Options{})
	defer s.Close()
	if got, want := s.Stats().Bytes, spooledBytes(t, s); got != want {
		t.Errorf("after reopen Stats().Bytes = %d, but the spooled records take %d", got, want)
	}
}

func TestFiftyTimesMaxBytesFlowThroughWithoutRefusal(t *testing.T) {
	const maxBytes = 32 << 10
	s := mustOpen(t, t.TempDir(), Options{MaxBytes: maxBytes})
	defer s.Close()
	rec := func(i int) Record { // 1 KiB rows
		return NewRecord(key(i), 1024, func(b []byte) []byte { return fmt.Appendf(b, "%1024d", i) })
	}
	size := int64(RecordOverhead + len(rec(1_000_000).Data()))
	perRequest := 4
	total := int(50 * maxBytes / size)
	released := make(chan struct{}, 1)
	done := make(chan struct{})
	var loader sync.WaitGroup
	loader.Add(1)
	go func() { // a loader: reads what was appended and releases it
		defer loader.Done()
		next := uint64(1)
		for {
			select {
			case <-done:
				return
			case <-s.Changed():
			}
			es, err := s.Read(next, 1000, 1<<20)
			if err != nil {
				t.Error(err)
				return
			}
			if len(es) == 0 {
				continue
			}
			next = es[len(es)-1].Seq + 1
			if err := s.Release(next - 1); err != nil {
				t.Error(err)
				return
			}
			select {
			case released <- struct{}{}:
			default:
			}
		}
	}()
	deadline := time.After(time.Minute)
	for i := 0; i < total; i += perRequest {
		// Keep at most half the room in flight, as a loader that keeps up would.
		for int64(s.LastSeq()-s.Released())*size > maxBytes/2 {
			select {
			case <-released:
			case <-deadline:
				t.Fatalf("the loader did not keep up: last %d, released %d", s.LastSeq(), s.Released())
			}
		}
		var recs []Record
		for j := range perRequest {
			recs = append(recs, rec(1_000_000+i+j))
		}
		if _, err := s.Append(context.Background(), recs); err != nil {
			t.Fatalf("after %d bytes (%.1f× max_bytes): %v", int64(i)*size, float64(int64(i)*size)/maxBytes, err)
		}
	}
	close(done)
	loader.Wait()
	if st := s.Stats(); st.Refused != 0 || st.Bytes > maxBytes {
		t.Errorf("refused %d records; %d bytes in use", st.Refused, st.Bytes)
	}
}

func TestAppendRacingCloseReturnsAndKeepsItsWord(t *testing.T) {
	for round := range 10 {
		dir := t.TempDir()
		s := mustOpen(t, dir, Options{})
		const appenders = 32
		var wg sync.WaitGroup
		var mu sync.Mutex
		stored := map[uint64]string{} // seq → row of every acknowledged record
		var acked atomic.Int64
		for a := range appenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					n := round*1_000_000 + a*10_000 + i
					res, err := s.Append(context.Background(), []Record{rec(n)})
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					stored[res.FirstSeq] = fmt.Sprintf("record-%d", n)
					mu.Unlock()
					acked.Add(1)
				}
			}()
		}
		deadline := time.After(10 * time.Second)
		for acked.Load() < 50 { // let the appends get going, then close
			select {
			case <-s.Changed():
			case <-deadline:
				t.Fatal("appends are not acknowledged")
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, &wg, 10*time.Second, "Append racing Close")

		s = mustOpen(t, dir, Options{})
		es, err := s.Read(1, 1<<30, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		got := map[uint64]string{}
		for _, e := range es {
			got[e.Seq] = string(e.Data)
		}
		for seq, row := range stored {
			if got[seq] != row {
				t.Fatalf("round %d: acknowledged seq %d (%s) reads back as %q", round, seq, row, got[seq])
			}
		}
		s.Close()
	}
}

func TestTornTailIsTruncated(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	appendN(t, s, 0, 5)
	s.Close()
	// Simulate a crash in the middle of a write: garbage after the last commit.
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if len(segs) == 0 {
		t.Fatal("no segment files")
	}
	sort.Strings(segs)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	// raft-wal writes frames after its header; find the end of real data by
	// reading, then scribble a partial frame there.
	buf := make([]byte, st.Size())
	f.ReadAt(buf, 0)
	end := len(buf)
	for end > 0 && buf[end-1] == 0 {
		end--
	}
	end = (end + 7) &^ 7
	if _, err := f.WriteAt([]byte{1, 0xde, 0xad, 0xbe, 0xef, 0x17, 0x2a, 0x99, 0x01, 0x02}, int64(end)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s = mustOpen(t, dir, Options{})
	defer s.Close()
	if got := readAll(t, s, 1); len(got) != 5 {
		t.Fatalf("after a torn tail read %v, want the 5 committed records", got)
	}
	if got, want := s.Stats().Bytes, spooledBytes(t, s); got != want {
		t.Errorf("after a torn tail Stats().Bytes = %d, want %d", got, want)
	}
	if res := appendN(t, s, 5, 6); res.FirstSeq != 6 {
		t.Errorf("append after recovery got seq %d, want 6", res.FirstSeq)
	}
	s.Close()
	s2 := mustOpen(t, dir, Options{})
	defer s2.Close()
	if got := readAll(t, s2, 1); len(got) != 6 {
		t.Errorf("after second reopen read %d records, want 6", len(got))
	}
}

func TestReleaseDropsLoadedRecords(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	if s.FirstSeq() != 0 {
		t.Errorf("empty spool: FirstSeq() = %d, want 0", s.FirstSeq())
	}
	appendN(t, s, 0, 10)
	before := s.Stats().Bytes
	if err := s.Release(6); err != nil {
		t.Fatal(err)
	}
	if after := s.Stats().Bytes; after >= before || after != spooledBytes(t, s) {
		t.Errorf("bytes %d → %d: want the 6 released records freed exactly", before, after)
	}
	if s.FirstSeq() != 7 {
		t.Errorf("FirstSeq() = %d, want 7", s.FirstSeq())
	}
	if err := s.Release(100); err != nil { // past the end: keeps the last record
		t.Fatal(err)
	}
	if s.FirstSeq() != 10 || s.Released() != 100 {
		t.Errorf("FirstSeq() = %d, Released() = %d; want 10 and 100", s.FirstSeq(), s.Released())
	}
	s.Close()
	s = mustOpen(t, dir, Options{})
	defer s.Close()
	if s.LastSeq() != 10 || s.Released() != 9 || s.FirstSeq() != 10 {
		t.Errorf("after reopen last=%d released=%d first=%d, want 10, 9 and 10", s.LastSeq(), s.Released(), s.FirstSeq())
	}
	if res := appendN(t, s, 10, 11); res.FirstSeq != 11 {
		t.Errorf("next seq = %d, want 11", res.FirstSeq)
	}
}

func TestSetFloor(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{})
	defer s.Close()
	if err := s.SetFloor(41); err != nil {
		t.Fatal(err)
	}
	if s.LastSeq() != 41 || s.FirstSeq() != 0 || s.Released() != 41 {
		t.Errorf("after SetFloor(41) on an empty spool: last=%d first=%d released=%d, want 41, 0 and 41",
			s.LastSeq(), s.FirstSeq(), s.Released())
	}
	if res := appendN(t, s, 0, 1); res.FirstSeq != 42 {
		t.Errorf("first seq above floor 41 = %d", res.FirstSeq)
	}
	if s.FirstSeq() != 42 {
		t.Errorf("FirstSeq() = %d, want 42", s.FirstSeq())
	}
	if err := s.SetFloor(100); err == nil {
		t.Error("a floor above spooled records was accepted")
	}
}

func TestReadServesRecentRecordsFromMemoryAndOlderFromDisk(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	appendN(t, s, 0, 10)
	s.Close()
	s = mustOpen(t, dir, Options{})
	defer s.Close()
	appendN(t, s, 10, 15) // seqs 11–15 are in memory, 1–10 only on disk
	var got []string
	for from := uint64(1); from <= s.LastSeq(); {
		es, err := s.Read(from, 100, 1<<20)
		if err != nil || len(es) == 0 {
			t.Fatalf("Read(%d) = %d entries, %v", from, len(es), err)
		}
		for _, e := range es {
			got = append(got, fmt.Sprintf("%d:%s", e.Seq, e.Data))
		}
		from = es[len(es)-1].Seq + 1
	}
	if len(got) != 15 || got[0] != "1:record-0" || got[14] != "15:record-14" {
		t.Errorf("read %v", got)
	}
	if err := s.Release(12); err != nil {
		t.Fatal(err)
	}
	if es, _ := s.Read(13, 100, 1<<20); len(es) != 3 || es[0].Seq != 13 {
		t.Errorf("after release, Read(13) = %v", es)
	}
}

func TestSecondProcessIsRefusedAtOnce(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	_, err := Open(Options{Dir: dir})
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open = %v, want ErrLocked", err)
	}
	s.Close()
	s = mustOpen(t, dir, Options{}) // the lock goes with Close
	s.Close()
}

// writeVersion1 writes a spool as the previous version did: raft-wal
// entries of key | row, and no FORMAT file.
func writeVersion1(t *testing.T, dir string, records int) {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	log, err := wal.Open(dir, wal.WithMetaStore(meta))
	if err != nil {
		t.Fatal(err)
	}
	for i := range records {
		k := key(i)
		if err := log.StoreLog(&raft.Log{Index: uint64(i + 1), Data: append(k[:], "row"...)}); err != nil {
			t.Fatal(err)
		}
	}
	log.Close()
	meta.Close()
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, dir string)
		wantErr string // empty: Open succeeds and leaves a FORMAT file
	}{
		{"a new directory", nil, ""},
		{"an empty spool of the previous version", func(t *testing.T, dir string) { writeVersion1(t, dir, 0) }, ""},
		{"records of the previous version", func(t *testing.T, dir string) { writeVersion1(t, dir, 3) },
			"holds seqs 1–3, which this version cannot read. Drain it with the previous version: start it with ClickHouse up until imbridge_loader_lag is 0"},
		{"a newer version", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, formatFile), []byte("imbridge spool format 3\n"), 0o640)
		}, "is format 3; this imbridge reads format 2 only"},
		{"not a FORMAT file", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, formatFile), []byte("hello\n"), 0o640)
		}, "unrecognised content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.prepare != nil {
				tc.prepare(t, dir)
			}
			s, err := Open(Options{Dir: dir, DedupWindow: time.Hour})
			if tc.wantErr != "" {
				if err == nil {
					s.Close()
					t.Fatal("Open succeeded")
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Open: %v\nwant it to say %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			b, err := os.ReadFile(filepath.Join(dir, formatFile))
			if err != nil || string(b) != "imbridge spool format 2\n" {
				t.Errorf("FORMAT = %q, %v", b, err)
			}
		})
	}
	t.Run("records of the previous version are ErrOldFormat", func(t *testing.T) {
		dir := t.TempDir()
		writeVersion1(t, dir, 1)
		if _, err := Open(Options{Dir: dir}); !errors.Is(err, ErrOldFormat) {
			t.Errorf("Open = %v, want ErrOldFormat", err)
		}
	})
}

// Records marked loaded (in ClickHouse, not yet on its disk) stay in the
// spool until released but no longer count against MaxBytes: a full spool
// takes messages again as soon as the loader has caught up.
func TestLoadedRecordsDoNotCountAgainstMaxBytes(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{MaxBytes: 64 << 10})
	n := 0
	for ; ; n++ {
		_, err := s.Append(context.Background(), []Record{rec(n)})
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.Healthy() == nil {
		t.Fatal("a full spool reports healthy")
	}
	if err := s.MarkLoaded(s.LastSeq()); err != nil {
		t.Fatal(err)
	}
	if s.Healthy() != nil {
		t.Fatalf("still unhealthy after everything was loaded: %v", s.Healthy())
	}
	before := s.Stats()
	if _, err := s.Append(context.Background(), []Record{rec(n)}); err != nil {
		t.Fatalf("append after everything was loaded: %v", err)
	}
	after := s.Stats()
	if after.Bytes <= before.Bytes || after.Unloaded >= after.Bytes || after.Unloaded <= 0 {
		t.Fatalf("stats before %+v after %+v: the loaded records must stay, only the new one unloaded", before, after)
	}
	if err := s.Release(s.LastSeq()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Unloaded > st.Bytes || st.Bytes > after.Bytes {
		t.Fatalf("after release: %+v", st)
	}
}

// A group of thousands of records (an import batch) gets its scratch space
// for that group only: the pooled batches go back to the pool with room for
// at most keepScratch records, so the 2×maxCoalesce of them do not each keep
// the largest group they ever saw.
func TestLargeGroupsLeaveNoScratchBehind(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{})
	for round := 0; round < 3; round++ {
		appendN(t, s, round*20_000+1, (round+1)*20_000)
	}
	if err := s.Close(); err != nil { // the writer has returned every batch
		t.Fatal(err)
	}
	for len(s.free) > 0 {
		b := <-s.free
		if cap(b.slab) > keepScratch || cap(b.ptrs) > keepScratch || cap(b.added) > keepScratch || cap(b.offs) > offsetLen*keepScratch {
			t.Fatalf("a pooled batch keeps room for %d records (ptrs %d, keys %d, offsets %d bytes), want at most %d",
				cap(b.slab), cap(b.ptrs), cap(b.added), cap(b.offs), keepScratch)
		}
	}
}

// The writer closes and reopens the log every reopenEvery bytes, so that
// raft-wal lets go of the segments it wrote (their buffers and in-memory
// indexes); reads, releases and appends go on meanwhile and nothing is lost
// or reordered.
func TestLogReopensUnderLoadLoseNothing(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{reopenEvery: 4 << 10})
	const workers, each = 8, 150
	var appenders sync.WaitGroup
	for w := range workers {
		appenders.Add(1)
		go func() {
			defer appenders.Done()
			for i := range each {
				n := 2 * (w*each + i)
				if _, err := s.Append(context.Background(), []Record{rec(n), rec(n + 1)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	stop := releaseBehind(t, s, 100, true) // reads and releases while the log is reopened
	appenders.Wait()
	stop()
	if s.Stats().Reopens == 0 {
		t.Fatal("the log was never reopened")
	}
	check := func(s *Spool, when string) {
		t.Helper()
		if got, want := s.LastSeq(), uint64(2*workers*each); got != want {
			t.Fatalf("%s: last seq %d; want %d", when, got, want)
		}
		got := readAll(t, s, s.FirstSeq())
		if uint64(len(got)) != s.LastSeq()-s.FirstSeq()+1 {
			t.Fatalf("%s: read %d records from seq %d to %d", when, len(got), s.FirstSeq(), s.LastSeq())
		}
		if g, w := s.Stats().Bytes, spooledBytes(t, s); g != w {
			t.Errorf("%s: Stats().Bytes = %d, but the spooled records take %d", when, g, w)
		}
	}
	check(s, "after the load")
	kept := readAll(t, s, s.FirstSeq())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, Options{})
	defer s.Close()
	check(s, "after a restart")
	if got := readAll(t, s, s.FirstSeq()); !slices.Equal(got, kept) {
		t.Errorf("after a restart the spool reads differently")
	}
	// Every record is there once: appending them all again stores nothing.
	for i := range 2 * workers * each {
		if res := mustAppend(t, s, rec(i)); res.Accepted != 0 {
			t.Fatalf("record %d stored twice", i)
		}
	}
}
