package store_test

import (
	"context"
	"testing"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// BenchmarkStreamLines measures pull's read path: lines per second streamed
// out of ClickHouse for 200 000 messages of realistic size.
func BenchmarkStreamLines(b *testing.B) {
	s := storetest.Open(b)
	ctx := context.Background()
	const n = 200000
	storetest.InsertLines(b, s, n)
	b.ResetTimer()
	for b.Loop() {
		count, size := 0, 0
		if err := s.StreamLines(ctx, store.LineFilter{After: 0, UpTo: n}, func(l string) error {
			count++
			size += len(l)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if count != n {
			b.Fatalf("streamed %d lines", count)
		}
		b.SetBytes(int64(size))
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "lines/s")
}
