// Package yunxin is the Yunxin 抄送 (message copy) source, POST
// /v1/callbacks/yunxin: a source Yunxin app copies its messages to imbridge,
// which serves them to the destination Yunxin app (a Yunxin → Yunxin
// migration). Requests are signed over the body: header MD5 = md5hex(body),
// CheckSum = sha1hex(AppSecret + MD5 + CurTime). The mapping to Yunxin lines
// is documented in the README's appendix (provider mappings).
package yunxin

import (
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/imbridge/imbridge/source"
)

// Name is the source name of every message and recall this package makes.
const Name = "yunxin"

// Source is the Yunxin 抄送 callback source.
type Source struct {
	secret  string
	maxSkew time.Duration
	now     func() time.Time
}

// New returns the source verifying MD5 and CheckSum with the app secret and
// refusing timestamps further than maxSkew from now (0: no check).
func New(appSecret string, maxSkew time.Duration) *Source {
	return &Source{secret: appSecret, maxSkew: maxSkew, now: time.Now}
}

// Name implements the callback source.
func (*Source) Name() string { return Name }

// ContentTypes are the accepted body types (Yunxin sends application/json).
func (*Source) ContentTypes() []string { return []string{"application/json", "text/plain"} }

// Authenticate verifies the MD5 header against the body, then CheckSum, then
// the freshness of CurTime.
func (s *Source) Authenticate(r *http.Request, body []byte) error {
	return Verify(s.secret, r.Header.Get("CurTime"), r.Header.Get("MD5"), r.Header.Get("CheckSum"), body, s.now(), s.maxSkew)
}

// Verify checks one signed 抄送 request: MD5 must be the md5 of body (a
// changed body is refused before anything else), CheckSum must be
// sha1hex(secret + MD5 + CurTime), and CurTime (epoch ms) must be within
// maxSkew of now (0: not checked). Hex digests are compared
// case-insensitively (Yunxin's CheckSumBuilder writes lower case; upper case
// is accepted all the same) and in constant time. The error is a 401
// *source.Error.
func Verify(secret, curTime, md5Header, checkSum string, body []byte, now time.Time, maxSkew time.Duration) error {
	var missing []string
	for _, h := range []struct{ name, v string }{{"CurTime", curTime}, {"MD5", md5Header}, {"CheckSum", checkSum}} {
		if strings.TrimSpace(h.v) == "" {
			missing = append(missing, h.name)
		}
	}
	if len(missing) > 0 {
		return source.Unauthorized("missing header %s (Yunxin signs every 抄送 with CurTime, MD5 and CheckSum)", strings.Join(missing, ", "))
	}
	sum := md5.Sum(body)
	if !source.SecretEqual(strings.ToLower(strings.TrimSpace(md5Header)), hex.EncodeToString(sum[:])) {
		return source.Unauthorized("body does not match MD5")
	}
	mac := sha1.Sum([]byte(secret + md5Header + curTime))
	if !source.SecretEqual(strings.ToLower(strings.TrimSpace(checkSum)), hex.EncodeToString(mac[:])) {
		return source.Unauthorized("wrong CheckSum (sha1 of app secret + MD5 + CurTime)")
	}
	ms, err := strconv.ParseInt(strings.TrimSpace(curTime), 10, 64)
	if err != nil || ms <= 0 {
		return source.Unauthorized("CurTime %q is not epoch milliseconds", curTime)
	}
	return source.CheckFresh("CurTime", time.UnixMilli(ms), now, maxSkew)
}

// Decode parses the body (see the package function Decode); events without a
// time of their own get the receipt time.
func (s *Source) Decode(_ *http.Request, body []byte) (source.Batch, error) {
	return Decode(body, s.now())
}

// Reply answers with the JSON every non-Tencent source uses; Yunxin only
// looks at the status (200).
func (*Source) Reply(w http.ResponseWriter, rep source.Reply) { source.ReplyJSON(w, rep) }
