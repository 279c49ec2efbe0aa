package handler

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// BenchmarkPull measures GET /v1/pull end to end over loopback HTTP against
// a real ClickHouse: 200 000 lines per pull.
func BenchmarkPull(b *testing.B) {
	st := storetest.Open(b)
	ctx := context.Background()
	const n = 200000
	body := strings.Repeat("消息", 20)
	for lo := 1; lo <= n; lo += 50000 {
		var rows []store.Message
		for i := lo; i < lo+50000; i++ {
			rows = append(rows, store.Message{Seq: uint64(i), Source: "bench", Scene: "p2p", MsgID: int64(i), From: "a", To: "b",
				CreateTime: 1700000000000, ClientType: 2, ReceivedAt: time.Now().UnixMilli(),
				Line: fmt.Sprintf(`{"data":{"ext":"","clientType":"2","createTime":1700000000000,"msgid":%d,"from":"a","to":"b","body":"%s"},"type":0}`, i, body)})
		}
		if err := st.InsertMessages(ctx, rows); err != nil {
			b.Fatal(err)
		}
	}
	srv := httptest.NewServer(newTestServer(&fakeIngester{}, st, n, PullConfig{}))
	defer srv.Close()
	b.ResetTimer()
	for b.Loop() {
		resp, err := http.Get(srv.URL + "/v1/pull?token=pt&cursor=0")
		if err != nil {
			b.Fatal(err)
		}
		size, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		b.SetBytes(size)
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "lines/s")
}
