package message

import (
	"encoding/json"
	"testing"
)

// FuzzUnquoteJSON: unquoteJSON answers as json.Unmarshal into a string does,
// for every input (the fast path must never differ from the library).
func FuzzUnquoteJSON(f *testing.F) {
	for _, seed := range []string{
		`""`, `"abc"`, ` "padded" `, `"测试"`, `"a\"b\\c\/d"`, `"\u00e9\ud83d\ude00"`, `"\ud800"`,
		"\"bad \xff utf-8\"", "\"tab\there\"", `"unterminated`, `"x" trailing`, `123`, `null`, `{"a":1}`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var got, want string
		gotErr := unquoteJSON(raw, &got)
		wantErr := json.Unmarshal(raw, &want)
		if (gotErr != nil) != (wantErr != nil) || got != want {
			t.Fatalf("unquoteJSON(%q) = %q, %v; json.Unmarshal: %q, %v", raw, got, gotErr, want, wantErr)
		}
	})
}
