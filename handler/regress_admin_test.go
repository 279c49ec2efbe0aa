package handler

import (
	"context"
	"net/http"
	"testing"

	"github.com/imbridge/imbridge/metrics"
	"github.com/imbridge/imbridge/store"
)

// Review: the admin map routes accept entries with empty fields (a body in
// snake_case, or a missing column): an empty new URL then replaces media
// URLs with "" in every rendered and re-issued line, an empty group id or a
// tid of 0 is written as a mapping.
func TestReviewAdminAcceptsEmptyMappings(t *testing.T) {
	var gotURL []store.URLMapping
	var gotTeam []store.TeamMapping
	h := NewServer(Deps{
		Logger: discard(), Metrics: metrics.New(), Ingest: &fakeIngester{}, Lines: &fakeLines{},
		Watermark: func() uint64 { return 0 }, Ready: func(context.Context) error { return nil },
		Pull: PullConfig{Token: "pt"}, MaxBodyBytes: 4096,
		Admin: &Admin{Token: "at",
			PutURL:  func(_ context.Context, e []store.URLMapping) (uint64, error) { gotURL = e; return 1, nil },
			PutTeam: func(_ context.Context, e []store.TeamMapping) (uint64, error) { gotTeam = e; return 2, nil },
		},
	})
	rec := do(h, "POST", "/v1/admin/maps/url", `[{"old_url":"https://old/a.jpg","new_url":"https://nim/a.jpg"}]`,
		"Authorization", "Bearer at", "Content-Type", "application/json")
	if rec.Code == http.StatusOK {
		t.Errorf("url map %+v accepted (%d %s): every field empty", gotURL, rec.Code, rec.Body)
	}
	rec = do(h, "POST", "/v1/admin/maps/url", `[{"Old":"https://old/a.jpg"}]`,
		"Authorization", "Bearer at", "Content-Type", "application/json")
	if rec.Code == http.StatusOK {
		t.Errorf("url map %+v accepted (%d %s): new URL empty", gotURL, rec.Code, rec.Body)
	}
	rec = do(h, "POST", "/v1/admin/maps/team", `[{"source":"tencent","group_id":"@TGS#1","tid":5}]`,
		"Authorization", "Bearer at", "Content-Type", "application/json")
	if rec.Code == http.StatusOK {
		t.Errorf("team map %+v accepted (%d %s): group id empty", gotTeam, rec.Code, rec.Body)
	}
}
