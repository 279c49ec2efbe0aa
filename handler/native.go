package handler

import (
	"bytes"
	"compress/gzip"
	"crypto/subtle"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/metrics"
)

// handleNative accepts Yunxin lines from the app's own backend: one line
// object, a JSON array of them, or NDJSON. The first invalid message fails
// the whole request with 400 and nothing of it is stored.
func handleNative(logger *slog.Logger, m *metrics.Metrics, in ingester, token string, maxBody int64) gin.HandlerFunc {
	accepted := m.IngestMessages.WithLabelValues(message.SourceNative, "accepted")
	duplicate := m.IngestMessages.WithLabelValues(message.SourceNative, "duplicate")
	rejected := m.IngestMessages.WithLabelValues(message.SourceNative, "rejected")
	return func(c *gin.Context) {
		if token == "" {
			c.JSON(http.StatusNotFound, gin.H{"error": "source native is not configured on this server (sources.native.token)"})
			return
		}
		if !bearerMatches(c.Request, token) {
			c.Header("WWW-Authenticate", `Bearer realm="imbridge"`)
			writeError(c, logger, &Error{Status: http.StatusUnauthorized, Msg: "missing or wrong bearer token"})
			return
		}
		body, err := readBody(c, maxBody, "application/json", "application/x-ndjson", "application/ndjson",
			"application/jsonl", "application/x-jsonlines", "application/jsonlines", "application/x-json-stream", "text/plain")
		if err != nil {
			writeError(c, logger, err)
			return
		}
		msgs, err := DecodeNative(body)
		if err != nil {
			rejected.Inc()
			writeError(c, logger, err)
			return
		}
		res, err := in.Ingest(c.Request.Context(), msgs)
		if err != nil {
			writeError(c, logger, err)
			return
		}
		accepted.Add(float64(res.Accepted))
		duplicate.Add(float64(res.Duplicates))
		var out [64]byte
		b := append(out[:0], `{"accepted":`...)
		b = strconv.AppendInt(b, int64(res.Accepted), 10)
		b = append(b, `,"duplicates":`...)
		b = strconv.AppendInt(b, int64(res.Duplicates), 10)
		c.Data(http.StatusOK, "application/json; charset=utf-8", append(b, '}'))
	}
}

// DecodeNative parses a native body: one line object, a JSON array of
// objects, or NDJSON (blank lines ignored). The error is an *Error naming
// the line (and, in an array, the message index) of the first bad message.
func DecodeNative(body []byte) ([]message.Message, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n\ufeff")
	if len(trimmed) == 0 {
		return nil, badRequest("empty body: send one Yunxin line, a JSON array of lines, or NDJSON")
	}
	if trimmed[0] == '[' {
		return decodeArray(body)
	}
	var out []message.Message
	lineNo := 0
	for rest := body; len(rest) > 0; {
		lineNo++
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimSpace(line)
		if lineNo == 1 {
			line = bytes.TrimPrefix(line, []byte("\ufeff"))
		}
		if len(line) == 0 {
			continue
		}
		msg, err := message.DecodeLine(line)
		if err != nil {
			return nil, &Error{Status: http.StatusBadRequest, Msg: sprintf("line %d: %v", lineNo, err), Line: lineNo, Index: len(out) + 1}
		}
		out = append(out, msg)
	}
	if len(out) == 0 {
		return nil, badRequest("empty body: send one Yunxin line, a JSON array of lines, or NDJSON")
	}
	return out, nil
}

func decodeArray(body []byte) ([]message.Message, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return nil, badRequest("body: %v", err)
	}
	var out []message.Message
	for dec.More() {
		start := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			line := lineAt(body, start)
			return nil, &Error{Status: http.StatusBadRequest, Msg: sprintf("line %d, message %d: %v", line, len(out)+1, err), Line: line, Index: len(out) + 1}
		}
		msg, err := message.DecodeLine(raw)
		if err != nil {
			line := lineAt(body, start+int64(bytes.IndexAny(body[start:], "{[\"tfn0123456789-")))
			return nil, &Error{Status: http.StatusBadRequest, Msg: sprintf("line %d, message %d: %v", line, len(out)+1, err), Line: line, Index: len(out) + 1}
		}
		out = append(out, msg)
	}
	if _, err := dec.Token(); err != nil {
		return nil, badRequest("body: the JSON array is not closed: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest("body: trailing data after the JSON array")
	}
	if len(out) == 0 {
		return nil, badRequest("empty array: no messages")
	}
	return out, nil
}

func lineAt(body []byte, off int64) int {
	if off < 0 || off > int64(len(body)) {
		off = int64(len(body))
	}
	return bytes.Count(body[:off], []byte{'\n'}) + 1
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
			return nil, &Error{Status: http.StatusUnsupportedMediaType, Msg: sprintf("Content-Type %q is not accepted here; use %s", ct, strings.Join(types, ", "))}
		}
	}
	var r io.Reader = c.Request.Body
	switch enc := strings.ToLower(c.GetHeader("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(c.Request.Body)
		if err != nil {
			return nil, badRequest("Content-Encoding gzip: %v", err)
		}
		defer zr.Close()
		r = zr
	default:
		return nil, &Error{Status: http.StatusUnsupportedMediaType, Msg: sprintf("Content-Encoding %q is not supported; use gzip or none", enc)}
	}
	var buf bytes.Buffer
	if cl := c.Request.ContentLength; cl > 0 && cl <= maxBody && r == io.Reader(c.Request.Body) {
		buf.Grow(int(cl) + 1) // one allocation for the common, plain body
	}
	if _, err := buf.ReadFrom(io.LimitReader(r, maxBody+1)); err != nil {
		return nil, badRequest("reading the body: %v", err)
	}
	body := buf.Bytes()
	if int64(len(body)) > maxBody {
		return nil, &Error{Status: http.StatusRequestEntityTooLarge, Msg: sprintf("body larger than %d bytes (ingest.max_body_bytes); send fewer messages per request", maxBody)}
	}
	return body, nil
}

// bearerMatches compares the request's bearer token in constant time.
func bearerMatches(r *http.Request, want string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && secretEqual(strings.TrimSpace(got), want)
}

func secretEqual(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
