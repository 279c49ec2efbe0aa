// Kept from the adversarial review of the callback allocation changes
// (a1b6aeb, d8dbad5): each test fails on a mutant of the change it covers.

package source

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

const jsonCT = "application/json; charset=utf-8"

// ReplyJSON's shared Content-Type slice is never written through: a later
// Add or Set on one answer's header, or a direct write into its own slot,
// leaves the shared slice and every other answer alone. Add may only copy
// if the slice is full (cap 1).
func TestReplyJSONSharedContentTypeReview5(t *testing.T) {
	if cap(jsonContentType) != len(jsonContentType) {
		t.Fatalf("jsonContentType has room (len %d, cap %d): Header.Add would write into the shared array", len(jsonContentType), cap(jsonContentType))
	}
	a, b := httptest.NewRecorder(), httptest.NewRecorder()
	ReplyJSON(a, Reply{Status: 200, Accepted: 1})
	ReplyJSON(b, Reply{Status: 200, Accepted: 2})
	a.Header().Add("Content-Type", "text/plain")
	b.Header().Set("Content-Type", "text/html")
	if got := a.Header().Values("Content-Type"); len(got) != 2 || got[0] != jsonCT || got[1] != "text/plain" {
		t.Errorf("a's Content-Type after Add: %q", got)
	}
	c := httptest.NewRecorder()
	ReplyJSON(c, Reply{Status: 200})
	if jsonContentType[0] != jsonCT || c.Header().Get("Content-Type") != jsonCT || a.Result().Header.Get("Content-Type") != jsonCT {
		t.Errorf("shared %q, c %q, a's answered %q", jsonContentType, c.Header().Get("Content-Type"), a.Result().Header.Get("Content-Type"))
	}
}

// Concurrent answers through net/http (HTTP/1.1 and HTTP/2), each handler
// adding to its header after ReplyJSON: no race on the shared slice (run
// with -race) and every response says application/json.
func TestReplyJSONConcurrentReview5(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ReplyJSON(w, Reply{Status: 200, Accepted: 1})
		w.Header().Add("Content-Type", r.URL.Query().Get("i"))
		w.Header().Set("X-After", "1")
	})
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprint("h2=", h2), func(t *testing.T) {
			srv := httptest.NewUnstartedServer(h)
			srv.EnableHTTP2 = h2
			if h2 {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			client := srv.Client()
			var wg sync.WaitGroup
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 50; i++ {
						resp, err := client.Get(fmt.Sprintf("%s/?i=x%d-%d", srv.URL, g, i))
						if err != nil {
							t.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if got := resp.Header.Values("Content-Type"); len(got) != 1 || got[0] != jsonCT {
							t.Errorf("Content-Type %q", got)
						}
					}
				}()
			}
			wg.Wait()
			if jsonContentType[0] != jsonCT {
				t.Errorf("shared slice now %q", jsonContentType)
			}
		})
	}
}
