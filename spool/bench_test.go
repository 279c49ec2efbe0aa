package spool

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppendOneRecordRequests measures the committer under the load a
// busy ingest puts on it: concurrent requests of one record each, all new
// keys, a 24 h de-duplication window, and a loader releasing behind. With few
// clients the figure is bounded by fsync latency (each client waits for its
// fsync); with many, by the committer.
//
//	go test -run '^$' -bench AppendOneRecord -benchmem ./spool/
func BenchmarkAppendOneRecordRequests(b *testing.B) {
	for _, clients := range []int{128, 1024} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			s := mustOpen(b, b.TempDir(), Options{DedupWindow: 24 * time.Hour})
			defer s.Close()
			var next atomic.Int64
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1))
						if i > b.N {
							return
						}
						if _, err := s.Append(ctx, []Record{rec(i)}); err != nil {
							b.Error(err)
							return
						}
						if i%50000 == 0 {
							if err := s.Release(uint64(i) - 10000); err != nil {
								b.Error(err)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			st := s.Stats()
			b.ReportMetric(float64(st.Records)/float64(max(st.Commits, 1)), "records/fsync")
		})
	}
}

// TestMemoryOverManyKeys appends SPOOL_MEMORY_KEYS new keys (skipped when
// unset) in one-record requests from 1024 clients through a spool with a
// 24 h window, releasing behind as the loader does. The clock of the window
// advances by a day over the run, so the index fills its three buckets and
// drops old ones as in production. It logs the throughput of each tenth and
// the heap; run it under /usr/bin/time -v for the peak RSS:
//
//	go test -c -o /tmp/spool.test ./spool/
//	SPOOL_MEMORY_KEYS=10000000 /usr/bin/time -v /tmp/spool.test -test.run TestMemoryOverManyKeys -test.v
func TestMemoryOverManyKeys(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SPOOL_MEMORY_KEYS"))
	if n < 10 {
		t.Skip("set SPOOL_MEMORY_KEYS (at least 10) to run")
	}
	const window = 24 * time.Hour
	var next atomic.Int64
	start := time.Now()
	step := window / time.Duration(n)
	clock := func() time.Time { return start.Add(time.Duration(next.Load()) * step) }
	s := mustOpen(t, t.TempDir(), Options{DedupWindow: window, MaxBytes: 1 << 30, now: clock})
	defer s.Close()
	// The loader releases what ClickHouse holds on disk, a few seconds behind
	// ingest: past the keys the index still holds in memory, so that Release
	// seldom has to flush them early.
	const clients, releaseLag = 1024, 2 * flushKeys
	var wg sync.WaitGroup
	started := time.Now()
	tenth := make(chan time.Time, 10)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > n {
					return
				}
				if i%(n/10) == 0 {
					tenth <- time.Now()
				}
				res, err := s.Append(context.Background(), []Record{rec(i)})
				if err != nil {
					t.Error(err)
					return
				}
				if res.Accepted != 1 {
					t.Errorf("record %d: %+v", i, res)
					return
				}
				if i%50000 == 0 && res.LastSeq > releaseLag {
					if err := s.Release(res.LastSeq - releaseLag); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(started)
	close(tenth)
	prev := started
	var rates []string
	for at := range tenth {
		rates = append(rates, fmt.Sprintf("%.0f", float64(n/10)/at.Sub(prev).Seconds()))
		prev = at
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := s.Stats()
	t.Logf("%d keys in %v: %.0f records/s (each tenth: %v), %.0f records/fsync; Go heap in use %d MiB, Go sys %d MiB; dedup keys ≈%d; spool bytes %d",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), rates, float64(st.Records)/float64(st.Commits),
		ms.HeapInuse>>20, ms.Sys>>20, st.DedupKeys, st.Bytes)
}
