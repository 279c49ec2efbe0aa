package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

var errFetch = errors.New("fetch broke")

// streamWindows under a fetch that fails in one window (possibly while the
// window before is still being handed over), a reader that stops, and a
// cancelled context: the rows handed over are exactly a prefix, in order,
// with start called right before each window's first row and never in the
// middle of one; whatever stops the stream early ends it with an error
// (never success); and no fetch is still running once it returned.
func TestStreamWindowsReview(t *testing.T) {
	const size = 3*windowBatchRows + 5 // several batches per window
	cases := []struct {
		name        string
		after, upTo uint64
		failWindow  int    // fetch of this window (0-based) fails, -1: none
		failAfter   uint64 // rows that failing window emits first
		holdPrev    bool   // fn holds the failing window's predecessor's first row until that fetch failed
		stopAt      uint64 // fn fails on this seq
		cancelAt    uint64 // fn cancels the context on this seq
		wantRows    uint64 // rows fn accepted (seqs after+1 .. after+wantRows); a failing window's
		// unfinished batch is not handed over (the stream fails anyway)
		wantErr error
	}{
		{name: "all windows", after: 10, upTo: 10 + 4*size + 7, failWindow: -1, wantRows: 4*size + 7},
		{name: "next window fails at once while the one before is read", after: 0, upTo: 5 * size, failWindow: 1, holdPrev: true, wantRows: size, wantErr: errFetch},
		{name: "next window fails mid-batch while the one before is read", after: 0, upTo: 5 * size, failWindow: 2, failAfter: windowBatchRows + 3, holdPrev: true, wantRows: 2*size + windowBatchRows, wantErr: errFetch},
		{name: "last window fails after a partial batch", after: 0, upTo: 3 * size, failWindow: 2, failAfter: 17, wantRows: 2 * size, wantErr: errFetch},
		{name: "first window fails", after: 0, upTo: 3 * size, failWindow: 0, failAfter: 0, wantRows: 0, wantErr: errFetch},
		{name: "reader stops with fetches blocked on full channels", after: 0, upTo: 50 * size, failWindow: -1, stopAt: size + 2, wantRows: size + 1, wantErr: errStop},
		{name: "reader stops on the last row", after: 0, upTo: 2 * size, failWindow: -1, stopAt: 2 * size, wantRows: 2*size - 1, wantErr: errStop},
		{name: "cancelled mid-window with fetches blocked", after: 0, upTo: 50 * size, failWindow: -1, cancelAt: size + windowBatchRows, wantErr: context.Canceled},
		{name: "cancelled on the first row", after: 0, upTo: 50 * size, failWindow: -1, cancelAt: 1, wantErr: context.Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			nwin := int((tc.upTo - tc.after + size - 1) / size)
			failed := make(chan struct{}) // closed once the failing fetch returned
			var running atomic.Int64
			fetch := func(ctx context.Context, lo, hi uint64, emit func(uint64) bool) error {
				running.Add(1)
				defer running.Add(-1)
				k := int((lo - tc.after) / size)
				for seq := lo + 1; seq <= hi; seq++ {
					if k == tc.failWindow && seq-lo > tc.failAfter {
						close(failed)
						return errFetch
					}
					if !emit(seq) {
						return nil
					}
				}
				return nil
			}
			next := tc.after + 1
			var starts []uint64 // next seq at each start
			err := streamWindows(ctx, tc.after, tc.upTo, size, fetch,
				func() { starts = append(starts, next) },
				func(seq uint64) error {
					if seq != next {
						return fmt.Errorf("row %d, want %d", seq, next)
					}
					if len(starts) == 0 || (seq-tc.after-1)/size != uint64(len(starts)-1) {
						return fmt.Errorf("row %d handed over in window %d", seq, len(starts)-1)
					}
					if tc.holdPrev && seq == tc.after+uint64(tc.failWindow-1)*size+1 {
						<-failed // the next window's fetch fails while this one is read
					}
					if seq == tc.stopAt {
						return errStop
					}
					if seq == tc.cancelAt {
						cancel()
					}
					next++
					return nil
				})
			if n := running.Load(); n != 0 {
				t.Errorf("%d fetches still running after streamWindows returned", n)
			}
			rows := next - tc.after - 1
			if tc.cancelAt != 0 {
				// Rows after the cancelling one may be handed over, in order.
				if rows < tc.cancelAt-tc.after {
					t.Errorf("%d rows, want at least %d", rows, tc.cancelAt-tc.after)
				}
			} else if rows != tc.wantRows {
				t.Errorf("%d rows, want %d", rows, tc.wantRows)
			}
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			// start came exactly at each window's first row, once per window
			// reached, and for no window not reached.
			for k, s := range starts {
				if want := tc.after + uint64(k)*size + 1; s != want {
					t.Errorf("start %d before seq %d, want before %d", k, s, want)
				}
			}
			if tc.wantErr == nil && len(starts) != nwin {
				t.Errorf("%d starts, want %d", len(starts), nwin)
			}
		})
	}
}
