package handler

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/metrics"
	"github.com/imbridge/imbridge/source/native"
	"github.com/imbridge/imbridge/store"
)

// fakeIngester records what it was given, or fails with err.
type fakeIngester struct {
	got [][]message.Message
	err error
}

var _ ingester = (*fakeIngester)(nil)

func (f *fakeIngester) IngestBatch(_ context.Context, _ string, msgs []message.Message, recalls []message.Recall) (ingest.Result, error) {
	if f.err != nil {
		return ingest.Result{}, f.err
	}
	f.got = append(f.got, msgs)
	return ingest.Result{Accepted: len(msgs), Recalls: len(recalls)}, nil
}

// fakeLines serves lines[i] as seq i+1. The errors make the store fail:
// cursorErr in PullCursor, nthErr in NthSeq, queryErr before the first line
// is streamed, streamErr after it.
type fakeLines struct {
	lines      []string
	deliveries []store.Delivery
	streamErr  error
	cursorErr  error
	nthErr     error
	queryErr   error
}

var _ lineStore = (*fakeLines)(nil)

func (f *fakeLines) NthSeq(_ context.Context, flt store.LineFilter, n int) (uint64, bool, error) {
	if f.nthErr != nil {
		return 0, false, f.nthErr
	}
	seq := flt.After + uint64(n)
	return seq, seq <= flt.UpTo, nil
}

func (f *fakeLines) StreamLines(_ context.Context, flt store.LineFilter, fn func(string) error) error {
	if f.queryErr != nil {
		return f.queryErr
	}
	for seq := flt.After + 1; seq <= flt.UpTo && seq <= uint64(len(f.lines)); seq++ {
		if err := fn(f.lines[seq-1]); err != nil {
			return err
		}
		if f.streamErr != nil && seq == flt.After+1 {
			return f.streamErr
		}
	}
	return nil
}

func (f *fakeLines) PullCursor(_ context.Context, puller string) (uint64, error) {
	if f.cursorErr != nil {
		return 0, f.cursorErr
	}
	var c uint64
	for _, d := range f.deliveries {
		if d.Puller == puller && d.Advanced && d.CursorTo > c {
			c = d.CursorTo
		}
	}
	return c, nil
}

func (f *fakeLines) RecordDelivery(_ context.Context, d store.Delivery) error {
	f.deliveries = append(f.deliveries, d)
	return nil
}

func newTestServer(in ingester, lines lineStore, wm uint64, pull PullConfig) http.Handler {
	if pull.Token == "" {
		pull.Token = "pt"
	}
	return NewServer(Deps{
		Logger: discard(), Metrics: metrics.New(), Ingest: in, Lines: lines,
		Watermark: func() uint64 { return wm }, Ready: func(context.Context) error { return nil },
		Sources: []Source{native.New("nt")}, Pull: pull, MaxBodyBytes: 4096,
		Receipt: func(*http.Request) (receipt, error) { return received{}, nil },
	})
}

// received is a puller that receives every response in full.
type received struct{}

func (received) Sample() error                             { return nil }
func (received) Wait(context.Context, time.Duration) error { return nil }

// lost is a puller that never finishes reading.
type lost struct{}

func (lost) Sample() error { return nil }
func (lost) Wait(context.Context, time.Duration) error {
	return errors.New("connection reset with 600 KiB unread")
}

func TestPullNotReceivedDoesNotAdvance(t *testing.T) {
	lines := &fakeLines{lines: []string{`{"a":1}`, `{"a":2}`}}
	h := NewServer(Deps{
		Logger: discard(), Metrics: metrics.New(), Ingest: &fakeIngester{}, Lines: lines,
		Watermark: func() uint64 { return 2 }, Ready: func(context.Context) error { return nil },
		Pull: PullConfig{Token: "pt"}, MaxBodyBytes: 4096,
		Receipt: func(*http.Request) (receipt, error) { return lost{}, nil },
	})
	for i := 0; i < 2; i++ {
		if rec := do(h, "GET", "/v1/pull?token=pt", ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), `{"a":1}`) {
			t.Fatalf("pull %d: %d %s, want both lines again", i+1, rec.Code, rec.Body)
		}
	}
	for _, d := range lines.deliveries {
		if d.Advanced {
			t.Fatalf("a response the puller did not receive advanced the cursor: %+v", d)
		}
	}
	if len(lines.deliveries) != 2 {
		t.Fatalf("%d deliveries recorded, want both attempts (not advanced)", len(lines.deliveries))
	}
}

func do(h http.Handler, method, target, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

const good = `{"data":{"ext":"","clientType":"2","createTime":1513685265481,"msgid":1,"from":"aaa","to":"bbb","body":"测试"},"type":0}`
const good2 = `{"data":{"ext":"","clientType":"2","createTime":1513685265481,"msgid":2,"from":"aaa","to":"bbb","body":"x"},"type":0}`
const bad = `{"data":{"clientType":16,"createTime":1513685265481,"msgid":3,"accid":"a","body":"x"},"type":0}`

func TestNativeAnswers(t *testing.T) {
	auth := []string{"Authorization", "Bearer nt", "Content-Type", "application/json"}
	for _, test := range []struct {
		name     string
		body     string
		header   []string
		ingErr   error
		status   int
		wantBody string
		wantMsgs int
	}{
		{"one line", good, auth, nil, 200, `"accepted":1`, 1},
		{"ndjson", good + "\n\n" + good2 + "\n", auth, nil, 200, `"accepted":2`, 2},
		{"array", "[\n" + good + ",\n" + good2 + "\n]", auth, nil, 200, `"accepted":2`, 2},
		{"bad line in ndjson", good + "\n" + bad, auth, nil, 400, `"error":"line 2: data.tid: required for team messages","line":2`, 0},
		{"bad message in array", "[" + good + ",\n" + bad + "]", auth, nil, 400, `"line":2,"message":2`, 0},
		{"broken array", "[" + good + ",", auth, nil, 400, `"error"`, 0},
		{"empty", "  ", auth, nil, 400, `empty body`, 0},
		{"no token", good, []string{"Content-Type", "application/json"}, nil, 401, `bearer token`, 0},
		{"wrong token", good, []string{"Authorization", "Bearer nope"}, nil, 401, `bearer token`, 0},
		{"wrong content type", good, []string{"Authorization", "Bearer nt", "Content-Type", "text/xml"}, nil, 415, `Content-Type`, 0},
		{"too large", "[" + strings.Repeat(good+",", 40) + good + "]", auth, nil, 413, `ingest.max_body_bytes`, 0},
		{"spool full", good, auth, ingest.ErrFull, 503, `spool full`, 0},
		{"spool closed", good, auth, ingest.ErrUnavailable, 503, `shutting down`, 0},
		{"invalid after decoding", good, auth, &ingest.InvalidError{Index: 1, Err: errors.New("data.x: bad")}, 400, `"error":"message 2: data.x: bad","message":2`, 0},
		{"unknown failure", good, auth, errors.New("disk on fire"), 500, `"error":"internal error"`, 0},
	} {
		t.Run(test.name, func(t *testing.T) {
			in := &fakeIngester{err: test.ingErr}
			rec := do(newTestServer(in, &fakeLines{}, 0, PullConfig{}), "POST", "/v1/callbacks/native", test.body, test.header...)
			if rec.Code != test.status || !strings.Contains(rec.Body.String(), test.wantBody) {
				t.Errorf("got %d %s, want %d containing %s", rec.Code, rec.Body, test.status, test.wantBody)
			}
			n := 0
			for _, g := range in.got {
				n += len(g)
			}
			if n != test.wantMsgs {
				t.Errorf("ingested %d messages, want %d", n, test.wantMsgs)
			}
		})
	}
}

func TestNativeGzipBody(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	io.WriteString(zw, good)
	zw.Close()
	in := &fakeIngester{}
	rec := do(newTestServer(in, &fakeLines{}, 0, PullConfig{}), "POST", "/v1/callbacks/native", buf.String(),
		"Authorization", "Bearer nt", "Content-Encoding", "gzip")
	if rec.Code != 200 || len(in.got) != 1 {
		t.Errorf("gzip body: %d %s", rec.Code, rec.Body)
	}
}

func TestDisabledSourcesAnswer404(t *testing.T) {
	h := newTestServer(&fakeIngester{}, &fakeLines{}, 0, PullConfig{})
	for _, src := range []string{"easemob", "tencent", "rongcloud", "yunxin"} {
		if rec := do(h, "POST", "/v1/callbacks/"+src, "{}"); rec.Code != 404 {
			t.Errorf("%s: %d, want 404", src, rec.Code)
		}
	}
}

func TestPull(t *testing.T) {
	lines := &fakeLines{lines: []string{`{"a":1}`, `{"a":2}`, `{"a":3}`, `{"a":4}`}}
	h := newTestServer(&fakeIngester{}, lines, 3, PullConfig{}) // seq 4 is not loaded yet
	for _, test := range []struct {
		name, target     string
		header           []string
		status           int
		body             string
		cursor, more     string
		advancesStoredTo uint64
	}{
		{"stored cursor, everything loaded", "/v1/pull?token=pt", nil, 200, `{"code":200,"data":[{"a":1},{"a":2},{"a":3}]}`, "3", "false", 3},
		{"stored cursor moved", "/v1/pull?token=pt", nil, 200, `{"code":200,"data":[]}`, "3", "false", 3},
		{"explicit cursor and limit", "/v1/pull?cursor=0&limit=2", []string{"Authorization", "Bearer pt"}, 200, `{"code":200,"data":[{"a":1},{"a":2}]}`, "2", "true", 0},
		{"another puller", "/v1/pull?token=pt&name=backup&limit=1", nil, 200, `{"code":200,"data":[{"a":1}]}`, "1", "true", 1},
		{"cursor beyond watermark", "/v1/pull?token=pt&cursor=9", nil, 200, `{"code":200,"data":[]}`, "9", "false", 0},
		{"wrong token", "/v1/pull?token=x", nil, 401, `{"code":401,"desc":"missing or wrong pull token`, "", "", 0},
		{"no token", "/v1/pull", nil, 401, `{"code":401,"desc":`, "", "", 0},
		{"bad cursor", "/v1/pull?token=pt&cursor=-1", nil, 400, `"code":400,"desc":"cursor \"-1\"`, "", "", 0},
		{"bad limit", "/v1/pull?token=pt&limit=0", nil, 400, `limit \"0\"`, "", "", 0},
		{"bad name", "/v1/pull?token=pt&name=a%20b", nil, 400, `name \"a b\"`, "", "", 0},
	} {
		t.Run(test.name, func(t *testing.T) {
			before := len(lines.deliveries)
			rec := do(h, "GET", test.target, "", test.header...)
			if rec.Code != test.status {
				t.Fatalf("status %d %s, want %d", rec.Code, rec.Body, test.status)
			}
			if test.status != 200 {
				if !strings.Contains(rec.Body.String(), test.body) {
					t.Errorf("body %s, want %s", rec.Body, test.body)
				}
				return
			}
			if rec.Body.String() != test.body {
				t.Errorf("body %s, want exactly %s", rec.Body, test.body)
			}
			if c, m := rec.Header().Get("X-Imbridge-Cursor"), rec.Header().Get("X-Imbridge-More"); c != test.cursor || m != test.more {
				t.Errorf("cursor %s more %s, want %s %s", c, m, test.cursor, test.more)
			}
			if len(lines.deliveries) != before+1 {
				t.Fatalf("delivery not recorded")
			}
			d := lines.deliveries[len(lines.deliveries)-1]
			if test.advancesStoredTo > 0 != d.Advanced || (d.Advanced && d.CursorTo != test.advancesStoredTo) {
				t.Errorf("delivery %+v, want advanced to %d", d, test.advancesStoredTo)
			}
		})
	}
}

func TestPullGzip(t *testing.T) {
	lines := &fakeLines{lines: []string{`{"a":"测试"}`}}
	rec := do(newTestServer(&fakeIngester{}, lines, 1, PullConfig{}), "GET", "/v1/pull?token=pt", "", "Accept-Encoding", "gzip")
	if rec.Header().Get("Content-Encoding") != "gzip" {
		t.Fatal("not gzipped")
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(zr)
	if string(body) != `{"code":200,"data":[{"a":"测试"}]}` {
		t.Errorf("body %s", body)
	}
}

func TestPullAllowlist(t *testing.T) {
	lines := &fakeLines{}
	h := newTestServer(&fakeIngester{}, lines, 0, PullConfig{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	// httptest requests come from 192.0.2.1; a forwarded header must not help.
	if rec := do(h, "GET", "/v1/pull?token=pt", "", "X-Forwarded-For", "10.1.2.3"); rec.Code != 401 {
		t.Errorf("outside the allowlist: %d, want 401", rec.Code)
	}
	h = newTestServer(&fakeIngester{}, lines, 0, PullConfig{Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if rec := do(h, "GET", "/v1/pull?token=pt", ""); rec.Code != 200 {
		t.Errorf("inside the allowlist: %d, want 200", rec.Code)
	}
}

func TestPullBrokenStreamDoesNotAdvance(t *testing.T) {
	// The first line is larger than the write buffer: it reaches the
	// puller before ClickHouse fails, so only breaking the connection is left.
	big := `{"a":"` + strings.Repeat("x", 100<<10) + `"}`
	lines := &fakeLines{lines: []string{big, `{"a":2}`}, streamErr: errors.New("clickhouse went away")}
	h := newTestServer(&fakeIngester{}, lines, 2, PullConfig{})
	func() {
		defer func() {
			if r := recover(); r != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler (connection aborted)", r)
			}
		}()
		do(h, "GET", "/v1/pull?token=pt", "")
	}()
	if len(lines.deliveries) != 1 || lines.deliveries[0].Advanced {
		t.Errorf("a broken response must be recorded once, not advanced: %+v", lines.deliveries)
	}
}

func TestHealth(t *testing.T) {
	h := newTestServer(&fakeIngester{}, &fakeLines{}, 0, PullConfig{})
	for _, path := range []string{"/healthz", "/readyz"} {
		if rec := do(h, "GET", path, ""); rec.Code != 200 {
			t.Errorf("%s: %d", path, rec.Code)
		}
	}
	rec := do(h, "GET", "/metrics", "")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "imbridge_http_requests_total") {
		t.Errorf("/metrics: %d", rec.Code)
	}
}

// readAll reads every byte whatever its first buffer, and passes on a
// reader's error.
func TestReadAll(t *testing.T) {
	body := strings.Repeat("0123456789", 200) // 2000 bytes
	for _, tc := range []struct {
		name string
		r    io.Reader
		size int
		want string
		err  bool
	}{
		{"the declared length and one", strings.NewReader(body), len(body) + 1, body, false},
		{"exactly the length", strings.NewReader(body), len(body), body, false},
		{"a smaller buffer grows", strings.NewReader(body), 7, body, false},
		{"one byte at a time", iotest.OneByteReader(strings.NewReader(body)), 3, body, false},
		{"data with EOF", iotest.DataErrReader(strings.NewReader(body)), 100, body, false},
		{"empty", strings.NewReader(""), 0, "", false},
		{"a reader that fails", iotest.TimeoutReader(iotest.HalfReader(strings.NewReader(body))), 5000, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(tc.r, tc.size)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if !tc.err && string(got) != tc.want {
				t.Errorf("read %d bytes, want %d", len(got), len(tc.want))
			}
		})
	}
}
