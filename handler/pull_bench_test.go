package handler

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/imbridge/imbridge/store/storetest"
)

// BenchmarkPull measures GET /v1/pull end to end over loopback HTTP against
// a real ClickHouse: 200 000 lines per pull.
func BenchmarkPull(b *testing.B) {
	st := storetest.Open(b)
	const n = 200000
	storetest.InsertLines(b, st, n)
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
