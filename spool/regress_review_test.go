package spool

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"unsafe"

	"github.com/hashicorp/raft"
)

// slabOutgrowsPtrs returns the smallest group size whose slab, grown one
// record at a time from nothing as sequence grows it, ends with room for
// more than keepScratch records while its ptrs ends with room for at most
// keepScratch: trim then drops the slab and keeps ptrs. 0 if there is none.
func slabOutgrowsPtrs() int {
	var slab []raft.Log
	var ptrs []*raft.Log
	for n := 1; n <= keepScratch; n++ {
		slab = append(slab, raft.Log{})
		ptrs = append(ptrs, nil)
		if cap(slab) > keepScratch && cap(ptrs) <= keepScratch {
			return n
		}
	}
	return 0
}

// pooledBatchProblem reports what is wrong with a batch back in the pool: a
// pointer in ptrs (up to its capacity) to a raft.Log outside the batch's
// own slab keeps a slab trim let go of (and the records' buffers it may
// still hold beyond its length) alive.
func pooledBatchProblem(b *batch) string {
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b.slab)))
	hi := lo + uintptr(cap(b.slab))*unsafe.Sizeof(raft.Log{})
	stale := 0
	for _, p := range b.ptrs[:cap(b.ptrs)] {
		if p == nil {
			continue
		}
		if a := uintptr(unsafe.Pointer(p)); b.slab == nil || a < lo || a >= hi {
			stale++
		}
	}
	if stale > 0 {
		return fmt.Sprintf("ptrs (cap %d) holds %d pointers into a slab it no longer has (slab cap %d)", cap(b.ptrs), stale, cap(b.slab))
	}
	if cap(b.slab) > keepScratch || cap(b.ptrs) > keepScratch || cap(b.added) > keepScratch || cap(b.offs) > offsetLen*keepScratch {
		return fmt.Sprintf("keeps room for slab %d, ptrs %d, keys %d, offsets %d bytes", cap(b.slab), cap(b.ptrs), cap(b.added), cap(b.offs))
	}
	return ""
}

// After groups of any size (and a failed write), every pooled batch is
// back in the pool exactly once, trimmed, with no pointer into a dropped
// slab; the records written read back intact from the tail and the log
// although their slabs were dropped or reused.
func TestRegressTrimmedBatches(t *testing.T) {
	odd := slabOutgrowsPtrs()
	if odd == 0 {
		t.Log("no group size makes the slab outgrow ptrs with this Go's append growth")
	}
	cases := []struct {
		name   string
		groups []int // records per Append, one Append at a time
		dedup  bool
		failAt int // close the log before this group (1-based), 0: never
	}{
		{name: "small groups", groups: []int{1, 7, 100}},
		{name: "a group whose slab outgrows its ptrs", groups: []int{odd}},
		{name: "that group, then small ones on every batch", groups: append([]int{odd}, repeat(2*maxCoalesce, 3)...)},
		{name: "large groups then small", groups: []int{20_000, 5000, 1, keepScratch, keepScratch + 1, 2}, dedup: true},
		{name: "large groups, the write fails", groups: []int{5000, 6000, 10}, failAt: 2, dedup: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.groups[0] == 0 {
				t.Skip("no such group size")
			}
			opts := Options{DedupWindow: noDedup}
			if tc.dedup {
				opts.DedupWindow = 0
			}
			s := mustOpen(t, t.TempDir(), opts)
			next, written := 0, 0
			for i, n := range tc.groups {
				if i+1 == tc.failAt {
					s.log.Close() // every write fails from now on
				}
				var recs []Record
				for j := 0; j < n; j++ {
					recs = append(recs, rec(next+j))
				}
				res, err := s.Append(context.Background(), recs)
				switch {
				case tc.failAt != 0 && i+1 >= tc.failAt:
					if !errors.Is(err, ErrFailed) {
						t.Fatalf("group %d on a broken log: %v, want ErrFailed", i, err)
					}
				case err != nil:
					t.Fatal(err)
				case res.Accepted != n:
					t.Fatalf("group %d: %d of %d accepted", i, res.Accepted, n)
				default:
					written += n
				}
				next += n
			}
			if tc.failAt == 0 {
				got := readAll(t, s, 1)
				if len(got) != written {
					t.Fatalf("read back %d records, want %d", len(got), written)
				}
				for i, g := range got {
					if want := fmt.Sprintf("%d:record-%d", i+1, i); g != want {
						t.Fatalf("read back %q, want %q", g, want)
					}
				}
			}
			if err := s.Close(); err != nil && tc.failAt == 0 {
				t.Fatal(err)
			}
			// The writer has returned; every batch must be in the pool once.
			seen := map[*batch]bool{}
			for len(s.free) > 0 {
				b := <-s.free
				if seen[b] {
					t.Fatal("a batch is in the pool twice")
				}
				seen[b] = true
				if p := pooledBatchProblem(b); p != "" {
					t.Errorf("pooled batch: %s", p)
				}
			}
			if len(seen) != 2*maxCoalesce {
				t.Fatalf("%d batches back in the pool, want %d", len(seen), 2*maxCoalesce)
			}
		})
	}
}

func repeat(n, v int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}
