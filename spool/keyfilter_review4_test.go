// Tests written by an adversarial review of the de-duplication filters
// (c9c7ccd). Confirmed and fixed: add writing a filter that expire or close
// freed meanwhile; a filter made again for an expired bucket missing the
// keys still in memory; keys of a bucket pebble held without a count (a
// crash between two writes) hidden; a test closing pebble under the
// startup scan. The rest show what holds.
package spool

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imbridge/imbridge/message"
)

// review4Child runs scenario in a child test process (the scenario may
// crash the process: an access to an unmapped filter is a SIGSEGV, not a
// recoverable panic) and fails with the child's output if it did not pass.
func review4Child(t *testing.T, scenario func(t *testing.T)) {
	t.Helper()
	if os.Getenv("REVIEW4_CHILD") == t.Name() {
		scenario(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "REVIEW4_CHILD="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child process: %v\n%s", err, review4Head(out, 25))
	}
}

func review4Head(out []byte, n int) string {
	lines := strings.Split(string(out), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// review4Until polls cond for up to 20s.
func review4Until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func review4Keys(from, n int) []message.DedupKey {
	keys := make([]message.DedupKey, n)
	for i := range keys {
		keys[i] = key(from + i)
	}
	return keys
}

func (d *dedupIndex) review4Imm() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.imm != nil
}

// add takes the bucket's filter once, then may wait for a flush inside
// rotateLocked (d.mu released) and goes on setting bits in that filter.
// An expire meanwhile (the committer, at a clock 1.5 windows ahead: a step
// of the system clock) unmaps it.
func TestReview4RememberAfterExpireWritesFreedFilter(t *testing.T) {
	review4Child(t, func(t *testing.T) {
		const window = time.Hour
		c := newClock(time.Unix(0, 0).Add(1000 * window / 2))
		s := mustOpen(t, t.TempDir(), Options{DedupWindow: window, now: c.now})
		defer s.Close()
		done := make(chan error, 1)
		go func() { done <- s.Remember(review4Keys(0, 1<<20)...) }()
		// The first set is being flushed: the next rotation waits for it.
		review4Until(t, "a flush", s.dedup.review4Imm)
		c.advance(2 * window)
		// An empty request: the committer expires (bucket 1000 goes), the
		// writer adds nothing.
		if _, err := s.Append(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		t.Log("Remember ended without touching the unmapped filter")
	})
}

// Remember racing Close: close frees every filter once its persist saw
// nothing pending, while an add still in its loop goes on.
func TestReview4RememberRacingCloseWritesFreedFilter(t *testing.T) {
	review4Child(t, func(t *testing.T) {
		s := mustOpen(t, t.TempDir(), Options{})
		done := make(chan error, 1)
		go func() { done <- s.Remember(review4Keys(0, 1<<20)...) }()
		review4Until(t, "a flush", s.dedup.review4Imm)
		s.Close()
		err := <-done
		t.Logf("Remember after Close: %v", err)
	})
}

// A clock step forward of 1.5 windows seen by expire but not by add (here:
// an empty request; also a refused one, or a coalesced write whose last
// batch has the earlier time), then back: expire dropped bucket b's filter
// while b's keys were still in the in-memory set; the next add to b makes a
// new filter, trusted as counts[b] is 0, without them. Once the set is in
// pebble, the filter hides them. Before the change pebble answered.
func TestReview4FilterRemadeAfterExpireHidesInMemoryKeys(t *testing.T) {
	const window = time.Hour
	c := newClock(time.Unix(0, 0).Add(1000 * window / 2))
	s := mustOpen(t, t.TempDir(), Options{DedupWindow: window, now: c.now})
	defer s.Close()
	if res := mustAppend(t, s, rec(1)); res.Accepted != 1 {
		t.Fatalf("%+v", res)
	}
	c.advance(2 * window)
	if _, err := s.Append(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	c.advance(-2 * window)
	if res := mustAppend(t, s, rec(2)); res.Accepted != 1 {
		t.Fatalf("%+v", res)
	}
	if res := mustAppend(t, s, rec(1)); res.Duplicates != 1 {
		t.Errorf("key 1 while in the in-memory set: %+v, want a duplicate", res)
	}
	// The loader releases the first record: the set goes to pebble.
	if err := s.Release(1); err != nil {
		t.Fatal(err)
	}
	if res := mustAppend(t, s, rec(1)); res.Duplicates != 1 {
		t.Errorf("key 1 once in pebble: %+v, want a duplicate (stored twice)", res)
	}
}

// A crash between an sstable's ingest and its count update leaves keys in
// pebble for a bucket with no count. The spool's keys are re-added at Open
// (their seqs are above "m.seq"), but remembered ones are not: the bucket's
// new filter is trusted (counts 0) and hides them for good once the bucket
// has a count. Before the change pebble found them once the count was set.
func TestReview4CrashBetweenIngestAndCountHidesRememberedKeys(t *testing.T) {
	const window = time.Hour
	c := newClock(time.Unix(0, 0).Add(1000 * window / 2))
	dir := filepath.Join(t.TempDir(), dedupDir)
	logger := slog.New(slog.DiscardHandler)
	d, err := openDedup(dir, window, 0, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	// flush's first half, for a set of remembered keys; then the crash.
	set := keySet{keys: map[message.DedupKey]struct{}{key(7): {}}, bucket: d.bucketLocked(c.now())}
	if err := d.ingest(&set); err != nil {
		t.Fatal(err)
	}
	d.db.Close()

	d, err = openDedup(dir, window, 0, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	lookup := func(when string) {
		t.Helper()
		found := make([]bool, 1)
		if err := d.lookup([]message.DedupKey{key(7)}, found, c.now()); err != nil {
			t.Fatal(err)
		}
		if !found[0] {
			t.Errorf("%s: the ingested key is not found", when)
		}
	}
	lookup("no count for its bucket") // fails before the change too
	if err := d.add([]message.DedupKey{key(8)}, 0, c.now()); err != nil {
		t.Fatal(err)
	}
	if _, err := d.persist(0, true); err != nil {
		t.Fatal(err)
	}
	lookup("its bucket has a count again")
}

// Spool keys in pebble whose count and "m.seq" the crash lost are re-added
// at Open and found, before and after the scan.
func TestReview4CrashAboveSeqKeysAreFoundAroundTheScan(t *testing.T) {
	const window = time.Hour
	for _, countLeft := range []int{0, 1000} {
		for _, wait := range []bool{false, true} {
			t.Run(fmt.Sprintf("count left %d, scan waited %v", countLeft, wait), func(t *testing.T) {
				c := newClock(time.Unix(0, 0).Add(1000 * window / 2))
				dir := t.TempDir()
				s := mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
				for i := 0; i < 3000; i += 1000 {
					appendN(t, s, i, i+1000)
				}
				last := s.LastSeq()
				s.Close()
				// The crash: the last sets' keys are in pebble, their count
				// and seq are not.
				d, err := openDedup(filepath.Join(dir, dedupDir), window, last, s.logger, nil)
				if err != nil {
					t.Fatal(err)
				}
				b := d.bucketLocked(c.now())
				if countLeft == 0 {
					err = d.db.Delete(countKey(b), nil)
				} else {
					err = d.db.Set(countKey(b), beUint64(uint64(countLeft)), nil)
				}
				if err == nil {
					err = d.db.Set(metaSeq, beUint64(uint64(countLeft)), nil)
				}
				if err != nil {
					t.Fatal(err)
				}
				review4CrashClose(d)

				s = mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
				defer s.Close()
				if wait {
					waitFiltersFilled(t, s)
				}
				if res := appendN(t, s, 0, 3000); res.Duplicates != 3000 {
					t.Errorf("%+v, want 3000 duplicates", res)
				}
				// A new key; the set goes to pebble, the bucket has a count.
				appendN(t, s, 10_000, 10_001)
				if err := s.DedupIndexRebuilt(); err != nil {
					t.Fatal(err)
				}
				waitFiltersFilled(t, s)
				if res := appendN(t, s, 0, 3000); res.Duplicates != 3000 {
					t.Errorf("later: %+v, want 3000 duplicates", res)
				}
			})
		}
	}
}

// review4CrashClose closes d's pebble as a crash would leave it, after
// stopping the startup scan (which openDedup now starts) and unmapping the
// filters.
func review4CrashClose(d *dedupIndex) {
	d.stopFilterScan()
	for _, f := range d.filters {
		f.free()
	}
	d.db.Close()
}

func beUint64(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

// Keys remembered while the committer looks up and adds, across rotations
// and beside the startup scan: every key Remember returned for is found.
func TestReview4RememberBesideTheCommitter(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	appendN(t, s, 1_000_000, 1_100_000) // something for the scan to fill
	s.Close()
	s = mustOpen(t, dir, Options{})
	defer s.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // new keys, rotating the sets
		defer wg.Done()
		for i := 2_000_000; i < 2_100_000; i += 5000 {
			appendN(t, s, i, i+5000)
		}
	}()
	for i := 0; i < 160_000; i += 4096 {
		if err := s.Remember(review4Keys(i, 4096)...); err != nil {
			t.Fatal(err)
		}
		res := mustAppend(t, s, rec(i), rec(i+4095))
		if res.Duplicates != 2 {
			t.Fatalf("keys %d and %d just remembered: %+v, want duplicates", i, i+4095, res)
		}
	}
	wg.Wait()
	waitFiltersFilled(t, s)
	for _, i := range []int{0, 4095, 65_535, 65_536, 100_000, 1_000_000, 1_099_999, 2_000_000, 2_099_999} {
		if res := mustAppend(t, s, rec(i)); res.Duplicates != 1 {
			t.Errorf("key %d: %+v, want a duplicate", i, res)
		}
	}
}

// review4Maps counts the process's mappings of exactly filterBytes.
func review4Maps(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r, _, _ := strings.Cut(sc.Text(), " ")
		lo, hi, _ := strings.Cut(r, "-")
		a, _ := strconv.ParseUint(lo, 16, 64)
		b, _ := strconv.ParseUint(hi, 16, 64)
		if b-a == filterBytes {
			n++
		}
	}
	return n
}

// Filters of expired buckets are unmapped: many buckets and reopens keep
// at most three buckets' filters, every filter dropped is freed, and Close
// frees them all.
func TestReview4FiltersStayBoundedOverBucketsAndReopens(t *testing.T) {
	const window = time.Hour
	c := newClock(time.Unix(0, 0).Add(1000 * window / 2))
	dir := t.TempDir()
	base := review4Maps(t)
	seen := map[*keyFilter]bool{}
	for r := range 5 {
		s := mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
		for i := range 20 {
			appendN(t, s, 100*(20*r+i), 100*(20*r+i)+100)
			if err := s.Remember(key(1_000_000 + 20*r + i)); err != nil {
				t.Fatal(err)
			}
			waitFiltersFilled(t, s)
			s.dedup.mu.Lock()
			live := map[*keyFilter]bool{}
			for _, f := range s.dedup.filters {
				live[f], seen[f] = true, true
			}
			n := len(s.dedup.filters)
			s.dedup.mu.Unlock()
			if n > 3 {
				t.Errorf("reopen %d, bucket %d: %d filters, want at most 3", r, i, n)
			}
			for f := range seen {
				if !live[f] && f.words != nil {
					t.Errorf("reopen %d, bucket %d: a dropped filter is still mapped", r, i)
				}
			}
			c.advance(window / 2)
		}
		s.Close()
		for f := range seen {
			if f.words != nil || f.mem != nil {
				t.Errorf("after close %d: a filter is still mapped", r)
			}
		}
		t.Logf("after close %d: %d filters seen, %d more 8 MiB mappings than at the start", r, len(seen), review4Maps(t)-base)
	}
}

// Expire and Close while the scan surely runs (half a million keys):
// nothing is unmapped under it and the mappings all go.
func TestReview4ExpireAndCloseDuringALongScan(t *testing.T) {
	const window = time.Hour
	c := newClock(time.Unix(0, 0).Add(1000 * window / 2))
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
	for i := 0; i < 500_000; i += 1 << 16 {
		if err := s.Remember(review4Keys(i, 1<<16)...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DedupIndexRebuilt(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	base := review4Maps(t)

	s = mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
	if s.dedup.filtersFilled() {
		t.Fatal("the scan ended before Close: the test proves nothing")
	}
	s.Close()

	s = mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
	defer s.Close()
	c.advance(2 * window)
	if _, err := s.Append(context.Background(), nil); err != nil { // expire only
		t.Fatal(err)
	}
	if s.dedup.filtersFilled() {
		t.Fatal("the scan ended before the expiry: the test proves nothing")
	}
	waitFiltersFilled(t, s)
	if m := review4Maps(t) - base; m != 0 {
		t.Errorf("%d filter mappings after the expired bucket's scan ended, want 0", m)
	}
	if res := appendN(t, s, 0, 10); res.Accepted != 10 {
		t.Errorf("%+v, want the expired keys accepted", res)
	}
}

// The shipped crash test's pattern, fixed after this review: openDedup,
// stop the startup scan, then close pebble under it. With an index big
// enough that the scan is surely running when it is stopped. (Closing
// pebble without stopping the scan crashed in pebble's table cache, 3 of
// 3 runs.)
func TestReview4PebbleClosedAfterStoppingTheScan(t *testing.T) {
	review4Child(t, func(t *testing.T) {
		dir := t.TempDir()
		s := mustOpen(t, dir, Options{})
		appendInRequests(t, s, 0, 100_000)
		last := s.LastSeq()
		s.Close()
		for range 5 {
			d, err := openDedup(filepath.Join(dir, dedupDir), time.Hour, last, s.logger, nil)
			if err != nil {
				t.Fatal(err)
			}
			d.stopFilterScan()
			if err := d.db.Close(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// A restart with the clock stepped back (a new machine behind): keys of
// the earlier run are still found, before and after the scan.
func TestReview4RestartWithTheClockBehind(t *testing.T) {
	const window = time.Hour
	c := newClock(time.Unix(0, 0).Add(1000 * window / 2))
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
	appendN(t, s, 0, 3000)
	c.advance(window / 2)
	appendN(t, s, 3000, 6000)
	s.Close()
	c.advance(-3 * window)
	for _, wait := range []bool{false, true} {
		s := mustOpen(t, dir, Options{DedupWindow: window, now: c.now})
		if wait {
			waitFiltersFilled(t, s)
		}
		if res := appendN(t, s, 0, 6000); res.Duplicates != 6000 {
			t.Errorf("scan waited %v: %+v, want 6000 duplicates", wait, res)
		}
		s.Close()
	}
}

// Appends racing Close, then Remember and Append after Close: errors, no
// lookup or add on freed filters.
func TestReview4AfterClose(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	appendN(t, s, 0, 1000)
	s.Close()
	s = mustOpen(t, dir, Options{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if _, err := s.Append(context.Background(), []Record{rec(10_000*g + i), rec(i)}); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	s.Close()
	wg.Wait()
	if err := s.Remember(key(1)); err == nil {
		t.Error("Remember after Close: nil error")
	}
	if _, err := s.Append(context.Background(), []Record{rec(1)}); err == nil {
		t.Error("Append after Close: nil error")
	}
}
