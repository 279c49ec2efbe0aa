package yunxin

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/imbridge/imbridge/source"
)

// FuzzDecode: any body is either a batch whose messages and recalls all pass
// Validate, or a 400 *source.Error with an empty batch; never a panic. The
// seeds are the documented 抄送 examples of every kind (testdata/cases) and
// a few broken ones; crashers found later live in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	paths, _ := filepath.Glob("testdata/cases/*.json")
	for _, p := range paths {
		body, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	for _, s := range []string{``, `{`, `[]`, `{"eventType":1}`, `{"eventType":"1","convType":"TEAM","msgType":"NOTIFICATION"}`,
		`{"eventType":"1","convType":"TEAM","msgType":"NOTIFICATION","msgidServer":"1","fromAccount":"a","to":"1","msgTimestamp":"1456888017105","attach":{"id":"0","data":{"ids":"[\"a\",2]"}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := Decode(body, receipt)
		if err != nil {
			var se *source.Error
			if !errors.As(err, &se) || se.Status != http.StatusBadRequest {
				t.Fatalf("error %v is not a 400 *source.Error", err)
			}
			if len(b.Messages) != 0 || len(b.Recalls) != 0 || len(b.Ignored) != 0 {
				t.Fatalf("error with a non-empty batch")
			}
			return
		}
		if len(b.Messages)+len(b.Recalls)+len(b.Ignored) == 0 {
			t.Fatal("no error and nothing decoded")
		}
		for i := range b.Messages {
			if err := b.Messages[i].Validate(); err != nil {
				t.Fatalf("invalid message accepted: %v", err)
			}
			if b.Messages[i].Source != Name {
				t.Fatalf("message of source %q", b.Messages[i].Source)
			}
		}
		for i := range b.Recalls {
			if err := b.Recalls[i].Validate(); err != nil {
				t.Fatalf("invalid recall accepted: %v", err)
			}
		}
	})
}
