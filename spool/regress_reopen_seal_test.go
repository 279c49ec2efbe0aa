package spool

import (
	"bytes"
	"context"
	"runtime"
	"testing"
)

// bigRec is a record of about n bytes.
func bigRec(i, n int) Record {
	return NewRecord(key(i), n, func(b []byte) []byte {
		return append(b, bytes.Repeat([]byte{byte('a' + i%26)}, n)...)
	})
}

// fillPastSegment appends 256 KiB records one request at a time until
// well past one 32 MiB segment, reopening the log after every write
// (reopenEvery 1), and reports the first Append error.
func fillPastSegment(t *testing.T, s *Spool) (int, error) {
	t.Helper()
	const size = 256 << 10
	n := 3 * segmentSize / size / 2 // 48 MiB: the first segment seals on the way
	for i := range n {
		if _, err := s.Append(context.Background(), []Record{bigRec(i, size)}); err != nil {
			return i, err
		}
	}
	return n, nil
}

// The write that fills a segment makes raft-wal seal it and start the
// rotation to a new segment on a goroutine of its own; when the writer's
// reopenLog closes the log before that goroutine took raft-wal's write lock,
// the rotation is abandoned (raft-wal's Close "shuts down without changing
// anything"). wal.Open then recovers the sealed segment as the tail, and
// every later append fails with "segment is sealed": the spool fails and
// refuses ingest, and it does so again after every restart, because the
// state is on disk.
//
// GOMAXPROCS(1) makes the writer reach Close before the rotation goroutine
// runs (it only runs when the writer blocks); with more Ps it is a race the
// writer can win too (see TestRegressReopenRightAfterSealRace).
func TestRegressReopenRightAfterSealBricksSpool(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DedupWindow: noDedup, reopenEvery: 1})
	n, err := fillPastSegment(t, s)
	t.Logf("appended %d records, err %v, reopens %d, Healthy %v", n, err, s.Stats().Reopens, s.Healthy())
	s.Close()
	if err == nil {
		return
	}
	// A restart does not help: the sealed tail is on disk.
	s = mustOpen(t, dir, Options{DedupWindow: noDedup})
	defer s.Close()
	_, err2 := s.Append(context.Background(), []Record{bigRec(1<<20, 100)})
	t.Errorf("append failed after %d records with the log reopened after every write: %v; after a restart: %v", n, err, err2)
}

// The same without forcing GOMAXPROCS: repeated a few times, since it is a race.
func TestRegressReopenRightAfterSealRace(t *testing.T) {
	for round := range 5 {
		dir := t.TempDir()
		s := mustOpen(t, dir, Options{DedupWindow: noDedup, reopenEvery: 1})
		n, err := fillPastSegment(t, s)
		s.Close()
		if err != nil {
			s = mustOpen(t, dir, Options{DedupWindow: noDedup})
			_, err2 := s.Append(context.Background(), []Record{bigRec(1<<20, 100)})
			s.Close()
			t.Fatalf("round %d: append failed after %d records: %v; after a restart: %v", round, n, err, err2)
		}
	}
}

// With the shipped constants (no reopenEvery override): records of exactly
// 4 MiB fill a 32 MiB segment with eight records, so the 32nd write both
// seals the fourth segment and brings written to reopenEvery (128 MiB).
// Real records are small, so there the coincidence is a matter of chance
// (about the last append's share of a segment per reopen), but the outcome
// is the same.
func TestRegressReopenWithDefaultsAfterSeal(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DedupWindow: noDedup})
	const size = 4 << 20
	mk := func(i int) Record {
		return NewRecord(key(i), size, func(b []byte) []byte {
			return append(b, bytes.Repeat([]byte{'x'}, size-dataHeader)...)
		})
	}
	var err error
	i := 0
	for ; i < 40 && err == nil; i++ {
		_, err = s.Append(context.Background(), []Record{mk(i)})
	}
	reopens := s.Stats().Reopens
	s.Close()
	if err != nil {
		s = mustOpen(t, dir, Options{DedupWindow: noDedup})
		_, err2 := s.Append(context.Background(), []Record{mk(1000)})
		s.Close()
		t.Fatalf("append %d failed (reopens %d): %v; after a restart: %v", i, reopens, err, err2)
	}
}

// The same hazard without the periodic reopen: serve stopped (Close) right
// after the write that filled a segment, then started again. Before
// finishRotation, the restarted spool refused every append.
func TestRegressRestartRightAfterSealKeepsAppending(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	dir := t.TempDir()
	const size = 256 << 10
	for i := range 3 * segmentSize / size / 2 { // 48 MiB: a segment seals on the way
		s := mustOpen(t, dir, Options{DedupWindow: noDedup})
		_, err := s.Append(context.Background(), []Record{bigRec(i, size)})
		s.Close()
		if err != nil {
			t.Fatalf("append %d after a restart: %v", i, err)
		}
	}
	s := mustOpen(t, dir, Options{DedupWindow: noDedup})
	defer s.Close()
	if got, want := s.LastSeq(), uint64(3*segmentSize/size/2); got != want {
		t.Fatalf("last seq %d; want %d", got, want)
	}
}
