// Package source holds what every callback source shares: the decoded batch,
// the client-facing error, and the reply the provider is sent. Each provider
// is one package under source/ (native, and the providers that follow),
// plugged into the one generic callback handler in handler/.
package source

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/imbridge/imbridge/message"
)

// Batch is what one callback body decodes to.
type Batch struct {
	// Messages to make durable: canonical messages, validated by ingest.
	Messages []message.Message
	// Ignored counts events that carry no chat content (read receipts,
	// typing, failed sends…) by kind: they are answered 200 and counted, not
	// stored.
	Ignored map[string]int
	// Recalls of earlier (or not yet arrived) messages, made durable with
	// the messages; the recalled lines are no longer pulled or exported.
	Recalls []message.Recall
}

// Ignore counts one event of kind (a short, fixed snake_case reason such as
// "read_ack" or "chatroom": it becomes a metric label) as ignored.
func (b *Batch) Ignore(kind string) {
	if b.Ignored == nil {
		b.Ignored = map[string]int{}
	}
	b.Ignored[kind]++
}

// DefaultClientType is the clientType of a message whose provider names no
// platform (Easemob), or a platform with no Yunxin equivalent: REST, since
// the line reaches Yunxin from a server rather than from one of its SDKs.
const DefaultClientType = message.REST

// CheckFresh refuses a signed timestamp further than maxSkew from now (either
// way); maxSkew 0 disables the check. what names the timestamp in the error.
func CheckFresh(what string, ts, now time.Time, maxSkew time.Duration) error {
	if maxSkew <= 0 {
		return nil
	}
	if d := now.Sub(ts); d > maxSkew || d < -maxSkew {
		return Unauthorized("%s %s is %s away from this server's clock (allowed: %s; see max_skew)", what, ts.UTC().Format(time.RFC3339), d.Round(time.Second), maxSkew)
	}
	return nil
}

// Error is a client-facing error: a status, a message that says what is
// wrong, and for batch bodies where the first bad message is.
type Error struct {
	Status int
	Msg    string
	Line   int // 1-based line in the body; 0 when not about one line
	Index  int // 1-based message index in the body; 0 when not about one message
}

func (e *Error) Error() string { return e.Msg }

// BadRequest is a 400 error.
func BadRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Msg: sprintf(format, args...)}
}

// Unauthorized is a 401 error.
func Unauthorized(format string, args ...any) *Error {
	return &Error{Status: http.StatusUnauthorized, Msg: sprintf(format, args...)}
}

// Reply is the outcome of one callback, for the source to answer in its
// provider's shape.
type Reply struct {
	Status     int // the HTTP status the handler chose
	Accepted   int
	Duplicates int
	Ignored    int
	Recalls    int    // recalls newly recorded
	Err        *Error // set for every status but 2xx
}

// SecretEqual compares a presented secret in constant time.
func SecretEqual(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// BearerMatches reports whether r carries "Authorization: Bearer want".
func BearerMatches(r *http.Request, want string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && SecretEqual(strings.TrimSpace(got), want)
}

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

// jsonContentType is ReplyJSON's Content-Type, set without a new slice per
// answer (as gin does); never written to (Header.Add copies a full slice).
var jsonContentType = []string{"application/json; charset=utf-8"}

// ReplyJSON answers {"accepted":n,"duplicates":d,"ignored":i,"recalls":r}
// with the chosen status, or {"error":…} with the line (and message index)
// of the first bad message. Bodies stay far below Easemob's 1000-character
// limit unless an error message is that long.
func ReplyJSON(w http.ResponseWriter, rep Reply) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(rep.Status)
	var b []byte
	if rep.Err == nil {
		b = append(make([]byte, 0, 96), `{"accepted":`...) // the longest answer, in one allocation
		b = strconv.AppendInt(b, int64(rep.Accepted), 10)
		b = append(b, `,"duplicates":`...)
		b = strconv.AppendInt(b, int64(rep.Duplicates), 10)
		if rep.Ignored > 0 {
			b = append(b, `,"ignored":`...)
			b = strconv.AppendInt(b, int64(rep.Ignored), 10)
		}
		if rep.Recalls > 0 {
			b = append(b, `,"recalls":`...)
			b = strconv.AppendInt(b, int64(rep.Recalls), 10)
		}
		b = append(b, '}')
	} else {
		body := map[string]any{"error": rep.Err.Msg}
		if rep.Err.Line > 0 {
			body["line"] = rep.Err.Line
		}
		if rep.Err.Index > 0 {
			body["message"] = rep.Err.Index
		}
		b, _ = json.Marshal(body)
	}
	_, _ = w.Write(b)
}
