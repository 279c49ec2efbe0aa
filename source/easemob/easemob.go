// Package easemob is the Easemob / Agora Chat callback source (POST
// /v1/callbacks/easemob): post-send ("发送后回调") message callbacks of
// one-to-one and group chats, recalls, and group operation events, verified
// with the callback rule's secret (security = md5hex(callId + secret +
// timestamp)). The complete mapping is in the README's appendix (provider mappings).
//
// Besides the http-facing Source, the package exports the pure decoders the
// importer shares: Verify (signature and freshness of one callback body),
// Decode (one callback body) and DecodeHistory (one record of Easemob's
// hourly history files), which map message contents with the same code, so
// that a message arriving by callback and later from a history file gets the
// same SourceID, msgid and createTime.
package easemob

import (
	"crypto/md5"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/imbridge/imbridge/source"
)

// Name is the source's name: the route's last segment, the messages' Source
// and the team map's source column.
const Name = "easemob"

// Source is the Easemob callback source.
type Source struct {
	secret  string
	maxSkew time.Duration
	now     func() time.Time
}

// New returns the source verifying `security` with the rule's secret and
// refusing timestamps further than maxSkew from now (0: no check).
func New(secret string, maxSkew time.Duration) *Source {
	return &Source{secret: secret, maxSkew: maxSkew, now: time.Now}
}

// Name implements the callback source.
func (*Source) Name() string { return Name }

// ContentTypes are the accepted body types (Easemob sends application/json).
func (*Source) ContentTypes() []string { return []string{"application/json", "text/plain"} }

// Authenticate verifies the signature and the freshness of the body's
// timestamp (see Verify).
func (s *Source) Authenticate(_ *http.Request, body []byte) error {
	return Verify(body, s.secret, s.now(), s.maxSkew)
}

// Decode parses the body (see Decode).
func (*Source) Decode(_ *http.Request, body []byte) (source.Batch, error) {
	return Decode(body)
}

// maxReplyError keeps a reply within Easemob's 1000-character limit on
// response bodies (repeated oversize responses count as failures).
const maxReplyError = 800

// Reply answers with source.ReplyJSON (Easemob only looks at the status: any
// 200 is success), with error messages cut so the body stays below 1000
// characters.
func (*Source) Reply(w http.ResponseWriter, rep source.Reply) {
	if rep.Err != nil && len(rep.Err.Msg) > maxReplyError {
		e := *rep.Err
		cut := maxReplyError
		for cut > 0 && !utf8.RuneStart(e.Msg[cut]) {
			cut--
		}
		e.Msg = e.Msg[:cut] + "…"
		rep.Err = &e
	}
	source.ReplyJSON(w, rep)
}

// Signature is Easemob's security value: the lowercase hex MD5 of callId +
// secret + timestamp, timestamp written exactly as the body's JSON number.
func Signature(callID, secret, timestamp string) string {
	sum := md5.Sum([]byte(callID + secret + timestamp))
	return hex.EncodeToString(sum[:])
}

// Verify checks one callback body: its security against the rule's secret
// (a 401 *source.Error when missing or wrong) and its timestamp against now
// (401 when further than maxSkew away; 0 disables the check). A body that is
// not a JSON object, or whose signed fields have the wrong JSON type, is a
// 400.
func Verify(body []byte, secret string, now time.Time, maxSkew time.Duration) error {
	o, err := parseBody(body)
	if err != nil {
		return err
	}
	callID, err := o.str("callId", "")
	if err != nil {
		return err
	}
	security, err := o.str("security", "")
	if err != nil {
		return err
	}
	ts, text, ok, err := o.timestamp()
	if err != nil {
		return err
	}
	switch {
	case security == "":
		return source.Unauthorized("security missing: not a signed Easemob callback (security = md5(callId + secret + timestamp))")
	case callID == "":
		return source.Unauthorized("callId missing: the signature cannot be checked without it")
	case !ok:
		return source.Unauthorized("timestamp missing: the signature cannot be checked without it")
	}
	if !source.SecretEqual(strings.ToLower(security), Signature(callID, secret, text)) {
		return source.Unauthorized("security does not match md5(callId + secret + timestamp): check sources.easemob.secret against the callback rule's secret")
	}
	return source.CheckFresh("timestamp", time.UnixMilli(ts), now, maxSkew)
}
