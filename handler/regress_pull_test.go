package handler

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imbridge/imbridge/metrics"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/tcpack"
)

// lockedLines is fakeLines safe for the server's goroutines.
type lockedLines struct {
	mu sync.Mutex
	fakeLines
}

func (l *lockedLines) NthSeq(ctx context.Context, f store.LineFilter, n int) (uint64, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fakeLines.NthSeq(ctx, f, n)
}
func (l *lockedLines) StreamLines(ctx context.Context, f store.LineFilter, fn func(string) error) error {
	return l.fakeLines.StreamLines(ctx, f, fn)
}
func (l *lockedLines) PullCursor(ctx context.Context, p string) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fakeLines.PullCursor(ctx, p)
}
func (l *lockedLines) RecordDelivery(ctx context.Context, d store.Delivery) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fakeLines.RecordDelivery(ctx, d)
}
func (l *lockedLines) last() store.Delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deliveries[len(l.deliveries)-1]
}

// Review: the real TCP receipt (serve's setup: ConnContext = tcpack.ConnContext,
// Deps.Receipt nil) with ordinary pullers.
func TestReviewPullRealTCPReceipt(t *testing.T) {
	n := 40000
	all := make([]string, n)
	for i := range all {
		all[i] = fmt.Sprintf(`{"data":{"ext":"","clientType":"2","createTime":1700000000000,"msgid":%d,"from":"alice","to":"bob","body":"hello hello hello hello hello hello %d"},"type":0}`, i+1, i)
	}
	for _, tc := range []struct {
		name  string
		lines int
		query string
		pull  func(t *testing.T, url string)
		want  uint64 // stored cursor afterwards
	}{
		{"go client, small response, gzip transparently", 3, "", goGet(false), 3},
		{"go client, 6 MB response, no gzip", n, "", goGet(true), uint64(n)},
		{"go client, 6 MB response, gzip", n, "", goGet(false), uint64(n)},
		{"go client, limit 1000", n, "&limit=1000", goGet(true), 1000},
		{"curl -o /dev/null, 6 MB", n, "", curl(false), uint64(n)},
		{"curl --compressed, 6 MB", n, "", curl(true), uint64(n)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := &lockedLines{fakeLines: fakeLines{lines: all[:tc.lines]}}
			h := NewServer(Deps{
				Logger: discard(), Metrics: metrics.New(), Ingest: &fakeIngester{}, Lines: lines,
				Watermark: func() uint64 { return uint64(tc.lines) }, Ready: func(context.Context) error { return nil },
				Pull: PullConfig{Token: "pt", ReceiptTimeout: 5 * time.Second}, MaxBodyBytes: 4096,
			})
			srv := httptest.NewUnstartedServer(h)
			srv.Config.ConnContext = tcpack.ConnContext
			srv.Start()
			defer srv.Close()
			tc.pull(t, srv.URL+"/v1/pull?token=pt"+tc.query)
			deadline := time.Now().Add(10 * time.Second)
			for {
				lines.mu.Lock()
				k := len(lines.deliveries)
				lines.mu.Unlock()
				if k > 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			d := lines.last()
			t.Logf("delivery: advanced=%v to=%d count=%d bytes=%d took=%v", d.Advanced, d.CursorTo, d.Count, d.Bytes, d.Duration)
			if !d.Advanced || d.CursorTo != tc.want {
				t.Fatalf("a puller that read everything: %+v, want advanced to %d", d, tc.want)
			}
		})
	}
}

func goGet(noGzip bool) func(t *testing.T, url string) {
	return func(t *testing.T, url string) {
		c := &http.Client{Transport: &http.Transport{DisableCompression: noGzip}}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r io.Reader = resp.Body
		b, err := io.ReadAll(r)
		if err != nil || !strings.HasSuffix(string(b), "]}") {
			t.Fatalf("read %d bytes: %v", len(b), err)
		}
		_ = gzip.ErrHeader
	}
}

func curl(compressed bool) func(t *testing.T, url string) {
	return func(t *testing.T, url string) {
		args := []string{"-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}"}
		if compressed {
			args = append(args, "--compressed")
		}
		out, err := exec.Command("curl", append(args, url)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
		t.Logf("curl: %s", out)
	}
}

// Review check (expected to pass): a server without tcpack.ConnContext can
// prove nothing, so its pulls never advance the stored cursor.
func TestReviewPullWithoutConnContextNeverAdvances(t *testing.T) {
	lines := &lockedLines{fakeLines: fakeLines{lines: []string{`{"a":1}`}}}
	h := NewServer(Deps{
		Logger: discard(), Metrics: metrics.New(), Ingest: &fakeIngester{}, Lines: lines,
		Watermark: func() uint64 { return 1 }, Ready: func(context.Context) error { return nil },
		Pull: PullConfig{Token: "pt"}, MaxBodyBytes: 4096,
	})
	srv := httptest.NewServer(h) // no ConnContext
	defer srv.Close()
	goGet(false)(t, srv.URL+"/v1/pull?token=pt")
	if d := lines.last(); d.Advanced {
		t.Fatalf("advanced without a way to prove delivery: %+v", d)
	}
}
