package metrics

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// scrape returns the lines of /metrics that start with prefix.
func scrape(t *testing.T, m *Metrics, prefix string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var out []string
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The audit gauges are computed by the first scrape, then served from the
// last values until the interval has passed; a failed refresh keeps them and
// is counted; pullers past the label limit share "other" (their oldest wait).
func TestAuditGaugesAreCachedPerInterval(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	var calls int
	var fail error
	held := uint64(3)
	m := New()
	m.Pullers = NewNames(2)
	m.RegisterAudit(AuditOptions{
		Interval: time.Minute, Wait: 10 * time.Second, now: clock.Now,
		Fetch: func(context.Context) (AuditSnapshot, error) {
			calls++
			if fail != nil {
				return AuditSnapshot{}, fail
			}
			now := clock.Now()
			return AuditSnapshot{Held: map[string]uint64{"tencent": held}, UnmappedURLs: 7, Pullers: []PullerState{
				{Name: "yunxin", Cursor: 40, OldestUndelivered: now.Add(-90 * time.Second)},
				{Name: "backup", Cursor: 12},
				{Name: "p3", Cursor: 5, OldestUndelivered: now.Add(-10 * time.Second)},
				{Name: "p4", Cursor: 6, OldestUndelivered: now.Add(-20 * time.Second)},
			}}, nil
		},
	})
	want := `imbridge_held_messages{source="tencent"} 3`
	if got := scrape(t, m, "imbridge_held_messages{"); got != want || calls != 1 {
		t.Fatalf("first scrape: %q after %d queries, want %q after 1", got, calls, want)
	}
	if got, want := scrape(t, m, "imbridge_pull_"), strings.Join([]string{
		`imbridge_pull_oldest_undelivered_age_seconds{puller="backup"} 0`,
		`imbridge_pull_oldest_undelivered_age_seconds{puller="other"} 20`,
		`imbridge_pull_oldest_undelivered_age_seconds{puller="yunxin"} 90`,
		`imbridge_pull_stored_cursor{puller="backup"} 12`,
		`imbridge_pull_stored_cursor{puller="yunxin"} 40`,
	}, "\n"); got != want {
		t.Errorf("puller gauges:\n%s\nwant\n%s", got, want)
	}
	if got := scrape(t, m, "imbridge_unmapped_media_urls "); got != "imbridge_unmapped_media_urls 7" {
		t.Errorf("unmapped: %q", got)
	}

	held = 5
	clock.Add(59 * time.Second)
	if got := scrape(t, m, "imbridge_held_messages{"); got != want || calls != 1 {
		t.Errorf("within the interval: %q after %d queries, want the cached %q", got, calls, want)
	}
	clock.Add(time.Second)
	if got := scrape(t, m, "imbridge_held_messages{"); got != `imbridge_held_messages{source="tencent"} 5` || calls != 2 {
		t.Errorf("after the interval: %q after %d queries, want 5 after 2", got, calls)
	}

	fail = errors.New("clickhouse down")
	clock.Add(time.Minute)
	if got := scrape(t, m, "imbridge_held_messages{"); got != `imbridge_held_messages{source="tencent"} 5` {
		t.Errorf("after a failed refresh: %q, want the last values", got)
	}
	if got := scrape(t, m, "imbridge_audit_refresh_errors_total"); !strings.HasSuffix(got, " 1") {
		t.Errorf("errors: %q, want 1", got)
	}
}

// A refresh that outlasts the scrape's wait is not waited for: the scrape
// answers at once, and no second query starts while one runs.
func TestAuditScrapeDoesNotWaitForSlowClickHouse(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	m := New()
	m.RegisterAudit(AuditOptions{Interval: time.Nanosecond, Wait: 10 * time.Millisecond,
		Fetch: func(ctx context.Context) (AuditSnapshot, error) {
			started <- struct{}{}
			<-release
			return AuditSnapshot{UnmappedURLs: 1}, nil
		}})
	for i := 0; i < 3; i++ {
		if got := scrape(t, m, "imbridge_unmapped_media_urls "); got != "" {
			t.Errorf("scrape %d: %q before any refresh finished", i, got)
		}
	}
	close(release)
	if n := len(started); n != 1 {
		t.Errorf("%d refreshes started while one was running, want 1", n)
	}
}
