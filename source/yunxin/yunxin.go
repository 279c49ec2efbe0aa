// Package yunxin is the Yunxin 抄送 (message copy) source (POST
// /v1/callbacks/yunxin). SKELETON: being built (issue 9).
package yunxin

import (
	"net/http"
	"time"

	"github.com/imbridge/imbridge/source"
)

// Source is the Easemob callback source.
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
func (*Source) Name() string { return "yunxin" }

// ContentTypes are the accepted body types.
func (*Source) ContentTypes() []string { return []string{"application/json", "text/plain"} }

// Authenticate verifies the signature.
func (s *Source) Authenticate(r *http.Request, body []byte) error {
	return source.Unauthorized("not implemented")
}

// Decode parses the body.
func (s *Source) Decode(r *http.Request, body []byte) (source.Batch, error) {
	return source.Batch{}, source.BadRequest("not implemented")
}

// Reply answers the provider.
func (*Source) Reply(w http.ResponseWriter, rep source.Reply) { w.WriteHeader(rep.Status) }
