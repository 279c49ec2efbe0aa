package spool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Review findings on the disk reader (spool/diskread.go): both tests failed
// with its first version.

// openWalFiles lists the process's open descriptors on segment files
// of dir (a deleted one's target ends in " (deleted)").
func openWalFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	var out []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dir) && strings.Contains(target, ".wal") {
			out = append(out, target)
		}
	}
	return out
}

func segmentFileCount(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// The disk reader keeps the last segment file it read open until its next
// read from the log. Once the loader has caught up it reads only from the
// in-memory tail, so after Release deletes that segment the process keeps
// its disk space (a 32 MiB segment, more with large records) for as long
// as the loader stays caught up: until the next catch-up or Close.
// raft-wal itself closes a released segment's file when it deletes it.
func TestRegressDiskReaderLetsGoOfReleasedSegment(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DedupWindow: noDedup})
	defer s.Close()
	var seq int
	for segmentFileCount(t, dir) < 3 {
		seq++
		mustAppend(t, s, bigRec(seq, 1<<20))
	}
	// A catch-up: the loader reads the first records from the log.
	s.mu.Lock()
	s.tail = tail{}
	s.mu.Unlock()
	if es, err := s.Read(1, 10, 1<<30); err != nil || len(es) != 10 {
		t.Fatalf("read: %d, %v", len(es), err)
	}
	// Caught up: all but the last record are released; new records are
	// read from the tail from now on.
	if err := s.Release(uint64(seq)); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		seq++
		mustAppend(t, s, bigRec(seq, 100))
		if es, err := s.Read(uint64(seq), 10, 1<<30); err != nil || len(es) != 1 {
			t.Fatalf("read %d: %d, %v", seq, len(es), err)
		}
	}
	var deleted []string
	for _, f := range openWalFiles(t, dir) {
		if strings.HasSuffix(f, " (deleted)") {
			deleted = append(deleted, f)
		}
	}
	if len(deleted) > 0 {
		t.Fatalf("released segments still open (their disk space held): %v", deleted)
	}
}

// A Read after Close opens a segment file again (Close closed the disk
// reader) and nothing closes it any more; it also returns records from a
// closed spool whose lock is released. Before, Read on a closed spool
// failed (raft-wal: log closed) and opened nothing.
func TestRegressReadAfterCloseOpensNothing(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DedupWindow: noDedup})
	for i := 1; i <= 10; i++ {
		mustAppend(t, s, bigRec(i, 100))
	}
	s.mu.Lock()
	s.tail = tail{}
	s.mu.Unlock()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	es, err := s.Read(1, 10, 1<<30)
	if open := openWalFiles(t, dir); len(open) > 0 {
		t.Fatalf("after Close, Read returned %d records (err %v) and left segment files open: %v", len(es), err, open)
	}
	if err == nil {
		t.Fatalf("after Close, Read returned %d records and no error", len(es))
	}
}
