// Kept from the adversarial review of the callback allocation changes
// (a1b6aeb, d8dbad5): each test fails on a mutant of the change it covers.

package handler

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// Every log line of a request (the refusal, the panic, the pull's own
// warning, the request line) carries the id answered in X-Request-Id, on
// every path: a generated id or the caller's, a refusal, a recovered panic,
// the pull's refusals and its logger, an unmatched route, the admin API.
func TestRequestIDOnEveryPathReview5(t *testing.T) {
	for _, test := range []struct {
		name     string
		method   string
		target   string
		body     string
		header   []string
		deps     func(*Deps)
		wantMsgs []string // log lines besides the request line
	}{
		{"callback refusal, generated id", "POST", "/v1/callbacks/native", good, []string{"Authorization", "Bearer nope"}, nil, []string{"request refused"}},
		{"callback refusal, caller's id", "POST", "/v1/callbacks/native", good, []string{"Authorization", "Bearer nope", "X-Request-Id", "lb-1"}, nil, []string{"request refused"}},
		{"callback 413", "POST", "/v1/callbacks/native", strings.Repeat(" ", 5000), []string{"Authorization", "Bearer nt"}, nil, []string{"request refused"}},
		{"callback panic", "POST", "/v1/callbacks/native", good, []string{"Authorization", "Bearer nt"},
			func(d *Deps) { d.Ingest = panicIngester{} }, []string{"panic"}},
		{"callback 503", "POST", "/v1/callbacks/native", good, []string{"Authorization", "Bearer nt"},
			func(d *Deps) { d.Ingest = &fakeIngester{err: errors.New("disk on fire")} }, []string{"request failed"}},
		{"pull refusal", "GET", "/v1/pull?token=nope", "", nil, nil, []string{"request refused"}},
		{"pull panic", "GET", "/v1/pull?token=pt", "", nil, func(d *Deps) { d.Lines = &panicLines{} }, []string{"panic"}},
		{"pull receipt warning", "GET", "/v1/pull?token=pt", "", []string{"Accept-Encoding", "gzip"},
			func(d *Deps) {
				d.Receipt = func(*http.Request) (receipt, error) { return nil, errors.New("no connection") }
			}, []string{"cannot follow this pull's delivery on its connection; it will not advance the stored cursor"}},
		{"unmatched route", "GET", "/nope", "", nil, nil, nil},
		{"pull with POST", "POST", "/v1/pull", "", nil, nil, nil},
		{"disabled source", "POST", "/v1/callbacks/tencent", good, nil, nil, nil},
		{"admin without admin", "GET", "/v1/admin/urlmaps", "", nil, nil, nil},
	} {
		t.Run(test.name, func(t *testing.T) {
			var buf bytes.Buffer
			d := testDeps()
			d.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
			if test.deps != nil {
				test.deps(&d)
			}
			rec := do(NewServer(d), test.method, test.target, test.body, test.header...)
			id := rec.Header().Get("X-Request-Id")
			if !validRequestID(id) {
				t.Fatalf("answered id %q (status %d)", id, rec.Code)
			}
			if vals := rec.Header().Values("X-Request-Id"); len(vals) != 1 {
				t.Errorf("X-Request-Id answered %d times: %q", len(vals), vals)
			}
			lines := logLines(t, buf.String())
			var msgs []string
			for _, l := range lines {
				if l["request_id"] != id {
					t.Errorf("line %q has request_id %v, answered %q", l["msg"], l["request_id"], id)
				}
				if l["msg"] != "request" {
					msgs = append(msgs, l["msg"].(string))
				}
			}
			if len(lines) == 0 || lines[len(lines)-1]["msg"] != "request" {
				t.Errorf("no request line last:\n%s", buf.String())
			}
			if strings.Join(msgs, "|") != strings.Join(test.wantMsgs, "|") {
				t.Errorf("lines %q, want %q besides the request line (status %d):\n%s", msgs, test.wantMsgs, rec.Code, buf.String())
			}
		})
	}
}
