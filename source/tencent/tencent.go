// Package tencent is the Tencent IM callback source (POST
// /v1/callbacks/tencent). SKELETON: being built (issue 9).
package tencent

import (
	"net/http"
	"time"

	"github.com/imbridge/imbridge/source"
)

// Source is the Easemob callback source.
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
func (*Source) Name() string { return "tencent" }

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
