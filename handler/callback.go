package handler

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/metrics"
	"github.com/imbridge/imbridge/source"
)

// ingester makes decoded messages durable.
type ingester interface {
	// IngestBatch returns once msgs and recalls are durable (or
	// duplicates), as one unit. Errors: *ingest.InvalidError, ingest.ErrFull,
	// ingest.ErrUnavailable.
	IngestBatch(ctx context.Context, source string, msgs []message.Message, recalls []message.Recall) (ingest.Result, error)
}

// Source is one callback source: how its provider authenticates, what its
// bodies look like, and how it wants to be answered.
type Source interface {
	// Name is the route's last segment and the messages' source.
	Name() string
	// ContentTypes lists the accepted Content-Type media types.
	ContentTypes() []string
	// Authenticate verifies the request (signature, token, freshness); a
	// *source.Error (401) when it fails.
	Authenticate(r *http.Request, body []byte) error
	// Decode turns the body into canonical messages; a *source.Error (400)
	// when it is malformed.
	Decode(r *http.Request, body []byte) (source.Batch, error)
	// Reply answers the provider, in its own shape, once the outcome is
	// known (for 2xx: the messages are durable).
	Reply(w http.ResponseWriter, rep source.Reply)
}

// handleCallback is the one callback handler: read, authenticate, decode,
// make durable, then answer. Nothing of a request that fails is stored.
func handleCallback(logger *slog.Logger, m *metrics.Metrics, in ingester, src Source, maxBody int64) gin.HandlerFunc {
	name := src.Name()
	accepted := m.IngestMessages.WithLabelValues(name, "accepted")
	duplicate := m.IngestMessages.WithLabelValues(name, "duplicate")
	recalled := m.IngestMessages.WithLabelValues(name, "recall")
	outcomes := map[string]prometheus.Counter{}
	for _, o := range metrics.CallbackOutcomes {
		outcomes[o] = m.CallbackRequests.WithLabelValues(name, o)
	}
	ack := m.CallbackAck.WithLabelValues(name)
	types := src.ContentTypes()
	return func(c *gin.Context) {
		start := time.Now()
		reply := func(rep source.Reply) {
			src.Reply(c.Writer, rep)
			c.Abort()
		}
		fail := func(err error) {
			status, msg := statusOf(err)
			outcomes[callbackOutcome(err, status)].Inc()
			logRefusal(logger, c, status, err)
			rep := source.Reply{Status: status, Err: &source.Error{Status: status, Msg: msg}}
			var se *source.Error
			if errors.As(err, &se) {
				rep.Err.Line, rep.Err.Index = se.Line, se.Index
			}
			var ie *ingest.InvalidError
			if errors.As(err, &ie) {
				rep.Err.Index = ie.Index + 1
			}
			reply(rep)
		}
		body, err := readBody(c, maxBody, types...)
		if err != nil {
			fail(err)
			return
		}
		if err := src.Authenticate(c.Request, body); err != nil {
			fail(err)
			return
		}
		batch, err := src.Decode(c.Request, body)
		if err != nil {
			fail(err)
			return
		}
		ignored := countIgnored(m.IgnoredEvents, name, batch.Ignored)
		var res ingest.Result
		if len(batch.Messages) > 0 || len(batch.Recalls) > 0 {
			res, err = in.IngestBatch(c.Request.Context(), name, batch.Messages, batch.Recalls)
			if err != nil {
				fail(err)
				return
			}
		}
		accepted.Add(float64(res.Accepted))
		duplicate.Add(float64(res.Duplicates))
		recalled.Add(float64(res.Recalls))
		reply(source.Reply{Status: http.StatusOK, Accepted: res.Accepted, Duplicates: res.Duplicates, Ignored: ignored, Recalls: res.Recalls})
		outcomes["ok"].Inc()
		ack.Observe(time.Since(start).Seconds())
	}
}

// callbackOutcome is the outcome label of a refused callback: why it was
// refused (one of metrics.CallbackOutcomes).
func callbackOutcome(err error, status int) string {
	var ie *ingest.InvalidError
	switch {
	case errors.As(err, &ie):
		return "invalid_message"
	case errors.Is(err, ingest.ErrFull):
		return "spool_full"
	}
	switch status {
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	if status >= 400 && status < 500 {
		return "bad_request"
	}
	return "internal_error"
}

func countIgnored(vec *prometheus.CounterVec, name string, kinds map[string]int) int {
	n := 0
	for kind, k := range kinds {
		vec.WithLabelValues(name, kind).Add(float64(k))
		n += k
	}
	return n
}

// readBody checks the content type, undoes gzip and reads at most maxBody
// bytes (after decompression).
func readBody(c *gin.Context, maxBody int64, types ...string) ([]byte, error) {
	if ct := c.GetHeader("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		ok := err == nil
		if ok {
			ok = false
			for _, t := range types {
				if mt == t {
					ok = true
					break
				}
			}
		}
		if !ok {
			return nil, &source.Error{Status: http.StatusUnsupportedMediaType, Msg: sprintf("Content-Type %q is not accepted here; use %s", ct, strings.Join(types, ", "))}
		}
	}
	var r io.Reader = c.Request.Body
	switch enc := strings.ToLower(c.GetHeader("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(c.Request.Body)
		if err != nil {
			return nil, source.BadRequest("Content-Encoding gzip: %v", err)
		}
		defer zr.Close()
		r = zr
	default:
		return nil, &source.Error{Status: http.StatusUnsupportedMediaType, Msg: sprintf("Content-Encoding %q is not supported; use gzip or none", enc)}
	}
	size := 512
	if cl := c.Request.ContentLength; cl > 0 && cl <= maxBody && r == io.Reader(c.Request.Body) {
		size = int(cl) + 1 // one allocation for the common, plain body: the extra byte sees its end
	}
	body, err := readAll(io.LimitReader(r, maxBody+1), size)
	if err != nil {
		return nil, source.BadRequest("reading the body: %v", err)
	}
	if int64(len(body)) > maxBody {
		return nil, &source.Error{Status: http.StatusRequestEntityTooLarge, Msg: sprintf("body larger than %d bytes (ingest.max_body_bytes); send fewer messages per request", maxBody)}
	}
	return body, nil
}

// readAll reads r to its end into a buffer of size bytes at first, growing
// it only when r holds more (bytes.Buffer.ReadFrom grows any buffer with less
// than 512 bytes free before each read, and io.ReadAll starts at 512).
func readAll(r io.Reader, size int) ([]byte, error) {
	b := make([]byte, 0, max(size, 1))
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}
