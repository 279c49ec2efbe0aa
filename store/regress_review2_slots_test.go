package store_test

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// holdSlots starts k block-reader queries whose fn blocks, as a pull's fn
// does while its puller does not read (serve has no WriteTimeout: "a pull
// may stream millions of lines"), and returns once each holds its slot.
// The queries end when the test does.
func holdSlots(t *testing.T, s *store.Store, k int) {
	release := make(chan struct{})
	var stalled sync.WaitGroup
	holding := make(chan struct{}, k)
	for range k {
		stalled.Add(1)
		go func() {
			defer stalled.Done()
			var num proto.ColUInt64
			once := false
			_, _ = store.QueryBlocks(context.Background(), s, "SELECT number AS n FROM system.numbers LIMIT 100000 SETTINGS max_block_size = 1000",
				proto.Results{{Name: "n", Data: &num}}, func(int) error {
					if !once {
						once = true
						holding <- struct{}{}
					}
					<-release
					return nil
				})
		}()
	}
	for range k {
		<-holding
	}
	t.Cleanup(func() { close(release); stalled.Wait() })
}

// 16 pulls whose pullers stopped reading hold all 16 slots: from then on
// every pull and export of the process waits for a slot for as long as its
// context lives (a scheduled export's is the server's: it hangs holding the
// export folder's lock, and every later run is "busy"). Nothing bounds the
// wait and nothing falls back to the driver, whose own pool is idle and
// gives up after DialTimeout when full (ErrAcquireConnTimeout). Before
// 4a11cf4 the reader had no cap and both were served.
func TestReview2SlotWaitIsUnbounded(t *testing.T) {
	s := storetest.Open(t)
	const n = 100
	storetest.InsertLines(t, s, n)
	holdSlots(t, s, 16)
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"pull", func(ctx context.Context) error {
			return s.StreamLines(ctx, store.LineFilter{UpTo: n}, func(string) error { return nil })
		}},
		{"export", func(ctx context.Context) error {
			_, err := s.StreamExport(ctx, store.ExportFilter{UpTo: n}, func(string, uint16, string) error { return nil })
			return err
		}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // twice the driver's DialTimeout
		start := time.Now()
		err := tc.run(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut || err != nil {
			t.Errorf("%s: still waiting for a block reader slot after %v (err %v); the driver's pool is idle", tc.name, time.Since(start).Round(time.Second), err)
		}
	}
}

// With ONE slot free the export can deadlock on itself. When its next
// window's fetch takes the free slot before the current window's, it
// fills its four buffered batches and blocks handing over the fifth, to a consumer that waits for the current window, whose fetch
// waits for a slot. A pull (one query at a time) is served in the same
// state. 15 busy pulls (slow pullers, not even stalled ones) are enough to
// stop an export for as long as they last, with a query open on the
// server that sends nothing to it (its send_timeout is 300 s).
func TestReview2ExportDeadlocksWithOneSlotFree(t *testing.T) {
	s := storetest.Open(t)
	const n = store.ExportWindow + 6*store.LineBlockRows // the second window has more rows than its fetch can buffer
	storetest.InsertLines(t, s, n)
	holdSlots(t, s, 15)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pulled := 0
	if err := s.StreamLines(ctx, store.LineFilter{UpTo: 1000}, func(string) error { pulled++; return nil }); err != nil || pulled != 1000 {
		t.Fatalf("pull with one slot free: %d lines, err %v", pulled, err)
	}
	// Which of the two fetches takes the slot is a race between goroutines
	// started one after the other. On one P, with no collection to
	// reorder them, the later one runs first (a new goroutine takes
	// runnext and pushes the one before it back to the queue); on more
	// Ps, or a busy machine, it goes either way from run to run.
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for run := range 3 {
		// A deadlock never ends; a slow machine (CI runs packages side by
		// side, and this runs on one P) takes seconds, so the bound is wide.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		lines := 0
		_, err := s.StreamExport(ctx, store.ExportFilter{UpTo: n}, func(string, uint16, string) error { lines++; return nil })
		cancel()
		if err != nil {
			t.Fatalf("export %d with one slot free: %d of %d lines in a minute, err %v", run, lines, n, err)
		}
	}
}
