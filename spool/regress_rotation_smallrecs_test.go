package spool

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// countingLog is a log writer safe for the spool's goroutines that counts
// occurrences of a message.
type countingLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *countingLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *countingLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func smallRec(i int) Record {
	return NewRecord(key(i), 200, func(b []byte) []byte {
		return append(fmt.Appendf(b, "%09d-", i), bytes.Repeat([]byte{byte('a' + i%26)}, 190)...)
	})
}

// 200-byte records with the shipped 32 MiB segments: the log reopened after
// every write and the spool closed and reopened every few writes, with
// GOMAXPROCS(1) so that the rotation goroutine loses to Close; every record
// reads back, appends go on, and a Release over sealed segments survives a restart.
func TestRegressRotationSmallRecordsReopenAfterSeals(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	dir := t.TempDir()
	lb := &countingLog{}
	opts := Options{DedupWindow: noDedup, reopenEvery: 1, Logger: slog.New(slog.NewTextHandler(lb, nil))}
	s := mustOpen(t, dir, opts)
	const per = 2000 // ~430 KB per Append, one raft-wal append
	n := 0
	for w := 0; ; w++ {
		recs := make([]Record, per)
		for j := range recs {
			recs[j] = smallRec(n + j)
		}
		if _, err := s.Append(context.Background(), recs); err != nil {
			t.Fatalf("append %d (record %d): %v (finished rotations so far %d)", w, n, err, lb.count("finished a segment rotation"))
		}
		n += per
		if w%7 == 6 {
			s.Close()
			s = mustOpen(t, dir, opts)
		}
		segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
		if len(segs) >= 4 {
			break
		}
	}
	s.Close()
	s = mustOpen(t, dir, Options{DedupWindow: noDedup})
	t.Logf("%d records; finished rotations %d; reopens last run %d", n, lb.count("finished a segment rotation"), s.Stats().Reopens)
	check := func(from int) {
		t.Helper()
		if got := s.LastSeq(); got != uint64(n) {
			t.Fatalf("last seq %d; want %d", got, n)
		}
		for seq := uint64(from); seq <= uint64(n); {
			es, err := s.Read(seq, 5000, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				want := smallRec(int(e.Seq - 1))
				_ = want
				if e.Seq != seq || !bytes.HasPrefix(e.Data, fmt.Appendf(nil, "%09d-", seq-1)) {
					t.Fatalf("seq %d: got seq %d data %.12q", seq, e.Seq, e.Data)
				}
				seq++
			}
		}
	}
	check(1)
	mustAppend(t, s, smallRec(n))
	n++
	rel := uint64(n) * 2 / 3
	if err := s.Release(rel); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, dir, Options{DedupWindow: noDedup})
	defer s.Close()
	if s.FirstSeq() != rel+1 {
		t.Errorf("first seq %d; want %d", s.FirstSeq(), rel+1)
	}
	check(int(rel + 1))
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	t.Logf("after release to %d: %d segment files", rel, len(segs))
}
