package handler

import (
	"bufio"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/imbridge/imbridge/metrics"
	"github.com/imbridge/imbridge/source"
	"github.com/imbridge/imbridge/store"
)

// pullRoute is GET /v1/pull's path.
const pullRoute = "/v1/pull"

var pullerName = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,64}$`)

// pullRequest is GET /v1/pull's parsed query.
type pullRequest struct {
	name      string
	cursor    uint64
	hasCursor bool
	limit     int // 0: no limit
}

func parsePull(c *gin.Context) (pullRequest, error) {
	p := pullRequest{name: "yunxin"}
	if v, ok := c.GetQuery("name"); ok {
		if !pullerName.MatchString(v) {
			return p, source.BadRequest("name %q: 1–64 letters, digits, '.', '_' or '-'", v)
		}
		p.name = v
	}
	if v, ok := c.GetQuery("cursor"); ok && v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return p, source.BadRequest("cursor %q is not a non-negative integer (use the X-Imbridge-Cursor of the previous response)", v)
		}
		p.cursor, p.hasCursor = n, true
	}
	if v, ok := c.GetQuery("limit"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return p, source.BadRequest("limit %q is not a positive integer", v)
		}
		p.limit = n
	}
	return p, nil
}

// handlePull serves {"code":200,"data":[…]} with every message after the
// cursor that is complete in ClickHouse (seq ≤ the loader's watermark),
// streamed in constant memory. The next cursor is known before the body
// starts, so it goes in X-Imbridge-Cursor; the stored cursor of the puller
// moves only after the whole body was written.
func handlePull(logger *slog.Logger, m *metrics.Metrics, lines lineStore, watermark func() uint64, cfg PullConfig,
	newReceipt func(*http.Request) (receipt, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		rlog := reqLogger(c, logger) // pullError adds the id itself
		if !pullAllowed(c, cfg) {
			pullError(c, logger, source.Unauthorized("missing or wrong pull token, or address not allowed"))
			return
		}
		req, err := parsePull(c)
		if err != nil {
			pullError(c, logger, err)
			return
		}
		puller := m.Pullers.Label(req.name) // only authenticated names become labels
		ctx := c.Request.Context()
		if !req.hasCursor {
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			req.cursor, err = lines.PullCursor(qctx, req.name)
			cancel()
			if err != nil {
				pullError(c, logger, unavailable(err))
				return
			}
		}
		filter := store.LineFilter{After: req.cursor, UpTo: watermark()}
		if !cfg.Cutoff.IsZero() {
			filter.MinCreateTime = cfg.Cutoff.UnixMilli()
		}
		if filter.UpTo < filter.After {
			filter.UpTo = filter.After // nothing new (the cursor is ahead of what is loaded)
		}
		wm := filter.UpTo
		if req.limit > 0 && filter.UpTo > filter.After {
			qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			nth, ok, err := lines.NthSeq(qctx, filter, req.limit)
			cancel()
			if err != nil {
				pullError(c, logger, unavailable(err))
				return
			}
			if ok {
				filter.UpTo = nth
			}
		}

		start := time.Now()
		h := c.Writer.Header()
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Imbridge-Cursor", strconv.FormatUint(filter.UpTo, 10))
		h.Set("X-Imbridge-More", strconv.FormatBool(filter.UpTo < wm))
		var w io.Writer = c.Writer
		var zw *gzip.Writer
		if acceptsGzip(c.Request) {
			h.Set("Content-Encoding", "gzip")
			h.Add("Vary", "Accept-Encoding")
			zw, _ = gzip.NewWriterLevel(c.Writer, gzip.BestSpeed)
			w = zw
		}
		c.Status(http.StatusOK)
		// Only a response read with the stored cursor can advance it, and
		// only once the puller provably received all of it.
		var rc receipt
		if !req.hasCursor {
			if rc, err = newReceipt(c.Request); err != nil {
				rlog.Warn("cannot follow this pull's delivery on its connection; it will not advance the stored cursor",
					"puller", req.name, "err", err)
			}
		}
		bw := bufio.NewWriterSize(&sampling{w: w, rc: rc}, 64<<10)
		var count, size uint64
		write := func(s string) {
			n, _ := bw.WriteString(s)
			size += uint64(n)
		}
		write(`{"code":200,"data":[`)
		err = lines.StreamLines(ctx, filter, func(line string) error {
			if count > 0 {
				write(",")
			}
			write(line)
			count++
			return nil
		})
		if err == nil {
			write("]}")
			err = bw.Flush()
		}
		if err == nil && zw != nil {
			err = zw.Close()
		}
		if err != nil && !c.Writer.Written() {
			// Nothing left the buffers (ClickHouse failed at the first
			// query): an error answer is still possible.
			for _, k := range []string{"Content-Encoding", "Vary", "X-Imbridge-Cursor", "X-Imbridge-More"} {
				h.Del(k)
			}
			pullError(c, logger, unavailable(err))
			return
		}
		m.PullMessages.WithLabelValues(puller).Add(float64(count))
		m.PullBytes.WithLabelValues(puller).Add(float64(size))
		if err != nil {
			// The status is sent; the only honest signal left is to break
			// the connection so the puller sees an incomplete response.
			if ctx.Err() != nil {
				// The puller went away: not ClickHouse failing.
				outcome := "not_advanced"
				if req.hasCursor {
					outcome = "explicit_cursor"
				}
				m.PullResponses.WithLabelValues(puller, outcome).Inc()
				rlog.Warn("the puller went away mid-response; cursor not advanced", "puller", req.name, "err", err,
					"cursor", req.cursor, "lines_written", count)
			} else {
				m.PullResponses.WithLabelValues(puller, "aborted").Inc()
				rlog.Error("pull aborted mid-stream; cursor not advanced", "puller", req.name, "err", err,
					"cursor", req.cursor, "lines_written", count)
			}
			recordDelivery(rlog, lines, store.Delivery{
				At: start, Puller: req.name, CursorFrom: req.cursor, CursorTo: filter.UpTo, Count: count, Bytes: size,
				RemoteAddr: c.ClientIP(), Duration: time.Since(start),
			})
			panic(http.ErrAbortHandler)
		}
		c.Writer.Flush()
		// Every body byte is with the kernel now (only the terminating
		// chunk waits for the handler to return): wait until the puller's
		// TCP stack acknowledged all of it and its reader consumed it.
		received := false
		if rc != nil {
			if err := rc.Wait(ctx, cfg.receiptTimeout()); err != nil {
				rlog.Warn("pull not received in full; the stored cursor stays and the next pull starts where this one started",
					"puller", req.name, "cursor", req.cursor, "lines", count, "err", err)
			} else {
				received = true
			}
		}
		outcome := "not_advanced"
		switch {
		case req.hasCursor:
			outcome = "explicit_cursor"
		case received:
			outcome = "advanced"
		}
		m.PullResponses.WithLabelValues(puller, outcome).Inc()
		d := store.Delivery{
			At: start, Puller: req.name, CursorFrom: req.cursor, CursorTo: filter.UpTo, Count: count, Bytes: size,
			RemoteAddr: c.ClientIP(), Advanced: received, Duration: time.Since(start),
		}
		recordDelivery(rlog, lines, d)
	}
}

// recordDelivery writes a delivery, also one that did not advance (an
// auditor sees every attempt).
func recordDelivery(logger *slog.Logger, lines lineStore, d store.Delivery) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := lines.RecordDelivery(ctx, d); err != nil {
		logger.Error("recording a delivery failed; the stored cursor did not move and the next pull re-delivers",
			"puller", d.Puller, "advanced", d.Advanced, "err", err)
	}
}

// receipt follows one response on its connection: whether the puller
// received every byte of it.
type receipt interface {
	// Sample notes the connection's state while the body streams.
	Sample() error
	// Wait returns nil once every byte written was received; an error
	// saying what is missing when the connection is lost or time is up.
	Wait(ctx context.Context, timeout time.Duration) error
}

// sampling passes writes on and samples the receipt after each.
type sampling struct {
	w  io.Writer
	rc receipt
}

func (s *sampling) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if s.rc != nil {
		_ = s.rc.Sample()
	}
	return n, err
}

// unavailable is a ClickHouse failure as the puller sees it: 503, retry
// later. The detail goes to the log only.
func unavailable(err error) error {
	return &pullUnavailable{err: err}
}

type pullUnavailable struct{ err error }

func (e *pullUnavailable) Error() string { return "clickhouse unavailable: " + e.err.Error() }
func (e *pullUnavailable) Unwrap() error { return e.err }

// pullError answers in Yunxin's own envelope, {"code":N,"desc":"…"} with the
// same HTTP status, since Yunxin's puller reads code.
func pullError(c *gin.Context, logger *slog.Logger, err error) {
	status, msg := statusOf(err)
	logRefusal(logger, c, status, err)
	c.AbortWithStatusJSON(status, gin.H{"code": status, "desc": msg})
}

func pullAllowed(c *gin.Context, cfg PullConfig) bool {
	if len(cfg.Allow) > 0 {
		addr, err := netip.ParseAddr(c.RemoteIP())
		if err != nil {
			return false
		}
		addr = addr.Unmap()
		ok := false
		for _, p := range cfg.Allow {
			if p.Contains(addr) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if cfg.Token == "" {
		return false
	}
	if tok, ok := c.GetQuery("token"); ok {
		return source.SecretEqual(tok, cfg.Token)
	}
	return source.BearerMatches(c.Request, cfg.Token)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.TrimSpace(q) != "q=0" {
			return true
		}
	}
	return false
}
