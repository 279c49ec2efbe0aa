package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A reopen whose wal.Open fails (here: the tail segment's name now holds a
// directory) fails the spool: Healthy says so, Appends are refused with
// ErrFailed, and Read, MarkLoaded, Release, Stats and Close return (errors
// or not) without a panic on the closed log left in place.
func TestRegressFailedReopen(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{reopenEvery: 1 << 20})
	appendN(t, s, 0, 5)
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	if err := os.Rename(segs[0], segs[0]+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(segs[0], 0o755); err != nil {
		t.Fatal(err)
	}
	// This write goes to the (renamed) open file, then the reopen fails.
	res := mustAppend(t, s, bigRec(100, 1<<20))
	if s.Stats().Reopens != 0 {
		t.Fatal("reopened")
	}
	// The writer answers a write's requests before it reopens the log: wait.
	herr := s.Healthy()
	for deadline := time.Now().Add(5 * time.Second); herr == nil && time.Now().Before(deadline); herr = s.Healthy() {
		time.Sleep(time.Millisecond)
	}
	t.Logf("after the failed reopen: append answered %+v; Healthy: %v", res, herr)
	if !errors.Is(herr, ErrFailed) {
		t.Errorf("Healthy = %v; want ErrFailed", herr)
	}
	if _, err := s.Append(context.Background(), []Record{rec(200)}); !errors.Is(err, ErrFailed) {
		t.Errorf("Append = %v; want ErrFailed", err)
	}
	es, err := s.Read(1, 10, 1<<30) // from the tail
	t.Logf("Read(1) = %d entries, %v", len(es), err)
	s.mu.Lock()
	s.tail.dropThrough(6) // make reads and headers go to the log
	s.mu.Unlock()
	_, err = s.Read(1, 10, 1<<30)
	t.Logf("Read(1) from the log: %v", err)
	t.Logf("MarkLoaded(2): %v", s.MarkLoaded(2))
	t.Logf("Release(3): %v", s.Release(3))
	t.Logf("Stats: %+v", s.Stats())
	t.Logf("Close: %v", s.Close())
	os.Remove(segs[0])
	os.Rename(segs[0]+".moved", segs[0])
	s = mustOpen(t, dir, Options{})
	defer s.Close()
	if got := readAll(t, s, s.FirstSeq()); len(got) != 6 {
		t.Errorf("after a restart %d records; want 6", len(got))
	}
}
