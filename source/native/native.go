// Package native is the source for the app's own backend posting Yunxin
// lines to POST /v1/callbacks/native: one line object, a JSON array of them,
// or NDJSON, authenticated with a bearer token. Its tids are already
// Yunxin's and are not mapped.
package native

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
)

// Source is the native callback source.
type Source struct{ token string }

// New returns the native source accepting token.
func New(token string) *Source { return &Source{token: token} }

// Name implements the callback source.
func (*Source) Name() string { return message.SourceNative }

// ContentTypes are the accepted body types.
func (*Source) ContentTypes() []string {
	return []string{"application/json", "application/x-ndjson", "application/ndjson", "application/jsonl",
		"application/x-jsonlines", "application/jsonlines", "application/x-json-stream", "text/plain"}
}

// Authenticate checks the bearer token.
func (s *Source) Authenticate(r *http.Request, _ []byte) error {
	if !source.BearerMatches(r, s.token) {
		return source.Unauthorized("missing or wrong bearer token")
	}
	return nil
}

// Decode parses the body.
func (*Source) Decode(_ *http.Request, body []byte) (source.Batch, error) {
	msgs, err := Decode(body)
	return source.Batch{Messages: msgs}, err
}

// Reply answers as every JSON source does (source.ReplyJSON), with a bearer
// challenge on 401.
func (*Source) Reply(w http.ResponseWriter, rep source.Reply) {
	if rep.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="imbridge"`)
	}
	source.ReplyJSON(w, rep)
}

// Decode parses a native body: one line object, a JSON array of objects, or
// NDJSON (blank lines ignored). The error is a *source.Error naming the line
// (and, in an array, the message index) of the first bad message.
func Decode(body []byte) ([]message.Message, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n\ufeff")
	if len(trimmed) == 0 {
		return nil, source.BadRequest("empty body: send one Yunxin line, a JSON array of lines, or NDJSON")
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
			return nil, &source.Error{Status: http.StatusBadRequest, Msg: "line " + strconv.Itoa(lineNo) + ": " + err.Error(), Line: lineNo, Index: len(out) + 1}
		}
		out = append(out, msg)
	}
	if len(out) == 0 {
		return nil, source.BadRequest("empty body: send one Yunxin line, a JSON array of lines, or NDJSON")
	}
	return out, nil
}

func decodeArray(body []byte) ([]message.Message, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return nil, source.BadRequest("body: %v", err)
	}
	var out []message.Message
	for dec.More() {
		start := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			line := lineAt(body, start)
			return nil, &source.Error{Status: http.StatusBadRequest, Msg: "line " + strconv.Itoa(line) + ", message " + strconv.Itoa(len(out)+1) + ": " + err.Error(), Line: line, Index: len(out) + 1}
		}
		msg, err := message.DecodeLine(raw)
		if err != nil {
			line := lineAt(body, start+int64(bytes.IndexAny(body[start:], "{[\"tfn0123456789-")))
			return nil, &source.Error{Status: http.StatusBadRequest, Msg: "line " + strconv.Itoa(line) + ", message " + strconv.Itoa(len(out)+1) + ": " + err.Error(), Line: line, Index: len(out) + 1}
		}
		out = append(out, msg)
	}
	if _, err := dec.Token(); err != nil {
		return nil, source.BadRequest("body: the JSON array is not closed: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, source.BadRequest("body: trailing data after the JSON array")
	}
	if len(out) == 0 {
		return nil, source.BadRequest("empty array: no messages")
	}
	return out, nil
}

func lineAt(body []byte, off int64) int {
	if off < 0 || off > int64(len(body)) {
		off = int64(len(body))
	}
	return bytes.Count(body[:off], []byte{'\n'}) + 1
}
