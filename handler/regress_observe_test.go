package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/store"
)

// panicIngester panics in every call, like a bug in the ingest path.
type panicIngester struct{}

func (panicIngester) IngestBatch(context.Context, string, []message.Message, []message.Recall) (ingest.Result, error) {
	panic("bug in ingest")
}

// syncBuffer is a log destination safe for a server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logLines are the lines of a JSON log.
func logLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// requestLines are the "request" lines of a JSON log.
func requestLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range logLines(t, log) {
		if m["msg"] == "request" {
			out = append(out, m)
		}
	}
	return out
}

// A request whose handler panics (answered 500 by the recoverer) and a
// pull aborted mid-stream (http.ErrAbortHandler) are still requests: each
// has its request line and moves imbridge_http_requests_total. Before the
// fix the recoverer ran outside requestLog, so the panic unwound past
// requestLog's bookkeeping: the 500s were neither logged nor counted.
func TestRegressPanicsAreLoggedAndCounted(t *testing.T) {
	for _, test := range []struct {
		name   string
		method string
		target string
		body   string
		header []string
		deps   func(*Deps)
		route  string
		code   string // the code label counted
	}{
		{"panicking pull", "GET", "/v1/pull?token=pt", "", nil,
			func(d *Deps) { d.Lines = &panicLines{} }, "/v1/pull", "500"},
		{"panicking callback", "POST", "/v1/callbacks/native", good,
			[]string{"Authorization", "Bearer nt", "Content-Type", "application/json"},
			func(d *Deps) { d.Ingest = panicIngester{} }, "/v1/callbacks/native", "500"},
		{"pull aborted mid-stream", "GET", "/v1/pull?token=pt&cursor=0", "", nil,
			func(d *Deps) {
				// A first line past pull's 64 KiB buffer: the status is sent
				// before ClickHouse fails.
				big := `{"a":"` + strings.Repeat("x", 80<<10) + `"}`
				d.Lines = &fakeLines{lines: []string{big, `{"a":2}`}, streamErr: errors.New("clickhouse: connection reset")}
				d.Watermark = func() uint64 { return 2 }
			}, "/v1/pull", "200"},
	} {
		t.Run(test.name, func(t *testing.T) {
			var buf syncBuffer
			d := testDeps()
			d.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
			test.deps(&d)
			srv := httptest.NewServer(NewServer(d))
			defer srv.Close()
			srv.Config.ErrorLog = nil
			req, err := http.NewRequest(test.method, srv.URL+test.target, strings.NewReader(test.body))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i+1 < len(test.header); i += 2 {
				req.Header.Set(test.header[i], test.header[i+1])
			}
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = bytes.NewBuffer(nil).ReadFrom(resp.Body)
				resp.Body.Close()
			}
			// The handler's goroutine finishes after the client saw the
			// answer (or the reset): poll with a deadline.
			counter := d.Metrics.HTTPRequests.WithLabelValues(test.route, test.code)
			deadline := time.Now().Add(5 * time.Second)
			for counterValue(counter) < 1 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := counterValue(counter); got != 1 {
				t.Errorf("imbridge_http_requests_total{route=%q,code=%q} = %v, want 1", test.route, test.code, got)
			}
			var lines []map[string]any
			for time.Now().Before(deadline) {
				if lines = requestLines(t, buf.String()); len(lines) > 0 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			if len(lines) != 1 || lines[0]["route"] != test.route || lines[0]["request_id"] == "" {
				t.Errorf("request lines %v, want one for %s:\n%s", lines, test.route, buf.String())
			}
		})
	}
}

// ctxLines streams one line past pull's buffer, then waits for the request
// to end, like ClickHouse streaming a large result to a puller that went
// away: it fails with the request's context error.
type ctxLines struct {
	fakeLines
	started chan struct{}
}

func (l *ctxLines) StreamLines(ctx context.Context, _ store.LineFilter, fn func(string) error) error {
	if err := fn(`{"a":"` + strings.Repeat("x", 80<<10) + `"}`); err != nil {
		return err
	}
	close(l.started)
	<-ctx.Done()
	return ctx.Err()
}

// A puller that hangs up mid-response is not ClickHouse failing: the
// response counts as not_advanced, not aborted (which says ClickHouse broke
// the stream), and is not logged as an error. Before the fix every puller
// disconnect moved imbridge_pull_responses_total{outcome="aborted"} and
// logged "pull aborted mid-stream" at ERROR.
func TestRegressPullerHangingUpIsNotAnAbort(t *testing.T) {
	for _, test := range []struct {
		name    string
		target  string
		outcome string
	}{
		{"stored cursor", "/v1/pull?token=pt", "not_advanced"},
		{"explicit cursor", "/v1/pull?token=pt&cursor=0", "explicit_cursor"},
	} {
		t.Run(test.name, func(t *testing.T) {
			var buf syncBuffer
			d := testDeps()
			d.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
			lines := &ctxLines{started: make(chan struct{})}
			d.Lines = lines
			d.Watermark = func() uint64 { return 5 }
			srv := httptest.NewServer(NewServer(d))
			defer srv.Close()
			// Not gzip (which Go's client asks for by default): the line's
			// bytes must leave the server before the hang-up.
			req, err := http.NewRequest("GET", srv.URL+test.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept-Encoding", "identity")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			<-lines.started
			resp.Body.Close() // the puller goes away mid-body
			http.DefaultClient.CloseIdleConnections()
			counter := d.Metrics.HTTPRequests.WithLabelValues("/v1/pull", "200")
			deadline := time.Now().Add(5 * time.Second)
			for counterValue(counter) < 1 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := counterValue(counter); got != 1 {
				t.Fatalf("the pull did not end: imbridge_http_requests_total{route=/v1/pull,code=200} = %v", got)
			}
			if got := counterValue(d.Metrics.PullResponses.WithLabelValues("yunxin", "aborted")); got != 0 {
				t.Errorf("aborted = %v, want 0: the puller hung up, ClickHouse did not fail", got)
			}
			if got := counterValue(d.Metrics.PullResponses.WithLabelValues("yunxin", test.outcome)); got != 1 {
				t.Errorf("%s = %v, want 1", test.outcome, got)
			}
			if strings.Contains(buf.String(), `"level":"ERROR"`) {
				t.Errorf("a puller hanging up was logged as an error:\n%s", buf.String())
			}
		})
	}
}
