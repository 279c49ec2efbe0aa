// Package metrics holds imbridge's Prometheus collectors, on a registry of
// its own (no global state), served at GET /metrics.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the collectors the handlers update.
type Metrics struct {
	Registry *prometheus.Registry

	// IngestMessages counts messages per source and outcome
	// (accepted, duplicate, rejected).
	IngestMessages *prometheus.CounterVec
	// IgnoredEvents counts callbacks that carry no chat content, per source
	// and kind (read receipts, typing, failed sends…).
	IgnoredEvents *prometheus.CounterVec
	// HTTPRequests counts requests per route and status code.
	HTTPRequests *prometheus.CounterVec
	// HTTPDuration observes request latency per route.
	HTTPDuration *prometheus.HistogramVec
	// PullLines and PullBytes count what pulls delivered, per puller.
	PullLines *prometheus.CounterVec
	PullBytes *prometheus.CounterVec
	// ExportRuns counts scheduled export runs per outcome (ok, failed,
	// busy); ExportDuration observes how long they took.
	ExportRuns     *prometheus.CounterVec
	ExportDuration prometheus.Histogram
	// ExportLines counts lines written by scheduled exports, per scene.
	ExportLines *prometheus.CounterVec
}

// New returns the collectors registered on a new registry, with the Go and
// process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		IngestMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_ingest_messages_total", Help: "Messages received per source and outcome (accepted, duplicate, rejected).",
		}, []string{"source", "outcome"}),
		IgnoredEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_ingest_ignored_events_total", Help: "Callbacks answered 200 that carry no chat content, per source and kind.",
		}, []string{"source", "kind"}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_http_requests_total", Help: "HTTP requests per route and status code.",
		}, []string{"route", "code"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imbridge_http_request_duration_seconds", Help: "HTTP request latency per route.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2, 5, 30, 300},
		}, []string{"route"}),
		PullLines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_pull_lines_total", Help: "Lines delivered by completed pulls, per puller.",
		}, []string{"puller"}),
		PullBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_pull_bytes_total", Help: "Body bytes (before compression) of completed pulls, per puller.",
		}, []string{"puller"}),
		ExportRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_export_runs_total", Help: "Scheduled export runs per outcome (ok, failed, busy).",
		}, []string{"outcome"}),
		ExportDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "imbridge_export_duration_seconds", Help: "Duration of scheduled export runs.",
			Buckets: []float64{1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600},
		}),
		ExportLines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_export_lines_total", Help: "Lines written by scheduled export runs, per scene.",
		}, []string{"scene"}),
	}
	m.Registry.MustRegister(m.IngestMessages, m.IgnoredEvents, m.HTTPRequests, m.HTTPDuration, m.PullLines, m.PullBytes,
		m.ExportRuns, m.ExportDuration, m.ExportLines,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Gauge registers a gauge read from f at scrape time.
func (m *Metrics) Gauge(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// Counter registers a counter read from f at scrape time.
func (m *Metrics) Counter(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}
