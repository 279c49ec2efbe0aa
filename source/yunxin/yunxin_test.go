package yunxin

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/render"
	"github.com/imbridge/imbridge/source"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/cases")

// receipt is the receipt time the tests decode with.
var receipt = time.UnixMilli(1700000000000)

// teams is the team map of the golden lines: the source app's tids → the
// destination's. Team 13827 is left unmapped on purpose (nothing uses it).
type teams map[string]int64

func (m teams) TID(src, group string) (int64, bool) {
	if src != Name {
		return 0, false
	}
	t, ok := m[group]
	return t, ok
}
func (teams) URL(string) (string, bool) { return "", false }

var goldenMaps = teams{"11623": 900, "11631": 901, SuperTeamPrefix + "11620": 902}

// describe renders what a body decodes to: per message its ids and line,
// then the ignored kinds and the recalls.
func describe(t *testing.T, b source.Batch) []byte {
	t.Helper()
	var out bytes.Buffer
	enc := &message.Encoder{}
	for i := range b.Messages {
		m := &b.Messages[i]
		fmt.Fprintf(&out, "message source_id=%s recall_key=%s group=%s\n", m.SourceID, m.RecallKey, m.GroupID)
		line, res := render.Line(nil, enc, m, goldenMaps)
		if res.Held {
			out.WriteString("held\n")
			continue
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	kinds := make([]string, 0, len(b.Ignored))
	for k := range b.Ignored {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&out, "ignored %s %d\n", k, b.Ignored[k])
	}
	for _, r := range b.Recalls {
		fmt.Fprintf(&out, "recall source=%s key=%s id=%s operator=%s time=%d\n", r.Source, r.Key, r.ID, r.Operator, r.Time)
	}
	return out.Bytes()
}

// TestGolden decodes every documented kind (testdata/cases/*.json, shaped as
// Yunxin's 抄送 examples) and compares the result byte for byte with
// testdata/cases/*.golden.
func TestGolden(t *testing.T) {
	bodies, err := filepath.Glob("testdata/cases/*.json")
	if err != nil || len(bodies) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, path := range bodies {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Decode(body, receipt)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			got := describe(t, b)
			golden := strings.TrimSuffix(path, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it, then review it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestEveryKindCovered makes sure the cases exercise every mapping branch:
// every line type and every ignore reason the decoder can produce.
func TestEveryKindCovered(t *testing.T) {
	bodies, _ := filepath.Glob("testdata/cases/*.json")
	types := map[message.Type]bool{}
	reasons := map[string]bool{}
	recalls := 0
	for _, path := range bodies {
		body, _ := os.ReadFile(path)
		b, err := Decode(body, receipt)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, m := range b.Messages {
			types[m.Type] = true
		}
		for k := range b.Ignored {
			reasons[k] = true
		}
		recalls += len(b.Recalls)
	}
	for _, want := range []message.Type{0, 1, 2, 3, 4, 6, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110} {
		if !types[want] {
			t.Errorf("no case produces type %d", want)
		}
	}
	for _, want := range []string{"event_2", "event_4", "event_12", "event_other", "tips", "netcall", "datatunnel",
		"unknown_msg_type", "friend_event", "system_notification", "custom_system_notification", "p2p_notification",
		"empty_text", "team_update_unmapped", "team_notification_unknown", "robot", "unknown_conv_type"} {
		if !reasons[want] {
			t.Errorf("no case produces ignore reason %q", want)
		}
	}
	if recalls < 4 {
		t.Errorf("%d recalls in the cases, want the p2p, team, super team and no-time ones", recalls)
	}
}

// TestSameMessageSameIdentity: a retried 抄送 gives the same msgid and
// identity, and the msgid of a numeric msgidServer is that number.
func TestSameMessageSameIdentity(t *testing.T) {
	body, _ := os.ReadFile("testdata/cases/team_invite.json")
	a, err := Decode(body, receipt)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Decode(body, receipt.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Messages) != 2 || len(b.Messages) != 2 {
		t.Fatalf("invite of two members: %d and %d lines, want 2", len(a.Messages), len(b.Messages))
	}
	for i := range a.Messages {
		if a.Messages[i].Identity() != b.Messages[i].Identity() {
			t.Errorf("line %d: identity %+v, then %+v", i, a.Messages[i].Identity(), b.Messages[i].Identity())
		}
	}
	if a.Messages[0].MsgID != 780006326270 {
		t.Errorf("msgid %d, want msgidServer 780006326270 as is", a.Messages[0].MsgID)
	}
	if a.Messages[1].MsgID == a.Messages[0].MsgID || a.Messages[1].SourceID != "780006326270#1" {
		t.Errorf("second member: source id %q msgid %d", a.Messages[1].SourceID, a.Messages[1].MsgID)
	}
}

func TestClientType(t *testing.T) {
	for in, want := range map[string]message.ClientType{
		"AOS": 1, "IOS": 2, "iOS": 2, "PC": 4, "WINPHONE": 8, "WEB": 16, "REST": 32, "MAC": 64,
		"HARMONY": 32, "": 32, "SOMETHING": 32, "16": 16, "65": 32,
	} {
		if got := ClientType(in); got != want {
			t.Errorf("ClientType(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestMalformed: each body is refused with a 400 naming what is wrong, and
// nothing of it is returned.
func TestMalformed(t *testing.T) {
	text := `{"convType":"PERSON","eventType":"1","fromAccount":"a","to":"b","msgType":"TEXT","body":"x","msgidServer":"1","msgTimestamp":"1456888017105"}`
	note := func(attach string) string {
		return `{"convType":"TEAM","eventType":"1","fromAccount":"a","to":"11623","msgType":"NOTIFICATION","msgidServer":"2","msgTimestamp":"1456888017105","attach":` + attach + `}`
	}
	for _, c := range []struct{ name, body, want string }{
		{"empty", ``, "empty"},
		{"truncated", text[:60], "truncated"},
		{"array", `[` + text + `]`, "JSON object"},
		{"trailing data", text + `{}`, "trailing"},
		{"no eventType", `{"convType":"PERSON"}`, "eventType: required"},
		{"no convType", `{"eventType":"1","msgType":"TEXT"}`, "convType: required"},
		{"no msgType", `{"eventType":"1","convType":"TEAM"}`, "msgType: required"},
		{"no msgidServer", strings.Replace(text, `"msgidServer":"1",`, ``, 1), "msgidServer: required"},
		{"no fromAccount", strings.Replace(text, `"fromAccount":"a",`, ``, 1), "fromAccount: required"},
		{"no to", strings.Replace(text, `"to":"b",`, ``, 1), "to: required"},
		{"time not a number", strings.Replace(text, `"1456888017105"`, `"yesterday"`, 1), "msgTimestamp"},
		{"time in seconds", strings.Replace(text, `"1456888017105"`, `"1456888017"`, 1), "createTime"},
		{"account is an object", strings.Replace(text, `"fromAccount":"a"`, `"fromAccount":{"x":1}`, 1), "fromAccount: must be a string"},
		{"body is an array", strings.Replace(text, `"body":"x"`, `"body":["x"]`, 1), "body: must be a string"},
		{"picture without attach", strings.Replace(text, `"TEXT"`, `"PICTURE"`, 1), "attach: required"},
		{"picture attach a number", strings.Replace(text, `"msgType":"TEXT"`, `"msgType":"PICTURE","attach":5`, 1), "attach: must be a JSON object"},
		{"picture attach not JSON", strings.Replace(text, `"msgType":"TEXT"`, `"msgType":"PICTURE","attach":"{oops"`, 1), "attach"},
		{"picture without url", strings.Replace(text, `"msgType":"TEXT"`, `"msgType":"PICTURE","attach":"{\"w\":1}"`, 1), "url"},
		{"picture w not a number", strings.Replace(text, `"msgType":"TEXT"`, `"msgType":"PICTURE","attach":"{\"url\":\"u\",\"w\":\"wide\"}"`, 1), "attach.w"},
		{"location without lat", strings.Replace(text, `"msgType":"TEXT"`, `"msgType":"LOCATION","attach":"{\"lng\":1.5}"`, 1), "lat"},
		{"location lat out of range", strings.Replace(text, `"msgType":"TEXT"`, `"msgType":"LOCATION","attach":"{\"lng\":1.5,\"lat\":95}"`, 1), "lat"},
		{"notification without attach", strings.Replace(note(`""`), `,"attach":""`, ``, 1), "attach: required"},
		{"notification without id", note(`{"data":{}}`), "attach.id: required"},
		{"notification id not a number", note(`{"id":"kick","data":{}}`), "attach.id"},
		{"invite without ids", note(`{"id":0,"data":{}}`), "attach.data.ids: required"},
		{"kick with ids an object", note(`{"id":1,"data":{"ids":{"a":1}}}`), "attach.data.ids"},
		{"kick with an empty account", note(`{"id":1,"data":{"ids":[""]}}`), "accid2: required"},
		{"transfer without new owner", note(`{"id":6,"data":{}}`), "attach.data.id: required"},
		{"update with a bad int", note(`{"id":3,"data":{"tinfo":{"16":"sometimes"}}}`), "tinfo.16"},
		{"update with an undocumented value", note(`{"id":3,"data":{"tinfo":{"17":"7"}}}`), "tinfo.17"},
		{"update with tinfo an array", note(`{"id":3,"data":{"tinfo":[1]}}`), "tinfo"},
		{"recall without msgId", `{"eventType":"7","from":"a","deleteTime":"1487308054709"}`, "msgId: required"},
		{"recall time not a number", `{"eventType":"8","from":"a","msgId":"9","deleteTime":"soon"}`, "deleteTime"},
		{"recall time in seconds", `{"eventType":"8","from":"a","msgId":"9","deleteTime":"1487308054"}`, "recall time"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := Decode([]byte(c.body), receipt)
			var se *source.Error
			if !errors.As(err, &se) || se.Status != http.StatusBadRequest {
				t.Fatalf("got %v (%+v), want a 400 *source.Error", err, b)
			}
			if !strings.Contains(se.Msg, c.want) {
				t.Errorf("error %q does not say %q", se.Msg, c.want)
			}
			if len(b.Messages) != 0 || len(b.Recalls) != 0 || len(b.Ignored) != 0 {
				t.Errorf("error with a non-empty batch %+v", b)
			}
		})
	}
}

// sign returns the headers Yunxin would send: MD5 and CheckSum written the
// way Yunxin's CheckSumBuilder writes them (lower-case hex).
func sign(secret string, body []byte, curTime string) (md5hex, checkSum string) {
	m := md5.Sum(body)
	md5hex = hex.EncodeToString(m[:])
	c := sha1.Sum([]byte(secret + md5hex + curTime))
	return md5hex, hex.EncodeToString(c[:])
}

func TestVerify(t *testing.T) {
	const secret = "c3b7b5b8e9f5"
	body := []byte(`{"eventType":"2"}`)
	// Computed independently (Python hashlib) for this secret, body and CurTime.
	const (
		knownMD5      = "c47df7448b773068265103b3cfdec637"
		knownCheckSum = "1de2df6fa8f6191f6c0f26c9a4ed0491fb9bee58"
	)
	now := time.UnixMilli(1440570500855)
	cur := "1440570500855"
	md5hex, sum := sign(secret, body, cur)
	if md5hex != knownMD5 || sum != knownCheckSum {
		t.Fatalf("signing helper: MD5 %s CheckSum %s, want %s %s", md5hex, sum, knownMD5, knownCheckSum)
	}
	upMD5 := strings.ToUpper(md5hex)
	c := sha1.Sum([]byte(secret + upMD5 + cur))
	upSum := strings.ToUpper(hex.EncodeToString(c[:]))
	for _, tc := range []struct {
		name                 string
		cur, md5h, sum, want string
		body                 []byte
		skew                 time.Duration
		at                   time.Time
	}{
		{"signed", cur, md5hex, sum, "", body, 5 * time.Minute, now},
		{"upper-case hex", cur, upMD5, upSum, "", body, 5 * time.Minute, now},
		{"body changed", cur, md5hex, sum, "body does not match MD5", []byte(`{"eventType":"3"}`), 5 * time.Minute, now},
		{"wrong secret", cur, md5hex, func() string { _, s := sign("other", body, cur); return s }(), "wrong CheckSum", body, 5 * time.Minute, now},
		{"CurTime changed", "1440570500856", md5hex, sum, "wrong CheckSum", body, 5 * time.Minute, now},
		{"missing MD5", cur, "", sum, "missing header MD5", body, 5 * time.Minute, now},
		{"missing all", "", "", "", "missing header CurTime, MD5, CheckSum", body, 5 * time.Minute, now},
		{"stale", cur, md5hex, sum, "away from this server's clock", body, 5 * time.Minute, now.Add(6 * time.Minute)},
		{"from the future", cur, md5hex, sum, "away from this server's clock", body, 5 * time.Minute, now.Add(-6 * time.Minute)},
		{"stale but no check", cur, md5hex, sum, "", body, 0, now.Add(time.Hour)},
		{"CurTime not ms", "yesterday", md5hex, func() string { _, s := sign(secret, body, "yesterday"); return s }(), "not epoch milliseconds", body, 5 * time.Minute, now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(secret, tc.cur, tc.md5h, tc.sum, tc.body, tc.at, tc.skew)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var se *source.Error
			if !errors.As(err, &se) || se.Status != http.StatusUnauthorized || !strings.Contains(se.Msg, tc.want) {
				t.Fatalf("got %v, want a 401 saying %q", err, tc.want)
			}
		})
	}
}

// TestAuthenticateReadsTheHeaders goes through the http-facing method with
// the injected clock.
func TestAuthenticateReadsTheHeaders(t *testing.T) {
	s := New("secret", time.Minute)
	s.now = func() time.Time { return time.UnixMilli(1700000000000) }
	body := []byte(`{"eventType":"2"}`)
	m, c := sign("secret", body, "1700000000000")
	r := httptest.NewRequest("POST", "/v1/callbacks/yunxin", bytes.NewReader(body))
	r.Header.Set("AppKey", "k")
	r.Header.Set("CurTime", "1700000000000")
	r.Header.Set("MD5", m)
	r.Header.Set("CheckSum", c)
	if err := s.Authenticate(r, body); err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return time.UnixMilli(1700000000000).Add(2 * time.Minute) }
	if err := s.Authenticate(r, body); err == nil {
		t.Fatal("a CurTime two minutes old accepted with max_skew 1m")
	}
	b, err := s.Decode(r, body)
	if err != nil || b.Ignored["event_2"] != 1 {
		t.Fatalf("decode: %+v %v", b, err)
	}
	rec := httptest.NewRecorder()
	s.Reply(rec, source.Reply{Status: 200, Accepted: 1})
	if rec.Code != 200 || rec.Body.String() != `{"accepted":1,"duplicates":0}` {
		t.Fatalf("reply %d %s", rec.Code, rec.Body)
	}
}
