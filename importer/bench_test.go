package importer_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imbridge/imbridge/importer"
	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/spool"
	"github.com/imbridge/imbridge/store/storetest"
)

// BenchmarkImportNativeLines: native lines decoded and made durable in a
// spool with de-duplication (what `imbridge import` does without serve,
// minus the loader). Reported: messages/s.
func BenchmarkImportNativeLines(b *testing.B) {
	const n = 200000
	path := filepath.Join(b.TempDir(), "lines.ndjson")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for id := 1; id <= n; id++ {
		fmt.Fprintf(w, `{"data":{"ext":"","clientType":"2","createTime":%d,"msgid":%d,"from":"u%d","to":"v%d","body":"负载测试消息 %d"},"type":0}`+"\n",
			1700000000000+id, id, id%1000, id%777, id)
	}
	w.Flush()
	f.Close()
	st := storetest.Open(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sp, err := spool.Open(spool.Options{Dir: b.TempDir(), DedupWindow: 24 * time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		o := importer.Options{Source: "native", Format: importer.FormatLines, Sink: spoolSink{ingest.New(sp), "native"},
			Checkpoints: st, RunID: "bench", Force: true}
		b.StartTimer()
		sum, err := importer.Run(context.Background(), []string{path}, o)
		if err != nil || sum.Total.Stored != n {
			b.Fatalf("%+v %v", sum.Total, err)
		}
		b.StopTimer()
		sp.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
}
