// Kept from the adversarial review of the callback allocation changes
// (a1b6aeb, d8dbad5): each test fails on a mutant of the change it covers.

package message

import (
	"encoding/json"
	"testing"
)

// unquoteJSON answers exactly as json.Unmarshal into a string for inputs
// chosen at the edges of the scanner's fast path (whitespace, escapes,
// surrogates, hex digits ParseUint might accept, invalid UTF-8, trailing
// bytes), and the error text is json's own whenever there is one.
func TestUnquoteJSONEdgesReview5(t *testing.T) {
	for _, raw := range []string{
		``, `"`, `""`, ` "" `, "\t\r\n\"a\"\n", "\ufeff\"a\"", "\v\"a\"", "\u00a0\"a\"",
		`"a"x`, `"a" "b"`, `"a",`, `"a"}`, "\"a\"\x00",
		`"\x41"`, `"\a"`, `"\'"`, `"\U0041"`, `"\u"`, `"\u004"`, `"\u004"x`, `"\u00G1"`, `"\u+041"`, `"\u-041"`,
		`"\u0x41"`, `"\u_041"`, `"\u 041"`, `"\u0041"`, `"\u00E9"`, `"\u0000"`, `"\/\b\f\n\r\t\\\""`,
		`"\ud800"`, `"\udc00"`, `"\ud800\udc00"`, `"\uD83D\uDE00"`, `"\ud800\ud800"`, `"\ud800\u0041"`,
		`"\udc00\ud800"`, `"\ud800\"`, `"\ud800\u"`, `"\ud800\u12"`, `"\ud800\uzzzz"`, `"\ud800x"`, `"\ud800\n"`,
		`"\ud800\\udc00"`, `"\udbff\udfff"`, `"\ufffd"`, `"\ufeff"`,
		"\"\x7f\"", "\"\x1f\"", "\"\x80\"", "\"\xff\"", "\"\xe6\xb5\"", "\"\xe6\\u0041\"", "\"\xc3\\u00a9\"",
		"\"\\u00e9\xa9\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xc0\xaf\"", "\"\u2028\u2029\"",
		"\"ok\" \xff", `null`, `1`, `"a"` + "\r\n\t ",
	} {
		var got, want string
		gotErr := unquoteJSON([]byte(raw), &got)
		wantErr := json.Unmarshal([]byte(raw), &want)
		if (gotErr != nil) != (wantErr != nil) || got != want ||
			(gotErr != nil && gotErr.Error() != wantErr.Error()) {
			t.Errorf("unquoteJSON(%q) = %q, %v; json.Unmarshal: %q, %v", raw, got, gotErr, want, wantErr)
		}
	}
}
