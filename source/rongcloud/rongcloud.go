// Package rongcloud is the RongCloud (融云) 全量消息路由 callback source: POST
// /v1/callbacks/rongcloud, an application/x-www-form-urlencoded body signed
// in the query string (nonce, signTimestamp, signature; or the older
// rc-nonce, rc-timestamp, rc-signature). the README's appendix (provider mappings) is the
// complete mapping to Yunxin lines and the reasoning behind each decision.
//
// The decoding is pure: Decode takes a callback body and DecodeHistoryRecord
// one line of RongCloud's hourly history log, both through the same per-kind
// mapping, so that a message that arrives both ways is stored once (same
// SourceID msgUID, same CreateTime).
package rongcloud

import (
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/imbridge/imbridge/source"
)

// Name is the source's name: the route's last segment, the messages' Source
// and the msgid namespace.
const Name = "rongcloud"

// Source is the RongCloud message routing callback source.
type Source struct {
	secret  string
	maxSkew time.Duration
	now     func() time.Time
}

// New returns the source verifying signature with the app secret and
// refusing timestamps further than maxSkew from now (0: no check).
func New(appSecret string, maxSkew time.Duration) *Source {
	return &Source{secret: appSecret, maxSkew: maxSkew, now: time.Now}
}

// Name implements the callback source.
func (*Source) Name() string { return Name }

// ContentTypes are the accepted body types: RongCloud posts a form.
func (*Source) ContentTypes() []string { return []string{"application/x-www-form-urlencoded"} }

// Authenticate verifies the query-string signature and its freshness.
func (s *Source) Authenticate(r *http.Request, _ []byte) error {
	return VerifySignature(r.URL.Query(), s.secret, s.now(), s.maxSkew)
}

// Decode parses the form body.
func (s *Source) Decode(_ *http.Request, body []byte) (source.Batch, error) {
	return Decode(body)
}

// Reply answers as every JSON source does: RongCloud only looks at the 200.
func (*Source) Reply(w http.ResponseWriter, rep source.Reply) { source.ReplyJSON(w, rep) }

// Sign is RongCloud's callback signature: lowercase hex
// SHA-1(appSecret + nonce + timestamp), the timestamp exactly as sent.
func Sign(appSecret, nonce, timestamp string) string {
	sum := sha1.Sum([]byte(appSecret + nonce + timestamp))
	return hex.EncodeToString(sum[:])
}

// VerifySignature checks a callback's query parameters: nonce, signTimestamp
// (epoch ms) and signature, or when signature is absent the older rc-nonce,
// rc-timestamp (epoch SECONDS) and rc-signature. The signature is compared
// in constant time, in either case of hex; then the timestamp must lie
// within maxSkew of now (0 disables that check). Errors are 401
// *source.Error.
func VerifySignature(q url.Values, appSecret string, now time.Time, maxSkew time.Duration) error {
	nonceKey, tsKey, sigKey, unit := "nonce", "signTimestamp", "signature", time.Millisecond
	if !q.Has(sigKey) && q.Has("rc-signature") {
		nonceKey, tsKey, sigKey, unit = "rc-nonce", "rc-timestamp", "rc-signature", time.Second
	}
	sig, nonce, ts := q.Get(sigKey), q.Get(nonceKey), q.Get(tsKey)
	switch {
	case sig == "":
		return source.Unauthorized("missing signature: RongCloud signs its callbacks with the query parameters nonce, signTimestamp and signature")
	case !q.Has(nonceKey):
		return source.Unauthorized("missing %s: the signature is SHA-1(app secret + %s + %s)", nonceKey, nonceKey, tsKey)
	case ts == "":
		return source.Unauthorized("missing %s: the signature is SHA-1(app secret + %s + %s)", tsKey, nonceKey, tsKey)
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || n < 0 {
		return source.Unauthorized("%s %q is not an epoch timestamp", tsKey, ts)
	}
	if !source.SecretEqual(strings.ToLower(sig), Sign(appSecret, nonce, ts)) {
		return source.Unauthorized("wrong %s: it is not SHA-1(app secret + %s + %s) under this server's sources.rongcloud.app_secret", sigKey, nonceKey, tsKey)
	}
	var at time.Time
	if unit == time.Second {
		if n > 1<<40 { // far beyond year 2100 in seconds: refused as stale below without overflowing
			n = 1 << 40
		}
		at = time.Unix(n, 0)
	} else {
		at = time.UnixMilli(n)
	}
	return source.CheckFresh(tsKey, at, now, maxSkew)
}
