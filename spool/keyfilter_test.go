package spool

import (
	"fmt"
	"testing"
	"time"
)

func TestKeyFilterNeverForgetsAKeyAndRarelyInventsOne(t *testing.T) {
	f := newKeyFilter()
	defer f.free()
	const n = 1 << 20 // a bucket of a million keys
	for i := range n {
		k := key(i)
		f.add(&k)
	}
	for i := range n {
		if k := key(i); !f.mayHold(&k) {
			t.Fatalf("key %d was added but the filter says it was not", i)
		}
	}
	var false1 int
	for i := n; i < 2*n; i++ {
		if k := key(i); f.mayHold(&k) {
			false1++
		}
	}
	// Three bits of one word each, a key per word on average: about 0.01 %.
	if rate := float64(false1) / n; rate > 0.002 {
		t.Errorf("%.4f %% of new keys may be held, want under 0.2 %%", 100*rate)
	}
}

// appendInRequests appends the records from..to-1 in requests of 20 000.
func appendInRequests(t *testing.T, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i += 20_000 {
		appendN(t, s, i, min(i+20_000, to))
	}
}

// waitFiltersFilled waits until the startup scan of s's index has ended.
func waitFiltersFilled(t *testing.T, s *Spool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !s.dedup.filtersFilled() {
		if time.Now().After(deadline) {
			t.Fatal("the de-duplication filters were not filled within 30s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestKeysFromAnEarlierRunAreFoundBeforeAndAfterTheFiltersFill(t *testing.T) {
	const window = time.Hour
	c := newClock(time.Unix(0, 0).Add(1000 * window / 2))
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
	appendN(t, s, 0, 3000) // bucket b
	c.advance(window / 2)
	appendN(t, s, 3000, 6000) // bucket b+1
	if err := s.Remember(key(9000), key(9001)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	for _, wait := range []bool{false, true} {
		t.Run(fmt.Sprintf("filters filled: %v", wait), func(t *testing.T) {
			s := mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
			defer s.Close()
			if wait {
				waitFiltersFilled(t, s)
			}
			for _, i := range []int{0, 1500, 2999, 3000, 5999, 9000, 9001} {
				if res := mustAppend(t, s, rec(i)); res.Duplicates != 1 {
					t.Errorf("key %d of the earlier run: %+v, want a duplicate", i, res)
				}
			}
		})
	}

	t.Run("new keys skip pebble once filled", func(t *testing.T) {
		s := mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
		defer s.Close()
		waitFiltersFilled(t, s)
		before := s.dedup.seeks.Load()
		res := appendN(t, s, 100_000, 101_000)
		if res.Accepted != 1000 {
			t.Fatalf("%+v, want 1000 accepted", res)
		}
		// Two buckets hold keys: a thousand new keys would be 2000 seeks.
		if seeks := s.dedup.seeks.Load() - before; seeks > 10 {
			t.Errorf("%d pebble lookups for 1000 new keys, want the filters to answer nearly all", seeks)
		}
	})
}

func TestKeysAddedWhileTheFiltersFillAreFound(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	appendInRequests(t, s, 0, 200_000)
	s.Close()
	hold := make(chan struct{})
	s = mustOpen(t, dir, Options{holdScan: hold})
	defer s.Close()
	// The scan has its snapshot but reads nothing yet: these keys reach
	// pebble (several sets) beside it, and only add can put them in the
	// filter.
	appendInRequests(t, s, 500_000, 700_000)
	if err := s.Remember(key(900_000)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.dedup.persist(0, true); err != nil {
		t.Fatal(err)
	}
	close(hold)
	waitFiltersFilled(t, s)
	for _, i := range []int{0, 199_999, 500_000, 699_999, 900_000} {
		if res := mustAppend(t, s, rec(i)); res.Duplicates != 1 {
			t.Errorf("key %d: %+v, want a duplicate", i, res)
		}
	}
}

func TestClosingOrExpiringDuringTheFilterScan(t *testing.T) {
	const window = time.Hour
	c := newClock(time.Unix(0, 0).Add(1000 * window / 2))
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
	appendInRequests(t, s, 0, 100_000)
	s.Close()
	// Closed at once: the scan is stopped, nothing is freed under it.
	for range 3 {
		mustOpen(t, dir, Options{DedupWindow: window, now: c.now}).Close()
	}
	// The bucket expires while it may still be scanned.
	s = mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
	defer s.Close()
	c.advance(2 * window)
	if res := appendN(t, s, 0, 10); res.Accepted != 10 {
		t.Errorf("two windows later: %+v, want the keys accepted", res)
	}
	waitFiltersFilled(t, s)
	if res := appendN(t, s, 0, 10); res.Duplicates != 10 {
		t.Errorf("again: %+v, want duplicates", res)
	}
}
