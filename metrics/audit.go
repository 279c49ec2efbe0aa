package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// AuditSnapshot is what the audit queries found in ClickHouse.
type AuditSnapshot struct {
	// Held counts, per source, held team messages whose group still has no
	// team mapping.
	Held map[string]uint64
	// UnmappedURLs counts distinct media URLs without a URL mapping.
	UnmappedURLs uint64
	// Pullers are the pullers known to ClickHouse (those with an advanced
	// delivery, and "yunxin").
	Pullers []PullerState
}

// PullerState is one puller's position.
type PullerState struct {
	Name   string
	Cursor uint64 // its stored cursor
	// OldestUndelivered is when the oldest message it has not received yet
	// (loaded, servable, after its cursor) arrived; zero when none waits.
	OldestUndelivered time.Time
}

// AuditOptions configures RegisterAudit.
type AuditOptions struct {
	// Fetch runs the queries; it must return within its context.
	Fetch func(ctx context.Context) (AuditSnapshot, error)
	// Interval is how old the values may get before a scrape refreshes
	// them (default 5 min).
	Interval time.Duration
	// Timeout bounds one refresh (default 1 min).
	Timeout time.Duration
	// Wait is how long a scrape waits for a refresh it started before it
	// answers with the previous values (default 2 s).
	Wait   time.Duration
	Logger *slog.Logger
	now    func() time.Time
}

// audit is a collector of gauges that need a ClickHouse query: they are
// computed at most once per Interval, when a scrape finds them older, in the
// background; scrapes answer from the last values, so a slow ClickHouse
// never makes /metrics slow, and no scrape rate can make ClickHouse busier.
type audit struct {
	opts AuditOptions
	pull *Names

	mu      sync.Mutex
	snap    AuditSnapshot
	at      time.Time // of the last successful refresh; zero: none yet
	tried   time.Time // of the last refresh started
	running chan struct{}
	errors  uint64

	held, unmapped, cursor, age, refreshed, errs *prometheus.Desc
}

// RegisterAudit registers the gauges computed by o.Fetch:
// imbridge_held_messages{source}, imbridge_unmapped_media_urls,
// imbridge_pull_stored_cursor{puller},
// imbridge_pull_oldest_undelivered_age_seconds{puller},
// imbridge_audit_refresh_timestamp_seconds and
// imbridge_audit_refresh_errors_total.
func (m *Metrics) RegisterAudit(o AuditOptions) {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.Wait <= 0 {
		o.Wait = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.now == nil {
		o.now = time.Now
	}
	m.Registry.MustRegister(newAudit(o, m.Pullers))
}

func newAudit(o AuditOptions, pullers *Names) *audit {
	return &audit{
		opts: o, pull: pullers,
		held: prometheus.NewDesc("imbridge_held_messages",
			"Held team messages whose group still has no team mapping, per source (refreshed every metrics.audit_interval).", []string{"source"}, nil),
		unmapped: prometheus.NewDesc("imbridge_unmapped_media_urls",
			"Distinct media URLs without a URL mapping (refreshed every metrics.audit_interval).", nil, nil),
		cursor: prometheus.NewDesc("imbridge_pull_stored_cursor",
			"A puller's stored cursor: the last seq it provably received (refreshed every metrics.audit_interval).", []string{"puller"}, nil),
		age: prometheus.NewDesc("imbridge_pull_oldest_undelivered_age_seconds",
			"How long the oldest message a puller has not received yet has been waiting; 0 when none waits (refreshed every metrics.audit_interval).", []string{"puller"}, nil),
		refreshed: prometheus.NewDesc("imbridge_audit_refresh_timestamp_seconds",
			"When the audit gauges (held, unmapped, puller positions) were last computed.", nil, nil),
		errs: prometheus.NewDesc("imbridge_audit_refresh_errors_total",
			"Failed refreshes of the audit gauges.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (a *audit) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{a.held, a.unmapped, a.cursor, a.age, a.refreshed, a.errs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (a *audit) Collect(ch chan<- prometheus.Metric) {
	a.refreshIfOld()
	a.mu.Lock()
	snap, at, errs := a.snap, a.at, a.errors
	a.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(a.errs, prometheus.CounterValue, float64(errs))
	if at.IsZero() {
		return
	}
	ch <- prometheus.MustNewConstMetric(a.refreshed, prometheus.GaugeValue, float64(at.UnixMilli())/1000)
	for src, n := range snap.Held {
		ch <- prometheus.MustNewConstMetric(a.held, prometheus.GaugeValue, float64(n), src)
	}
	ch <- prometheus.MustNewConstMetric(a.unmapped, prometheus.GaugeValue, float64(snap.UnmappedURLs))
	// Pullers past the label limit share "other": the oldest wait among them.
	ages := map[string]float64{}
	for _, p := range snap.Pullers {
		label := a.pull.Label(p.Name)
		if label != Other {
			ch <- prometheus.MustNewConstMetric(a.cursor, prometheus.GaugeValue, float64(p.Cursor), label)
		}
		age := 0.0
		if !p.OldestUndelivered.IsZero() {
			age = max(0, at.Sub(p.OldestUndelivered).Seconds())
		}
		ages[label] = max(ages[label], age)
	}
	for label, age := range ages {
		ch <- prometheus.MustNewConstMetric(a.age, prometheus.GaugeValue, age, label)
	}
}

// refreshIfOld starts a refresh when the values are older than the
// interval and none runs, then waits for the running one at most Wait.
func (a *audit) refreshIfOld() {
	a.mu.Lock()
	now := a.opts.now()
	if a.running == nil && now.Sub(a.tried) >= a.opts.Interval {
		a.tried = now
		done := make(chan struct{})
		a.running = done
		go a.refresh(done)
	}
	running := a.running
	a.mu.Unlock()
	if running == nil {
		return
	}
	t := time.NewTimer(a.opts.Wait)
	defer t.Stop()
	select {
	case <-running:
	case <-t.C:
	}
}

func (a *audit) refresh(done chan struct{}) {
	defer close(done)
	ctx, cancel := context.WithTimeout(context.Background(), a.opts.Timeout)
	defer cancel()
	started := a.opts.now()
	snap, err := a.opts.Fetch(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.running = nil
	if err != nil {
		a.errors++
		a.opts.Logger.Warn("computing the audit gauges failed; /metrics keeps the previous values", "err", err)
		return
	}
	a.snap, a.at = snap, started
}
