package spool

import (
	"sync"
	"testing"
)

// Reads that miss the tail (records older than its 16 MiB), MarkLoaded and
// Release go to the log while the writer reopens it after every write.
// TestLogReopensUnderLoadLoseNothing never reads from the log (its records
// all stay in the tail); this one is meant for -race. It stays below one
// segment (the sealed-tail case has its own tests: regress_reopen_seal_test.go).
func TestRegressDiskReadsRaceReopen(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{reopenEvery: 1})
	defer s.Close()
	const size, n = 64 << 10, 400 // 25 MiB: the first records leave the tail
	for i := range 300 {
		mustAppend(t, s, bigRec(i, size))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	fromLog := 0
	go func() {
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			first := s.FirstSeq()
			s.mu.Lock()
			if !s.tail.holds(first) {
				fromLog++
			}
			s.mu.Unlock()
			es, err := s.Read(first, 3, 1<<30)
			if err != nil {
				t.Error(err)
				return
			}
			for j, e := range es {
				if e.Seq != first+uint64(j) || len(e.Data) != size {
					t.Errorf("read seq %d size %d at %d from %d", e.Seq, len(e.Data), j, first)
					return
				}
			}
			if err := s.MarkLoaded(first + 1); err != nil {
				t.Error(err)
				return
			}
			if k%20 == 19 {
				if err := s.Release(first); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	for i := 300; i < n; i++ {
		mustAppend(t, s, bigRec(i, size))
	}
	close(stop)
	wg.Wait()
	// The last write's reopen may still run: its request is answered first.
	if fromLog == 0 || s.Stats().Reopens < n-1 {
		t.Fatalf("reads from the log %d, reopens %d", fromLog, s.Stats().Reopens)
	}
	t.Logf("reads from the log %d, reopens %d", fromLog, s.Stats().Reopens)
}
