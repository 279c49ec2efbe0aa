package store

import (
	"context"
	"sync"
)

// windowBatchRows is how many rows a window's reader hands over at a time.
const windowBatchRows = 4096

// window is one window's rows on their way, in batches; err is set before
// batches is closed.
type window[T any] struct {
	batches chan []T
	err     error
}

// streamWindows reads the seq range (after, upTo] in windows of size seqs
// and calls fn with every row in order; start, when not nil, is called
// before the first row of each window. fetch reads one window (lo, hi] and
// hands each row to emit, stopping when emit returns false (the stream was
// cancelled).
//
// The next window is fetched while the one before is handed to fn, so the
// server's sort of a window overlaps the caller's writing. Memory stays
// constant: at most two windows are in flight, each with a few batches
// buffered.
func streamWindows[T any](ctx context.Context, after, upTo, size uint64,
	fetch func(ctx context.Context, lo, hi uint64, emit func(T) bool) error,
	start func(), fn func(T) error,
) error {
	return streamWindowBatches(ctx, after, upTo, size, fetch, start, func(batch []T) error {
		for _, row := range batch {
			if err := fn(row); err != nil {
				return err
			}
		}
		return nil
	})
}

// streamWindowBatches is streamWindows handing fn a batch of rows at a
// time (up to windowBatchRows, in order, never spanning two windows).
func streamWindowBatches[T any](ctx context.Context, after, upTo, size uint64,
	fetch func(ctx context.Context, lo, hi uint64, emit func(T) bool) error,
	start func(), fn func([]T) error,
) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	windows := make(chan *window[T], 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(windows)
		for lo := after; lo < upTo; {
			hi := min(upTo, lo+size)
			w := &window[T]{batches: make(chan []T, 4)}
			select {
			case windows <- w:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func(lo, hi uint64) {
				defer wg.Done()
				defer close(w.batches)
				w.err = fetchBatches(ctx, lo, hi, fetch, w.batches)
			}(lo, hi)
			lo = hi
		}
	}()
	for w := range windows {
		if start != nil {
			start()
		}
		for batch := range w.batches {
			if err := fn(batch); err != nil {
				return err
			}
		}
		if w.err != nil {
			return w.err
		}
	}
	return ctx.Err()
}

// fetchBatches runs fetch for (lo, hi] and sends its rows to out in
// batches of windowBatchRows.
func fetchBatches[T any](ctx context.Context, lo, hi uint64,
	fetch func(ctx context.Context, lo, hi uint64, emit func(T) bool) error, out chan<- []T,
) error {
	batch := make([]T, 0, windowBatchRows)
	send := func() bool {
		select {
		case out <- batch:
			batch = make([]T, 0, windowBatchRows)
			return true
		case <-ctx.Done():
			return false
		}
	}
	err := fetch(ctx, lo, hi, func(row T) bool {
		if batch = append(batch, row); len(batch) == windowBatchRows {
			return send()
		}
		return true
	})
	if err != nil {
		return err
	}
	if len(batch) > 0 {
		send()
	}
	return ctx.Err() // a row emit or send could not hand over is reported
}
