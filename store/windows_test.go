package store

import (
	"context"
	"errors"
	"testing"
)

// seqFetch is a fetch that emits every seq of (lo, hi], failing at failAt.
func seqFetch(failAt uint64) func(ctx context.Context, lo, hi uint64, emit func(uint64) bool) error {
	return func(ctx context.Context, lo, hi uint64, emit func(uint64) bool) error {
		for seq := lo + 1; seq <= hi; seq++ {
			if seq == failAt {
				return errors.New("window broke")
			}
			if !emit(seq) {
				return nil
			}
		}
		return nil
	}
}

var errStop = errors.New("reader stopped")

// streamWindows hands over every row once, in order, across windows and
// batches; an error of fetch or of fn ends the stream with that error and
// leaves no fetch running (the test would hang on wg.Wait otherwise).
func TestStreamWindows(t *testing.T) {
	cases := []struct {
		name          string
		after, upTo   uint64
		size          uint64
		failAt        uint64 // fetch fails on this seq
		stopAt        uint64 // fn fails on this seq
		wantRows      uint64 // rows fn saw
		wantWindows   int
		wantErr       error
		wantErrString string
	}{
		{name: "empty range", after: 5, upTo: 5, size: 10, wantRows: 0, wantWindows: 0},
		{name: "one window", after: 0, upTo: 7, size: 10, wantRows: 7, wantWindows: 1},
		{name: "many windows, several batches each", after: 3, upTo: 3 + 5*windowBatchRows + 17, size: 2*windowBatchRows + 1, wantRows: 5*windowBatchRows + 17, wantWindows: 3},
		{name: "fetch fails in the third window", after: 0, upTo: 100_000, size: 10_000, failAt: 25_000, wantErrString: "window broke"},
		{name: "reader stops early", after: 0, upTo: 1_000_000, size: 10_000, stopAt: 12_345, wantErr: errStop, wantRows: 12_344},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rows uint64
			windows := 0
			next := tc.after + 1
			err := streamWindows(context.Background(), tc.after, tc.upTo, tc.size, seqFetch(tc.failAt),
				func() { windows++ },
				func(seq uint64) error {
					if seq == tc.stopAt {
						return errStop
					}
					if seq != next {
						t.Fatalf("row %d, want %d: out of order", seq, next)
					}
					next++
					rows++
					return nil
				})
			switch {
			case tc.wantErrString != "":
				if err == nil || err.Error() != tc.wantErrString {
					t.Fatalf("err %v, want %q", err, tc.wantErrString)
				}
				if rows >= tc.failAt {
					t.Fatalf("%d rows handed over past the failure at %d", rows, tc.failAt)
				}
				return
			case !errors.Is(err, tc.wantErr):
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if rows != tc.wantRows {
				t.Fatalf("%d rows, want %d", rows, tc.wantRows)
			}
			if tc.wantErr == nil && windows != tc.wantWindows {
				t.Fatalf("%d windows started, want %d", windows, tc.wantWindows)
			}
		})
	}
}

// A cancelled context ends the stream with the context's error.
func TestStreamWindowsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	err := streamWindows(ctx, 0, 1_000_000, 1000, seqFetch(0), nil, func(seq uint64) error {
		if seq == 1500 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}
