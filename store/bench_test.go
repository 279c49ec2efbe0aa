package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// BenchmarkStreamLines measures pull's read path: lines per second streamed
// out of ClickHouse for 200 000 messages of realistic size.
func BenchmarkStreamLines(b *testing.B) {
	s := storetest.Open(b)
	ctx := context.Background()
	const n = 200000
	body := strings.Repeat("消息", 20)
	for lo := 1; lo <= n; lo += 50000 {
		var rows []store.Message
		for i := lo; i < lo+50000; i++ {
			r := store.Message{Seq: uint64(i), Source: "bench", Scene: "p2p", MsgID: int64(i), From: "a", To: "b",
				CreateTime: 1700000000000, ClientType: 2, ReceivedAt: time.Now().UnixMilli()}
			r.Line = fmt.Sprintf(`{"data":{"ext":"","clientType":"2","createTime":1700000000000,"msgid":%d,"from":"a","to":"b","body":"%s"},"type":0}`, i, body)
			rows = append(rows, r)
		}
		if err := s.InsertMessages(ctx, rows); err != nil {
			b.Fatal(err)
		}
	}
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
