package native_test

import (
	"errors"
	"testing"

	"github.com/imbridge/imbridge/source"
	"github.com/imbridge/imbridge/source/native"
)

const (
	good  = `{"data":{"ext":"","clientType":"2","createTime":1513685265481,"msgid":1,"from":"aaa","to":"bbb","body":"测试"},"type":0}`
	good2 = `{"data":{"ext":"","clientType":"2","createTime":1513685265481,"msgid":2,"from":"aaa","to":"bbb","body":"x"},"type":0}`
	bad   = `{"data":{"clientType":16,"createTime":1513685265481,"msgid":3,"accid":"a","body":"x"},"type":0}`
)

// FuzzDecode: any body is either valid messages or a 400 *source.Error,
// never a panic and never both.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{good, good + "\n" + good2, "[" + good + "," + good2 + "]", "[" + good + "," + bad + "]", "", "[", "[]", "\ufeff" + good} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		msgs, err := native.Decode(body)
		if err != nil {
			var se *source.Error
			if !errors.As(err, &se) || se.Status != 400 {
				t.Fatalf("error %v is not a 400 *source.Error", err)
			}
			if msgs != nil {
				t.Fatalf("error with %d messages returned", len(msgs))
			}
			return
		}
		if len(msgs) == 0 {
			t.Fatal("no error and no messages")
		}
		for _, m := range msgs {
			if err := m.Validate(); err != nil {
				t.Fatalf("invalid message accepted: %v", err)
			}
		}
	})
}
