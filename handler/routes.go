// Package handler is imbridge's HTTP surface: the provider callbacks, the
// incremental pull, health and metrics, all listed in NewServer.
package handler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imbridge/imbridge/metrics"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/tcpack"
)

// lineStore is what pull reads and records.
type lineStore interface {
	NthSeq(ctx context.Context, f store.LineFilter, n int) (uint64, bool, error)
	StreamLines(ctx context.Context, f store.LineFilter, fn func(line string) error) error
	PullCursor(ctx context.Context, puller string) (uint64, error)
	RecordDelivery(ctx context.Context, d store.Delivery) error
}

// PullConfig configures GET /v1/pull.
type PullConfig struct {
	Token  string
	Allow  []netip.Prefix
	Cutoff time.Time // zero: serve everything
	// ReceiptTimeout bounds how long a pull waits, after its last byte, for
	// the puller to acknowledge the whole response (default 30 s).
	ReceiptTimeout time.Duration
}

func (p PullConfig) receiptTimeout() time.Duration {
	if p.ReceiptTimeout > 0 {
		return p.ReceiptTimeout
	}
	return 30 * time.Second
}

// Deps are the server's dependencies.
type Deps struct {
	Logger       *slog.Logger
	Metrics      *metrics.Metrics
	Ingest       ingester
	Lines        lineStore
	Watermark    func() uint64                   // highest seq complete in ClickHouse
	Ready        func(ctx context.Context) error // nil when ready; else why not (errors.Join: one reason each)
	Sources      []Source                        // the enabled callback sources
	Admin        *Admin                          // nil: the admin API answers 404
	Pull         PullConfig
	MaxBodyBytes int64
	// SeparateMetrics is set when /metrics has a listener of its own
	// (metrics.listen): the main listener then does not serve it.
	SeparateMetrics bool
	// Receipt follows a pull's response on its connection; nil means the
	// TCP check of package tcpack (the server must set
	// http.Server.ConnContext to tcpack.ConnContext).
	Receipt func(r *http.Request) (receipt, error)
}

// NewServer builds the router with every route imbridge serves.
func NewServer(d Deps) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	// Pull's allowlist must see the real peer, not a forwarded header.
	_ = r.SetTrustedProxies(nil)
	// requestLog outside recoverer: a request answered 500 after a panic
	// still has its request line and is counted.
	r.Use(requestLog(d.Logger, d.Metrics), recoverer(d.Logger))

	r.GET("/healthz", handleHealthz())
	r.GET("/readyz", handleReadyz(d.Ready))
	if !d.SeparateMetrics {
		r.GET("/metrics", gin.WrapH(d.Metrics.Handler()))
	}

	cb := r.Group("/v1/callbacks")
	enabled := map[string]bool{}
	for _, src := range d.Sources {
		cb.POST("/"+src.Name(), handleCallback(d.Logger, d.Metrics, d.Ingest, src, d.MaxBodyBytes))
		enabled[src.Name()] = true
	}
	for _, name := range KnownSources {
		if !enabled[name] {
			cb.POST("/"+name, sourceDisabled(name))
		}
	}
	routeAdmin(r.Group("/v1/admin"), d.Logger, d.Metrics, d.Admin)

	newReceipt := d.Receipt
	if newReceipt == nil {
		newReceipt = tcpReceipt
	}
	r.GET(pullRoute, handlePull(d.Logger, d.Metrics, d.Lines, d.Watermark, d.Pull, newReceipt))
	r.NoRoute(func(c *gin.Context) {
		if c.Request.URL.Path == pullRoute { // a puller reads code, even here
			c.JSON(http.StatusMethodNotAllowed, gin.H{"code": http.StatusMethodNotAllowed, "desc": "the pull is GET " + pullRoute})
			return
		}
		c.JSON(http.StatusNotFound, gin.H{"error": "no such route: " + c.Request.Method + " " + c.Request.URL.Path})
	})
	return r
}

// tcpReceipt follows a response on the request's TCP connection.
func tcpReceipt(r *http.Request) (receipt, error) {
	conn, ok := tcpack.FromContext(r.Context())
	if !ok {
		return nil, errors.New("the request's connection is unknown (http.Server.ConnContext is not tcpack.ConnContext)")
	}
	t, err := tcpack.New(conn)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// KnownSources are the callback routes imbridge has; a source whose
// credentials are not configured answers 404.
var KnownSources = []string{"native", "easemob", "tencent", "rongcloud", "yunxin"}

func sourceDisabled(name string) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.JSON(http.StatusNotFound, gin.H{"error": "source " + name + " is not configured on this server (see sources." + name + " in imbridge serve --help)"})
	}
}

// handleHealthz is liveness only: the process answers HTTP. It checks
// nothing else, so a supervisor does not restart imbridge for a ClickHouse
// outage (ingest goes on into the spool meanwhile).
func handleHealthz() gin.HandlerFunc {
	return func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) }
}

// handleReadyz answers 200 {"status":"ready"}, or 503 {"status":"not
// ready","reasons":[…]} with one reason per failed check (ready returns
// them joined with errors.Join).
func handleReadyz(ready func(context.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not ready", "reasons": reasons(err)})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
	}
}

// reasons lists the errors joined in err (errors.Join), each as text.
func reasons(err error) []string {
	var out []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if e != nil {
				out = append(out, reasons(e)...)
			}
		}
		return out
	}
	return []string{err.Error()}
}

// requestIDHeader answers each request with its id (requestLog sets it
// first), which is also where a handler finds the id for its log lines:
// gin's context keys would cost a map per request.
const requestIDHeader = "X-Request-Id"

// requestID is the request's id, as requestLog answers it.
func requestID(c *gin.Context) string { return c.Writer.Header().Get(requestIDHeader) }

// validRequestID accepts a caller's X-Request-Id: 1–128 characters from a
// safe set, so that it cannot forge log lines or grow them without bound.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("-_.:/+=@", b) >= 0) {
			return false
		}
	}
	return true
}

// reqLogger is logger with the request's id, for a handler's log lines.
func reqLogger(c *gin.Context, logger *slog.Logger) *slog.Logger {
	return logger.With("request_id", requestID(c))
}

// quietRoutes are polled by monitors: their request lines are at Debug.
var quietRoutes = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// requestLog gives each request an id (the caller's X-Request-Id when it is
// valid, else a new one; answered in X-Request-Id), then logs one line per
// request — request_id, method, route, status, latency, bytes, remote — and
// counts it. Only the route pattern is logged, never the query string (the
// pull token may be there) nor any header. It runs on every callback, so
// ids come from a counter (with a random per-process prefix) and metric
// children are looked up once per label set.
func requestLog(logger *slog.Logger, m *metrics.Metrics) gin.HandlerFunc {
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := hex.EncodeToString(b[:]) + "-"
	var seq atomic.Uint64
	var mu sync.RWMutex
	counters := map[[2]string]prometheus.Counter{}
	observers := map[string]prometheus.Observer{}
	record := func(route string, status int, took time.Duration) {
		key := [2]string{route, strconv.Itoa(status)}
		mu.RLock()
		cnt, ok1 := counters[key]
		obs, ok2 := observers[route]
		mu.RUnlock()
		if !ok1 || !ok2 {
			mu.Lock()
			cnt = m.HTTPRequests.WithLabelValues(key[0], key[1])
			obs = m.HTTPDuration.WithLabelValues(route)
			counters[key], observers[route] = cnt, obs
			mu.Unlock()
		}
		cnt.Inc()
		obs.Observe(took.Seconds())
	}
	finish := logRequest(logger, record)
	return func(c *gin.Context) {
		start := time.Now()
		id := c.GetHeader(requestIDHeader)
		if !validRequestID(id) {
			id = prefix + strconv.FormatUint(seq.Add(1), 36)
		}
		c.Header(requestIDHeader, id)
		aborted := true
		defer func() {
			if !aborted {
				return
			}
			// Only http.ErrAbortHandler gets past recoverer: a response
			// broken mid-stream is a request too, logged and counted with
			// the status it was sent with, before the panic goes on.
			r := recover()
			finish(c, id, start, true)
			if r != nil {
				panic(r)
			}
		}()
		c.Next()
		aborted = false
		finish(c, id, start, false)
	}
}

// logRequest returns the function that logs and counts one request, once
// it is answered (or aborted).
func logRequest(logger *slog.Logger, record func(route string, status int, took time.Duration)) func(c *gin.Context, id string, start time.Time, aborted bool) {
	return func(c *gin.Context, id string, start time.Time, aborted bool) {
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		status := c.Writer.Status()
		took := time.Since(start)
		record(route, status, took)
		level := slog.LevelInfo
		if quietRoutes[route] {
			level = slog.LevelDebug
		}
		ctx := c.Request.Context()
		if !logger.Enabled(ctx, level) {
			return
		}
		attrs := []slog.Attr{slog.String("request_id", id), slog.String("method", c.Request.Method), slog.String("route", route),
			slog.Int("status", status), slog.Duration("latency", took), slog.Int("bytes", max(c.Writer.Size(), 0)),
			slog.String("remote", c.ClientIP())}
		if route == "unmatched" {
			p := c.Request.URL.Path
			if len(p) > 200 {
				p = p[:200] + "…"
			}
			attrs = append(attrs, slog.String("path", p))
		}
		if aborted {
			attrs = append(attrs, slog.Bool("aborted", true))
		}
		logger.LogAttrs(ctx, level, "request", attrs...)
	}
}

// recoverer turns a panic into a 500 (or lets http.ErrAbortHandler abort
// the connection, which is how a broken streaming response ends). The pull
// answers it in Yunxin's envelope like its other errors.
func recoverer(logger *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				reqLogger(c, logger).Error("panic", "err", fmt.Sprint(r), "route", c.FullPath(), "stack", string(debug.Stack()))
				if c.Writer.Written() {
					return
				}
				if c.FullPath() == pullRoute {
					c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"code": http.StatusInternalServerError, "desc": "internal error"})
					return
				}
				c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
			}
		}()
		c.Next()
	}
}

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}
