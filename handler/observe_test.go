package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/metrics"
	"github.com/imbridge/imbridge/source/native"
)

// panicLines is a store whose every call panics.
type panicLines struct{ fakeLines }

func (*panicLines) PullCursor(context.Context, string) (uint64, error) { panic("bug") }

// Every way a pull can fail before its body starts is answered in Yunxin's
// envelope, {"code":N,"desc":"…"} with N the HTTP status, and carries no
// cursor headers.
func TestPullErrorsAnswerInYunxinEnvelope(t *testing.T) {
	down := errors.New("dial tcp 10.0.0.9:9000: connection refused")
	allowOnly := PullConfig{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, test := range []struct {
		name   string
		method string
		target string
		header []string
		lines  lineStore
		pull   PullConfig
		status int
		desc   string
	}{
		{"no token", "GET", "/v1/pull", nil, &fakeLines{}, PullConfig{}, 401, "missing or wrong pull token"},
		{"wrong token in the query", "GET", "/v1/pull?token=nope", nil, &fakeLines{}, PullConfig{}, 401, "missing or wrong pull token"},
		{"wrong bearer token", "GET", "/v1/pull", []string{"Authorization", "Bearer nope"}, &fakeLines{}, PullConfig{}, 401, "missing or wrong pull token"},
		{"address not allowed", "GET", "/v1/pull?token=pt", nil, &fakeLines{}, allowOnly, 401, "address not allowed"},
		{"bad cursor", "GET", "/v1/pull?token=pt&cursor=abc", nil, &fakeLines{}, PullConfig{}, 400, `cursor "abc"`},
		{"bad limit", "GET", "/v1/pull?token=pt&limit=-3", nil, &fakeLines{}, PullConfig{}, 400, `limit "-3"`},
		{"bad name", "GET", "/v1/pull?token=pt&name=../x", nil, &fakeLines{}, PullConfig{}, 400, `name "../x"`},
		{"store down reading the stored cursor", "GET", "/v1/pull?token=pt", nil, &fakeLines{cursorErr: down}, PullConfig{}, 503, "ClickHouse is unavailable; retry later"},
		{"store down counting the limit", "GET", "/v1/pull?token=pt&cursor=0&limit=1", nil, &fakeLines{lines: []string{"{}", "{}"}, nthErr: down}, PullConfig{}, 503, "ClickHouse is unavailable"},
		{"store down at the first line", "GET", "/v1/pull?token=pt&cursor=0", []string{"Accept-Encoding", "gzip"}, &fakeLines{lines: []string{"{}"}, queryErr: down}, PullConfig{}, 503, "ClickHouse is unavailable"},
		{"a bug", "GET", "/v1/pull?token=pt", nil, &panicLines{}, PullConfig{}, 500, "internal error"},
		{"wrong method", "POST", "/v1/pull?token=pt", nil, &fakeLines{}, PullConfig{}, 405, "the pull is GET /v1/pull"},
	} {
		t.Run(test.name, func(t *testing.T) {
			rec := do(newTestServer(&fakeIngester{}, test.lines, 2, test.pull), test.method, test.target, "", test.header...)
			if rec.Code != test.status {
				t.Fatalf("status %d %s, want %d", rec.Code, rec.Body, test.status)
			}
			var env map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
				t.Fatalf("body %q is not JSON: %v", rec.Body, err)
			}
			if len(env) != 2 || env["code"] != float64(test.status) {
				t.Errorf("body %s, want exactly {\"code\":%d,\"desc\":…}", rec.Body, test.status)
			}
			if desc, _ := env["desc"].(string); !strings.Contains(desc, test.desc) {
				t.Errorf("desc %q, want it to contain %q", desc, test.desc)
			}
			if strings.Contains(rec.Body.String(), "10.0.0.9") {
				t.Errorf("the answer tells the puller about imbridge's insides: %s", rec.Body)
			}
			for _, h := range []string{"X-Imbridge-Cursor", "X-Imbridge-More", "Content-Encoding"} {
				if v := rec.Header().Get(h); v != "" {
					t.Errorf("error answer carries %s: %s", h, v)
				}
			}
		})
	}
}

func TestReadyzSaysWhy(t *testing.T) {
	for _, test := range []struct {
		name    string
		ready   error
		status  int
		reasons []string
	}{
		{"ready", nil, 200, nil},
		{"one reason", errors.New("spool full"), 503, []string{"spool full"}},
		{"every reason", errors.Join(errors.New("clickhouse does not answer: connection refused"), nil, errors.New("spool full")),
			503, []string{"clickhouse does not answer: connection refused", "spool full"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			d := testDeps()
			d.Ready = func(context.Context) error { return test.ready }
			h := NewServer(d)
			rec := do(h, "GET", "/readyz", "")
			var body struct {
				Status  string
				Reasons []string
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if rec.Code != test.status || fmt.Sprint(body.Reasons) != fmt.Sprint(test.reasons) {
				t.Errorf("got %d %s, want %d with reasons %q", rec.Code, rec.Body, test.status, test.reasons)
			}
			// Liveness does not depend on readiness.
			if rec := do(h, "GET", "/healthz", ""); rec.Code != 200 {
				t.Errorf("/healthz %d while /readyz is %d", rec.Code, test.status)
			}
		})
	}
}

func TestMetricsOnItsOwnListenerLeaveTheMainOne(t *testing.T) {
	d := testDeps()
	d.SeparateMetrics = true
	h := NewServer(d)
	if rec := do(h, "GET", "/metrics", ""); rec.Code != 404 {
		t.Errorf("/metrics on the main listener with metrics.listen set: %d, want 404", rec.Code)
	}
}

func TestRequestID(t *testing.T) {
	h := newTestServer(&fakeIngester{}, &fakeLines{}, 0, PullConfig{})
	if got := do(h, "GET", "/healthz", "", "X-Request-Id", "lb-7f3a:42").Header().Get("X-Request-Id"); got != "lb-7f3a:42" {
		t.Errorf("a caller's request id came back as %q", got)
	}
	a := do(h, "GET", "/healthz", "").Header().Get("X-Request-Id")
	b := do(h, "GET", "/healthz", "", "X-Request-Id", "evil\nline").Header().Get("X-Request-Id")
	if a == "" || b == "" || a == b || strings.Contains(b, "evil") {
		t.Errorf("generated ids %q, %q: want two different new ones", a, b)
	}
}

// Each callback outcome moves its own counter by exactly one, and only
// answered callbacks are timed.
func TestCallbackOutcomesAreCounted(t *testing.T) {
	auth := []string{"Authorization", "Bearer nt", "Content-Type", "application/json"}
	for _, test := range []struct {
		name    string
		body    string
		header  []string
		ingErr  error
		outcome string
	}{
		{"ok", good, auth, nil, "ok"},
		{"unauthorized", good, []string{"Authorization", "Bearer nope"}, nil, "unauthorized"},
		{"bad_request", "[" + good, auth, nil, "bad_request"},
		{"invalid_message", good, auth, &ingest.InvalidError{Err: errors.New("data.x: bad")}, "invalid_message"},
		{"too_large", strings.Repeat(good+"\n", 40), auth, nil, "too_large"},
		{"unsupported_media_type", good, []string{"Authorization", "Bearer nt", "Content-Type", "text/xml"}, nil, "unsupported_media_type"},
		{"spool_full", good, auth, ingest.ErrFull, "spool_full"},
		{"unavailable", good, auth, ingest.ErrUnavailable, "unavailable"},
		{"internal_error", good, auth, errors.New("disk on fire"), "internal_error"},
	} {
		t.Run(test.name, func(t *testing.T) {
			d := testDeps()
			d.Ingest = &fakeIngester{err: test.ingErr}
			h, m := NewServer(d), d.Metrics
			do(h, "POST", "/v1/callbacks/native", test.body, test.header...)
			for _, o := range metrics.CallbackOutcomes {
				want := 0.0
				if o == test.outcome {
					want = 1
				}
				if got := counterValue(m.CallbackRequests.WithLabelValues("native", o)); got != want {
					t.Errorf("imbridge_callback_requests_total{outcome=%q} = %v, want %v", o, got, want)
				}
			}
			wantAcks := 0
			if test.outcome == "ok" {
				wantAcks = 1
			}
			if got := seriesCount(m.CallbackAck); got != 1 {
				t.Fatalf("%d ack histograms, want the one of the source", got)
			}
			if got := histogramCount(t, m, "imbridge_callback_ack_duration_seconds"); got != wantAcks {
				t.Errorf("ack latency observed %d times, want %d", got, wantAcks)
			}
		})
	}
}

// histogramCount is the sample count of the (single) histogram name.
func histogramCount(t *testing.T, m *metrics.Metrics, name string) int {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, mm := range mf.GetMetric() {
				n += int(mm.GetHistogram().GetSampleCount())
			}
		}
	}
	return n
}

func TestPullOutcomesAreCounted(t *testing.T) {
	receipts := []receipt{received{}, lost{}}
	d := testDeps()
	d.Lines = &fakeLines{lines: []string{`{"a":1}`, `{"a":2}`, `{"a":3}`}}
	d.Watermark = func() uint64 { return 3 }
	d.Receipt = func(*http.Request) (receipt, error) { r := receipts[0]; receipts = receipts[1:]; return r, nil }
	h, m := NewServer(d), d.Metrics
	do(h, "GET", "/v1/pull?token=pt&limit=2", "")                   // advanced, 2 lines
	do(h, "GET", "/v1/pull?token=pt", "")                           // lost: not advanced, 1 line
	do(h, "GET", "/v1/pull?token=pt&cursor=0&name=backup", "")      // explicit cursor, 3 lines
	do(h, "GET", "/v1/pull?token=wrong&cursor=0&name=intruder", "") // refused: no label
	for _, c := range []struct {
		puller, outcome string
		want            float64
	}{
		{"yunxin", "advanced", 1}, {"yunxin", "not_advanced", 1}, {"yunxin", "explicit_cursor", 0},
		{"backup", "explicit_cursor", 1}, {"backup", "advanced", 0},
	} {
		if got := counterValue(m.PullResponses.WithLabelValues(c.puller, c.outcome)); got != c.want {
			t.Errorf("imbridge_pull_responses_total{puller=%q,outcome=%q} = %v, want %v", c.puller, c.outcome, got, c.want)
		}
	}
	if got := counterValue(m.PullMessages.WithLabelValues("yunxin")); got != 3 {
		t.Errorf("yunxin messages %v, want 3", got)
	}
	if got := counterValue(m.PullMessages.WithLabelValues("backup")); got != 3 {
		t.Errorf("backup messages %v, want 3", got)
	}
	// {"code":200,"data":[…]} around the lines, commas between them.
	if got, want := counterValue(m.PullBytes.WithLabelValues("backup")), float64(len(`{"code":200,"data":[{"a":1},{"a":2},{"a":3}]}`)); got != want {
		t.Errorf("backup bytes %v, want %v", got, want)
	}
	if n := seriesCount(m.PullMessages); n != 2 {
		t.Errorf("%d puller series, want 2 (a refused pull names no puller)", n)
	}
}

func TestPullerLabelsAreBounded(t *testing.T) {
	d := testDeps()
	h, m := NewServer(d), d.Metrics
	for i := 0; i < metrics.MaxPullers+5; i++ {
		do(h, "GET", fmt.Sprintf("/v1/pull?token=pt&cursor=0&name=p%d", i), "")
	}
	if n := seriesCount(m.PullResponses); n != metrics.MaxPullers+1 {
		t.Errorf("%d series for %d pullers, want %d (the rest under \"other\")", n, metrics.MaxPullers+5, metrics.MaxPullers+1)
	}
	if got := counterValue(m.PullResponses.WithLabelValues(metrics.Other, "explicit_cursor")); got != 5 {
		t.Errorf("other: %v, want 5", got)
	}
}

// testDeps are a server's dependencies for a test to adjust: fresh
// metrics, fakes that succeed, the native source (token nt), pull token pt,
// pullers that receive everything.
func testDeps() Deps {
	return Deps{
		Logger: discard(), Metrics: metrics.New(), Ingest: &fakeIngester{}, Lines: &fakeLines{},
		Watermark: func() uint64 { return 0 }, Ready: func(context.Context) error { return nil },
		Sources: []Source{native.New("nt")}, Pull: PullConfig{Token: "pt"}, MaxBodyBytes: 4096,
		Receipt: func(*http.Request) (receipt, error) { return received{}, nil },
	}
}

var _ lineStore = (*panicLines)(nil)

// counterValue is c's value.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// seriesCount is how many series c has.
func seriesCount(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 1024)
	c.Collect(ch)
	close(ch)
	return len(ch)
}

// Whatever a caller sends as X-Request-Id, the id answered (and logged) is
// 1–128 safe characters: the caller's own when it was one, else a new one.
func FuzzRequestID(f *testing.F) {
	for _, seed := range []string{"", "lb-7f3a:42", "a b", "evil\nline", strings.Repeat("x", 129), "ключ", `"}`} {
		f.Add(seed)
	}
	h := newTestServer(&fakeIngester{}, &fakeLines{}, 0, PullConfig{})
	f.Fuzz(func(t *testing.T, id string) {
		rec := do(h, "GET", "/healthz", "", "X-Request-Id", id)
		got := rec.Header().Get("X-Request-Id")
		if !validRequestID(got) {
			t.Fatalf("answered id %q is not safe to log", got)
		}
		if validRequestID(id) != (got == id) {
			t.Fatalf("id %q answered as %q", id, got)
		}
	})
}
