// Package metrics holds imbridge's Prometheus collectors, on a registry of
// its own (no global state), served at GET /metrics (or on metrics.listen).
//
// Names follow the Prometheus conventions: an imbridge_ prefix, the unit in
// the name (_seconds, _bytes), _total on counters. Every label has a bounded
// set of values: sources, outcomes and reasons are fixed strings in the code,
// routes are the router's patterns, and puller names (chosen by whoever holds
// the pull token) go through Names, which keeps the first few and folds the
// rest into "other".
package metrics

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MaxPullers is how many distinct puller names get labels of their own; the
// others are counted under "other".
const MaxPullers = 16

// Metrics are the collectors the handlers, the scheduled exports and the
// import update.
type Metrics struct {
	Registry *prometheus.Registry

	// CallbackRequests counts callback requests per source and outcome: ok,
	// or the reason it was refused (see CallbackOutcomes).
	CallbackRequests *prometheus.CounterVec
	// CallbackAck observes, per source, how long a callback took from the
	// first byte of the request to a 2xx answer (messages durable).
	CallbackAck *prometheus.HistogramVec
	// IngestMessages counts the messages and recalls of accepted callbacks
	// per source and outcome: accepted (new, now durable), duplicate (seen
	// within spool.dedup_window; not stored again), recall.
	IngestMessages *prometheus.CounterVec
	// IgnoredEvents counts callbacks that carry no chat content, per source
	// and kind (read receipts, typing, failed sends…).
	IgnoredEvents *prometheus.CounterVec
	// ImportMessages counts messages of imported history files (sent by
	// `imbridge import` through the admin API) per source and outcome; see
	// CountImport.
	ImportMessages *prometheus.CounterVec

	// HTTPRequests counts requests per route and status code.
	HTTPRequests *prometheus.CounterVec
	// HTTPDuration observes request latency per route.
	HTTPDuration *prometheus.HistogramVec

	// PullResponses counts pull responses that streamed, per puller and
	// outcome: advanced (received in full: the stored cursor moved),
	// not_advanced (not provably received: the next pull starts again),
	// explicit_cursor (a cursor was given: the stored one never moves),
	// aborted (ClickHouse failed mid-stream: the connection was broken; a
	// puller hanging up mid-stream is not_advanced or explicit_cursor).
	// Refused pulls are in imbridge_http_requests_total{route="/v1/pull"}.
	PullResponses *prometheus.CounterVec
	// PullMessages and PullBytes count what pull responses carried, per
	// puller (bytes before compression).
	PullMessages *prometheus.CounterVec
	PullBytes    *prometheus.CounterVec
	// Pullers bounds the puller label.
	Pullers *Names

	importSources *Names

	// ExportRuns counts scheduled export runs per outcome (ok, failed,
	// busy); ExportDuration observes how long they took.
	ExportRuns     *prometheus.CounterVec
	ExportDuration prometheus.Histogram
	// ExportLines counts lines written by scheduled exports, per scene.
	ExportLines *prometheus.CounterVec
}

// CallbackOutcomes are the values of imbridge_callback_requests_total's
// outcome label: ok, then one reason per way a callback is refused.
var CallbackOutcomes = []string{
	"ok",
	"unauthorized",           // 401: bad or missing signature/token, stale timestamp
	"bad_request",            // 400: malformed body (nothing stored)
	"invalid_message",        // 400: a decoded message failed validation (nothing stored)
	"too_large",              // 413: body over ingest.max_body_bytes
	"unsupported_media_type", // 415: wrong Content-Type or Content-Encoding
	"spool_full",             // 503: spool.max_bytes reached (ClickHouse behind)
	"unavailable",            // 503: shutting down, disk error, timeout
	"internal_error",         // 500
}

// New returns the collectors registered on a new registry, with the Go and
// process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		CallbackRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_callback_requests_total", Help: "Callback requests per source and outcome: ok, or why it was refused (unauthorized, bad_request, invalid_message, too_large, unsupported_media_type, spool_full, unavailable, internal_error).",
		}, []string{"source", "outcome"}),
		CallbackAck: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imbridge_callback_ack_duration_seconds", Help: "Time from a callback's arrival to its 2xx answer (its messages durable), per source.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}, []string{"source"}),
		IngestMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_ingest_messages_total", Help: "Messages of accepted callbacks per source and outcome (accepted: new and durable; duplicate: already seen within spool.dedup_window, not stored again; recall).",
		}, []string{"source", "outcome"}),
		IgnoredEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_ingest_ignored_events_total", Help: "Callbacks answered 200 that carry no chat content, per source and kind.",
		}, []string{"source", "kind"}),
		ImportMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_import_messages_total", Help: "Messages of imported history files taken in through the admin API, per source and outcome (accepted: new and durable; duplicate: not stored again; recall).",
		}, []string{"source", "outcome"}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_http_requests_total", Help: "HTTP requests per route and status code.",
		}, []string{"route", "code"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imbridge_http_request_duration_seconds", Help: "HTTP request latency per route.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2, 5, 30, 300},
		}, []string{"route"}),
		PullResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_pull_responses_total", Help: "Pull responses per puller and outcome (advanced, not_advanced, explicit_cursor, aborted).",
		}, []string{"puller", "outcome"}),
		PullMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_pull_messages_total", Help: "Messages (lines) written in pull responses, per puller.",
		}, []string{"puller"}),
		PullBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imbridge_pull_bytes_total", Help: "Body bytes (before compression) written in pull responses, per puller.",
		}, []string{"puller"}),
		Pullers:       NewNames(MaxPullers),
		importSources: NewNames(MaxPullers),
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
	m.Registry.MustRegister(m.CallbackRequests, m.CallbackAck, m.IngestMessages, m.IgnoredEvents, m.ImportMessages,
		m.HTTPRequests, m.HTTPDuration, m.PullResponses, m.PullMessages, m.PullBytes,
		m.ExportRuns, m.ExportDuration, m.ExportLines,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ImportCounts is what one import batch did with its messages.
type ImportCounts struct {
	Accepted   int // new messages, now durable
	Duplicates int // already seen within the de-duplication window: not stored again
	Recalls    int // recalls, now durable
}

// CountImport adds one import batch's outcome to
// imbridge_import_messages_total{source,outcome}. The source names of the
// first few imports become labels, later ones "other".
func (m *Metrics) CountImport(source string, n ImportCounts) {
	source = m.importSources.Label(source)
	for _, o := range []struct {
		outcome string
		n       int
	}{{"accepted", n.Accepted}, {"duplicate", n.Duplicates}, {"recall", n.Recalls}} {
		if o.n > 0 {
			m.ImportMessages.WithLabelValues(source, o.outcome).Add(float64(o.n))
		}
	}
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

// Other is the label value of every name past a Names limit.
const Other = "other"

// Names turns names chosen outside the code (puller names) into label
// values: the first max distinct names keep theirs, later ones become
// "other", so a client inventing names cannot grow the series without end.
type Names struct {
	mu   sync.RWMutex
	max  int
	seen map[string]struct{}
}

// NewNames returns a Names that admits max distinct names.
func NewNames(max int) *Names { return &Names{max: max, seen: map[string]struct{}{}} }

// Label returns name when it has a label of its own, else "other".
func (n *Names) Label(name string) string {
	n.mu.RLock()
	_, ok := n.seen[name]
	full := len(n.seen) >= n.max
	n.mu.RUnlock()
	if ok {
		return name
	}
	if full || name == Other {
		return Other
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.seen[name]; ok {
		return name
	}
	if len(n.seen) >= n.max {
		return Other
	}
	n.seen[name] = struct{}{}
	return name
}
