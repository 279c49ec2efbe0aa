// Package tencent is the Tencent IM (腾讯云 IM) callback source, POST
// /v1/callbacks/tencent: after-send C2C and group messages, group member and
// group info events, and recalls, authenticated by Sign = sha256hex(token +
// RequestTime) in the query, answered in Tencent's own
// {"ActionStatus","ErrorCode","ErrorInfo"} shape. the README's appendix (provider mappings)
// is the complete mapping to Yunxin lines.
package tencent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/imbridge/imbridge/source"
)

// Name is the source's name: the route's last segment, the messages' Source
// and the namespace of their msgids.
const Name = "tencent"

// Source is the Tencent IM callback source.
type Source struct {
	token, sdkAppID string
	maxSkew         time.Duration
	now             func() time.Time
}

// New returns the source verifying Sign with the auth token and checking SdkAppid and
// refusing timestamps further than maxSkew from now (0: no check).
func New(token, sdkAppID string, maxSkew time.Duration) *Source {
	return &Source{token: token, sdkAppID: sdkAppID, maxSkew: maxSkew, now: time.Now}
}

// Name implements the callback source.
func (*Source) Name() string { return Name }

// ContentTypes are the accepted body types. Tencent documents the body as
// JSON ("contenttype=json" in the query) but not the header it sends
// (UNCONFIRMED), and an after-callback refused with 415 is lost for good (no
// retry), so the usual generic types are taken too; the body is parsed as
// JSON whatever the header says.
func (*Source) ContentTypes() []string {
	return []string{"application/json", "text/json", "text/plain", "application/octet-stream", "application/x-www-form-urlencoded"}
}

// Sign is Tencent's callback signature: lowercase sha256hex(token + RequestTime).
func Sign(token, requestTime string) string {
	sum := sha256.Sum256([]byte(token + requestTime))
	return hex.EncodeToString(sum[:])
}

// Authenticate verifies Sign and RequestTime (401), then that the callback is
// for the configured SdkAppid (403).
func (s *Source) Authenticate(r *http.Request, _ []byte) error {
	q := r.URL.Query()
	sign, rt := q.Get("Sign"), q.Get("RequestTime")
	if sign == "" || rt == "" {
		return source.Unauthorized("the query has no Sign and RequestTime: configure the callback authentication token in the Tencent IM console (and sources.tencent.token)")
	}
	secs, err := strconv.ParseInt(rt, 10, 64)
	if err != nil || secs <= 0 {
		return source.Unauthorized("RequestTime %s is not a Unix time in seconds", quote(rt))
	}
	if !source.SecretEqual(strings.ToLower(sign), Sign(s.token, rt)) {
		return source.Unauthorized("Sign does not match sha256(token + RequestTime): check sources.tencent.token against the console's callback token")
	}
	if err := source.CheckFresh("RequestTime", time.Unix(secs, 0), s.now(), s.maxSkew); err != nil {
		return err
	}
	app := queryFold(q, "SdkAppid")
	if app == "" {
		return &source.Error{Status: http.StatusForbidden, Msg: "the query has no SdkAppid"}
	}
	if !source.SecretEqual(app, s.sdkAppID) {
		return &source.Error{Status: http.StatusForbidden, Msg: "SdkAppid " + quote(app) + " is not this app's (sources.tencent.sdkappid): callbacks of other apps are refused"}
	}
	return nil
}

// queryFold is the value of key, matched without regard to case when the
// exact spelling is absent (SdkAppid, SDKAppID…).
func queryFold(q url.Values, key string) string {
	if v := q.Get(key); v != "" {
		return v
	}
	for k, v := range q {
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// Decode parses the body with the request's query (CallbackCommand,
// OptPlatform) at the source's clock.
func (s *Source) Decode(r *http.Request, body []byte) (source.Batch, error) {
	return Decode(body, r.URL.Query(), s.now())
}

// okReply is the acknowledgement Tencent expects, byte for byte.
var okReply = []byte(`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`)

// Reply answers in Tencent's shape: 200 {"ActionStatus":"OK","ErrorCode":0,
// "ErrorInfo":""} once the batch is durable (also for duplicates and
// ignored events); otherwise the handler's status with {"ActionStatus":
// "FAIL","ErrorCode":<the HTTP status>,"ErrorInfo":"<reason>"}.
func (*Source) Reply(w http.ResponseWriter, rep source.Reply) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(rep.Status)
	if rep.Err == nil && rep.Status >= 200 && rep.Status < 300 {
		_, _ = w.Write(okReply)
		return
	}
	_, _ = w.Write(failReply(rep))
}

func failReply(rep source.Reply) []byte {
	msg := http.StatusText(rep.Status)
	if rep.Err != nil && rep.Err.Msg != "" {
		msg = rep.Err.Msg
	}
	code := rep.Status
	if code == 0 {
		code = http.StatusInternalServerError
	}
	var info bytes.Buffer
	enc := json.NewEncoder(&info)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(msg)
	b := append([]byte(`{"ActionStatus":"FAIL","ErrorCode":`), strconv.Itoa(code)...)
	b = append(b, `,"ErrorInfo":`...)
	b = append(b, bytes.TrimRight(info.Bytes(), "\n")...)
	return append(b, '}')
}

// quote writes user input into an error message: quoted, at most 64 bytes.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}
