package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source/tencent"
)

const (
	tcToken    = "tc-e2e-callback-token"
	tcAppID    = "1400000000"
	tcGroup    = "@TGS#2J4SZEAEL"
	tcTopic    = "@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic"
	tcOK       = `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`
	tcCasesDir = "../source/tencent/testdata"
)

// tcPost posts body to /v1/callbacks/tencent as Tencent does: the command,
// platform, SdkAppid and the signature (Sign = sha256hex(token +
// RequestTime)) in the query.
func tcPost(t *testing.T, base, token, appID, cmd, platform string, at time.Time, body string) (int, string) {
	t.Helper()
	rt := strconv.FormatInt(at.Unix(), 10)
	q := url.Values{"SdkAppid": {appID}, "contenttype": {"json"}, "ClientIP": {"10.0.0.1"},
		"OptPlatform": {platform}, "RequestTime": {rt}, "Sign": {tencent.Sign(token, rt)}}
	if cmd != "" {
		q.Set("CallbackCommand", cmd)
	}
	req, _ := http.NewRequest("POST", base+"/v1/callbacks/tencent?"+q.Encode(), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return send(t, req)
}

// tcLines is every line served from cursor 0, to a puller of its own.
func tcLines(t *testing.T, base string) map[string]int { return servedLines(t, base, "tencent-e2e") }

func tcTeamMap(t *testing.T, base string) {
	t.Helper()
	body := fmt.Sprintf(`[{"Source":"tencent","GroupID":%q,"TID":1234},{"Source":"tencent","GroupID":%q,"TID":1235}]`, tcGroup, tcTopic)
	req, _ := http.NewRequest("POST", base+"/v1/admin/maps/team", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer admin-secret")
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("team map: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("team map: %d %s", resp.StatusCode, b)
	}
}

// tcCase is one body of the source's golden cases and its golden lines.
type tcCase struct {
	Name     string          `json:"name"`
	Command  string          `json:"command"`
	Platform string          `json:"platform"`
	Body     json.RawMessage `json:"body"`
	lines    []string
}

func tcCases(t *testing.T) []tcCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(tcCasesDir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []tcCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	for i := range cases {
		g, err := os.ReadFile(filepath.Join(tcCasesDir, "golden", cases[i].Name+".line"))
		if err != nil {
			t.Fatal(err)
		}
		cases[i].lines = strings.Split(strings.TrimRight(string(g), "\n"), "\n")
	}
	return cases
}

func tcText(key, from, to string, secs int64, text string) string {
	return fmt.Sprintf(`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":%q,"To_Account":%q,"MsgTime":%d,"MsgKey":%q,"SendMsgResult":0,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":%q}}]}`,
		from, to, secs, key, text)
}

// tcTextLine is the line of tcText posted with OptPlatform Android.
func tcTextLine(key, from, to string, secs int64, text string) string {
	return fmt.Sprintf(`{"data":{"ext":"","clientType":"1","createTime":%d,"msgid":%d,"from":%q,"to":%q,"body":%q},"type":0}`,
		secs*1000, message.MsgID("tencent", key), from, to, text)
}

func tcDiff(got map[string]int, want map[string]bool) string {
	var out []string
	for l, n := range got {
		if !want[l] {
			out = append(out, "unexpected: "+l)
		} else if n != 1 {
			out = append(out, fmt.Sprintf("%d times: %s", n, l))
		}
	}
	for l := range want {
		if got[l] == 0 {
			out = append(out, "missing: "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// Every kind of Tencent callback through the real binary: signed bodies of
// every content kind, group event and recall give exactly their golden
// lines; refused requests (bad Sign, stale RequestTime, other app, truncated
// body) get Tencent's FAIL reply and store nothing; team lines wait for
// their group's mapping; recalled messages leave the pull.
func TestTencentCallbacksEndToEnd(t *testing.T) {
	s := startServer(t, t.TempDir(), "",
		"IMBRIDGE_SOURCES_TENCENT_TOKEN="+tcToken, "IMBRIDGE_SOURCES_TENCENT_SDKAPPID="+tcAppID, "IMBRIDGE_ADMIN_TOKEN=admin-secret")
	now := time.Now()
	secs := now.Unix() - 3600

	// Refused: each body would give a line of its own if it were stored.
	for _, tc := range []struct {
		what, token, app string
		at               time.Time
		body             string
		status           int
		info             string
	}{
		{"wrong Sign", "not-the-token", tcAppID, now, tcText("bad_sign", "a", "b", secs, "x"), 401, "Sign does not match"},
		{"stale RequestTime", tcToken, tcAppID, now.Add(-10 * time.Minute), tcText("stale", "a", "b", secs, "x"), 401, "RequestTime"},
		{"other app", tcToken, "1400000001", now, tcText("other_app", "a", "b", secs, "x"), 403, "SdkAppid"},
		{"truncated body", tcToken, tcAppID, now, tcText("truncated", "a", "b", secs, "x")[:60], 400, "not valid JSON"},
		{"commands differ", tcToken, tcAppID, now, strings.Replace(tcText("differ", "a", "b", secs, "x"), "C2C.CallbackAfterSendMsg", "C2C.CallbackAfterMsgWithDraw", 1), 400, "differ"},
	} {
		cmd := "C2C.CallbackAfterSendMsg"
		code, reply := tcPost(t, s.base, tc.token, tc.app, cmd, "Android", tc.at, tc.body)
		prefix := fmt.Sprintf(`{"ActionStatus":"FAIL","ErrorCode":%d,"ErrorInfo":"`, tc.status)
		if code != tc.status || !strings.HasPrefix(reply, prefix) || !strings.Contains(reply, tc.info) {
			t.Errorf("%s: %d %s, want %d %s…%s…", tc.what, code, reply, tc.status, prefix, tc.info)
		}
	}

	post := func(what, cmd, platform, body string) {
		t.Helper()
		if code, reply := tcPost(t, s.base, tcToken, tcAppID, cmd, platform, time.Now(), body); code != 200 || reply != tcOK {
			t.Errorf("%s: %d %s, want 200 %s", what, code, reply, tcOK)
		}
	}
	p2p, team := map[string]bool{}, map[string]bool{}
	for _, c := range tcCases(t) {
		if strings.HasSuffix(c.Name, "_no_time") {
			continue // its createTime is the receipt time: covered below with an EventTime
		}
		post(c.Name, c.Command, c.Platform, string(c.Body))
		for _, l := range c.lines {
			if strings.Contains(l, `"tid":`) {
				team[l] = true
			} else {
				p2p[l] = true
			}
		}
	}
	post("destroyed", "", "", `{"CallbackCommand":"Group.CallbackAfterGroupDestroyed","GroupId":"@TGS#2J4SZEAEL","Type":"Public","Owner_Account":"leckie","Name":"g","MemberList":[{"Member_Account":"leckie"}],"EventTime":1670574414200}`)
	team[fmt.Sprintf(`{"data":{"createTime":1670574414200,"clientType":32,"msgid":%d,"accid":"leckie","tid":1234},"type":110}`,
		message.MsgID("tencent", "destroy:@TGS#2J4SZEAEL:1670574414200"))] = true

	// Answered, counted, never a line.
	for _, body := range []string{
		strings.Replace(tcText("failed", "a", "b", secs, "dirty"), `"SendMsgResult":0`, `"SendMsgResult":80001`, 1),
		`{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#aLIVE","Type":"AVChatRoom","From_Account":"a","MsgSeq":1,"MsgTime":1700000000,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"live"}}]}`,
		`{"CallbackCommand":"Group.CallbackAfterGroupInfoChanged","GroupId":"@TGS#2J4SZEAEL","Type":"Public","Operator_Account":"x","Name":"only the name"}`,
		`{"CallbackCommand":"State.StateChange","EventTime":1670574414123,"Info":{"Action":"Login","To_Account":"x","Reason":"Register"}}`,
		`{"CallbackCommand":"C2C.CallbackBeforeSendMsg","From_Account":"a","To_Account":"b","MsgBody":[]}`,
	} {
		post("ignored", "", "Android", body)
	}

	// A recall that arrives before its message: the message is never served.
	post("early recall", "C2C.CallbackAfterMsgWithDraw", "Android", `{"CallbackCommand":"C2C.CallbackAfterMsgWithDraw","From_Account":"a","To_Account":"b","MsgKey":"early_1_1","EventTime":1670574414300}`)
	post("early recalled message", "", "Android", tcText("early_1_1", "a", "b", secs, "recalled before it came"))

	// Until the groups are mapped only the p2p lines are served.
	marker := tcTextLine("marker_1_1", "a", "b", secs, "last")
	post("marker", "", "Android", tcText("marker_1_1", "a", "b", secs, "last"))
	want := map[string]bool{marker: true}
	for l := range p2p {
		want[l] = true
	}
	var got map[string]int
	equal := func() bool { got = tcLines(t, s.base); return tcDiff(got, want) == "" }
	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !equal() {
			if time.Now().After(deadline) {
				t.Fatalf("%s:\n%s", what, tcDiff(got, want))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("before the team mapping (p2p lines only)")

	// Mapped: every team line appears, with the mapped tid.
	tcTeamMap(t, s.base)
	for l := range team {
		want[l] = true
	}
	waitFor("after the team mapping")

	// A retried callback is answered OK and stored once; recalls take the
	// recalled lines (all elements of a message) out of the pull.
	cases := map[string]tcCase{}
	for _, c := range tcCases(t) {
		cases[c.Name] = c
	}
	post("retried c2c_text", cases["c2c_text"].Command, cases["c2c_text"].Platform, string(cases["c2c_text"].Body))
	post("c2c recall", "", "iOS", `{"CallbackCommand":"C2C.CallbackAfterMsgWithDraw","From_Account":"jared","To_Account":"Jonh","MsgKey":"48374_2837546_1557481126","EventTime":1670574414400}`)
	post("group recall", "", "Android", `{"CallbackCommand":"Group.CallbackAfterRecallMsg","Operator_Account":"admin","Type":"Work","GroupId":"@TGS#2J4SZEAEL","MsgSeqList":[{"MsgSeq":124}],"EventTime":"1670574414500"}`)
	for _, name := range []string{"c2c_text", "group_image_and_text"} {
		for _, l := range cases[name].lines {
			delete(want, l)
		}
	}
	marker2 := tcTextLine("marker_2_2", "a", "b", secs, "after the recalls")
	post("marker 2", "", "Android", tcText("marker_2_2", "a", "b", secs, "after the recalls"))
	want[marker2] = true
	waitFor("after the recalls")
}
