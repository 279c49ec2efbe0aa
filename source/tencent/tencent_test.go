package tencent

import (
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/render"
	"github.com/imbridge/imbridge/source"
)

var update = flag.Bool("update", false, "rewrite the golden lines under testdata/golden")

// now is the receipt time of every decoded test body.
var now = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// maps maps the test groups to Yunxin tids.
type maps struct{}

func (maps) TID(src, group string) (int64, bool) {
	if src != Name {
		return 0, false
	}
	switch group {
	case "@TGS#2J4SZEAEL":
		return 1234, true
	case "@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic":
		return 1235, true
	}
	return 0, false
}
func (maps) URL(string) (string, bool) { return "", false }

func params(cmd, platform string) url.Values {
	v := url.Values{"SdkAppid": {"1400000000"}, "contenttype": {"json"}, "ClientIP": {"127.0.0.1"}}
	if cmd != "" {
		v.Set("CallbackCommand", cmd)
	}
	if platform != "" {
		v.Set("OptPlatform", platform)
	}
	return v
}

func lines(t *testing.T, b source.Batch) string {
	t.Helper()
	var out []string
	for i := range b.Messages {
		line, o := render.Line(nil, &message.Encoder{}, &b.Messages[i], maps{})
		if o.Held {
			t.Fatalf("message %d held: %+v", i, b.Messages[i])
		}
		out = append(out, string(line))
	}
	return strings.Join(out, "\n") + "\n"
}

// goldenCase is one body of testdata/cases.json (shared with the end-to-end
// test): its query's CallbackCommand (may be empty: the body's) and
// OptPlatform; its lines are testdata/golden/<name>.line.
type goldenCase struct {
	Name     string          `json:"name"`
	Command  string          `json:"command"`
	Platform string          `json:"platform"`
	Body     json.RawMessage `json:"body"`
}

func loadCases(t *testing.T) []goldenCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	return cases
}

// Every content kind and event, decoded and rendered, byte for byte against
// testdata/golden.
func TestGoldenLines(t *testing.T) {
	for _, tc := range loadCases(t) {
		tc := tc
		t.Run(tc.Name, func(t *testing.T) {
			b, err := Decode(tc.Body, params(tc.Command, tc.Platform), now)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Messages) == 0 || len(b.Ignored) > 0 || len(b.Recalls) > 0 {
				t.Fatalf("batch %+v: want messages only", b)
			}
			for _, m := range b.Messages {
				if m.Source != Name || m.MsgID != message.MsgID(Name, m.SourceID) {
					t.Fatalf("message %+v: source and msgid", m)
				}
			}
			got := lines(t, b)
			file := filepath.Join("testdata", "golden", tc.Name+".line")
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("lines differ from %s\n got: %s\nwant: %s", file, got, want)
			}
		})
	}
}

// SourceIDs are what history files also carry (MsgKey; GroupId:MsgSeq), the
// elements after the first get "#i", and all are recalled by the key.
func TestIdentities(t *testing.T) {
	body := `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgTime":1700000000,"MsgKey":"1_2_1700000000","MsgId":"999-1-2",
		"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}},{"MsgType":"TIMTextElem","MsgContent":{"Text":"y"}}]}`
	b, err := Decode([]byte(body), params("", "Android"), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Messages) != 2 {
		t.Fatalf("%d messages", len(b.Messages))
	}
	m0, m1 := b.Messages[0], b.Messages[1]
	if m0.SourceID != "1_2_1700000000" || m0.RecallKey != "" || m0.RecallKeyOf() != "1_2_1700000000" {
		t.Fatalf("element 0: %q %q", m0.SourceID, m0.RecallKey)
	}
	if m1.SourceID != "1_2_1700000000#1" || m1.RecallKey != "1_2_1700000000" {
		t.Fatalf("element 1: %q %q", m1.SourceID, m1.RecallKey)
	}
	if m0.MsgID == m1.MsgID || m0.CreateTime != 1700000000000 || m0.ClientType != message.Android {
		t.Fatalf("msgids %d %d, createTime %d, clientType %d", m0.MsgID, m1.MsgID, m0.CreateTime, m0.ClientType)
	}

	group := `{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#1","Type":"Public","From_Account":"a","MsgSeq":42,"MsgTime":1700000000,"MsgId":"777",
		"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]}`
	b, err = Decode([]byte(group), params("", ""), now)
	if err != nil {
		t.Fatal(err)
	}
	g := b.Messages[0]
	if g.SourceID != "@TGS#1:42" || g.GroupID != "@TGS#1" || g.TID != 0 || g.Scene != message.Team || g.From != "a" || g.ClientType != source.DefaultClientType {
		t.Fatalf("group message %+v", g)
	}
}

// A history record decodes to the same identity as the callback of the same
// message.
func TestHistoryRecordMatchesCallback(t *testing.T) {
	cb := `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgSeq":1,"MsgRandom":2,"MsgTime":1700000000,"MsgKey":"1_2_1700000000","MsgId":"1-2-3","SendMsgResult":0,
		"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}},{"MsgType":"TIMFaceElem","MsgContent":{"Index":1,"Data":"d"}}],"CloudCustomData":"c"}`
	hist := `{"From_Account":"a","To_Account":"b","MsgRandom":2,"MsgSeq":1,"MsgTimestamp":1700000000,"MsgFromPlatform":"Android","ClientIP":"1.2.3.4","MsgKey":"1_2_1700000000",
		"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}},{"MsgType":"TIMFaceElem","MsgContent":{"Index":1,"Data":"d"}}],"CloudCustomData":"c"},`
	b1, err := Decode([]byte(cb), params("", "Android"), now)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := DecodeHistory("C2C", "", []byte(hist))
	if err != nil {
		t.Fatal(err)
	}
	if lines(t, b1) != lines(t, b2) {
		t.Fatalf("callback and history differ:\n%s%s", lines(t, b1), lines(t, b2))
	}
	for i := range b1.Messages {
		if b1.Messages[i].Identity() != b2.Messages[i].Identity() || b1.Messages[i].RecallKeyOf() != b2.Messages[i].RecallKeyOf() {
			t.Fatalf("message %d: identities differ", i)
		}
	}

	gcb := `{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#2J4SZEAEL","Type":"Public","From_Account":"a","MsgSeq":42,"MsgTime":1700000000,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]}`
	ghist := `{"From_Account":"a","MsgSeq":42,"MsgTimestamp":1700000000,"MsgFromPlatform":"Web","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]}`
	g1, err := Decode([]byte(gcb), params("", "Web"), now)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := DecodeHistory("Group", "@TGS#2J4SZEAEL", []byte(ghist))
	if err != nil {
		t.Fatal(err)
	}
	if g1.Messages[0].Identity() != g2.Messages[0].Identity() || lines(t, g1) != lines(t, g2) {
		t.Fatalf("group callback and history differ:\n%s%s", lines(t, g1), lines(t, g2))
	}
	if _, err := DecodeHistory("Group", "", []byte(ghist)); err == nil {
		t.Fatal("a group record without any group id was accepted")
	}
}

func TestRecalls(t *testing.T) {
	b, err := Decode([]byte(`{"CallbackCommand":"C2C.CallbackAfterMsgWithDraw","From_Account":"jared","To_Account":"Jonh","MsgKey":"48374_2837546_1557481126","EventTime":1670574414123}`), params("", ""), now)
	if err != nil {
		t.Fatal(err)
	}
	want := message.Recall{Source: Name, Key: "48374_2837546_1557481126", Operator: "jared", Time: 1670574414123}
	if len(b.Messages) != 0 || len(b.Recalls) != 1 || b.Recalls[0] != want {
		t.Fatalf("c2c recall: %+v", b)
	}
	// Without EventTime (older bodies): the receipt time.
	b, err = Decode([]byte(`{"CallbackCommand":"C2C.CallbackAfterMsgWithDraw","From_Account":"jared","To_Account":"Jonh","MsgKey":"k","UnreadMsgNum":7}`), params("", ""), now)
	if err != nil || len(b.Recalls) != 1 || b.Recalls[0].Time != now.UnixMilli() {
		t.Fatalf("c2c recall without EventTime: %+v %v", b, err)
	}
	b, err = Decode([]byte(`{"CallbackCommand":"Group.CallbackAfterRecallMsg","Operator_Account":"admin","Type":"Public","GroupId":"@TGS#2J4SZEAEL","MsgSeqList":[{"MsgSeq":130},{"MsgSeq":"131"}],"EventTime":"1670574414123"}`), params("", ""), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Recalls) != 2 || b.Recalls[0].Key != "@TGS#2J4SZEAEL:130" || b.Recalls[1].Key != "@TGS#2J4SZEAEL:131" ||
		b.Recalls[0].Operator != "admin" || b.Recalls[1].Time != 1670574414123 {
		t.Fatalf("group recall: %+v", b.Recalls)
	}
	b, err = Decode([]byte(`{"CallbackCommand":"Group.CallbackAfterRecallMsg","Operator_Account":"admin","Type":"Community","GroupId":"@TGS#_@TGS#cQVLVHIM62CJ","TopicId":"@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic","MsgSeqList":[{"MsgSeq":7}],"EventTime":"1670574414123"}`), params("", ""), now)
	if err != nil || len(b.Recalls) != 1 || b.Recalls[0].Key != "@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic:7" {
		t.Fatalf("topic recall: %+v %v", b, err)
	}
	// The recall key is the recalled message's key.
	msg, _ := Decode([]byte(`{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#2J4SZEAEL","Type":"Public","From_Account":"a","MsgSeq":130,"MsgTime":1700000000,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}},{"MsgType":"TIMTextElem","MsgContent":{"Text":"y"}}]}`), params("", ""), now)
	for _, m := range msg.Messages {
		if m.RecallKeyOf() != "@TGS#2J4SZEAEL:130" {
			t.Fatalf("message %q is recalled by %q", m.SourceID, m.RecallKeyOf())
		}
	}
}

// Commands and content with no line are answered (no error) and counted
// under a fixed reason.
func TestIgnored(t *testing.T) {
	for _, tc := range []struct{ reason, body string }{
		{"send_failed", `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgTime":1700000000,"MsgKey":"k","SendMsgResult":80001,"ErrorInfo":"dirty word","UnreadMsgNum":-1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]}`},
		{"avchatroom", `{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#aLIVE","Type":"AVChatRoom","From_Account":"a","MsgSeq":1,"MsgTime":1700000000,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]}`},
		{"avchatroom", `{"CallbackCommand":"Group.CallbackAfterNewMemberJoin","GroupId":"@TGS#aLIVE","Type":"AVChatRoom","NewMemberList":[{"Member_Account":"x"}]}`},
		{"avchatroom", `{"CallbackCommand":"Group.CallbackAfterRecallMsg","GroupId":"@TGS#aLIVE","Type":"AVChatRoom","MsgSeqList":[{"MsgSeq":1}]}`},
		{"empty_msg_body", `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgTime":1700000000,"MsgKey":"k","MsgBody":[]}`},
		{"group_name_only", `{"CallbackCommand":"Group.CallbackAfterGroupInfoChanged","GroupId":"@TGS#1","Type":"Public","Operator_Account":"x","Name":"n"}`},
		{"group_info_other", `{"CallbackCommand":"Group.CallbackAfterGroupInfoChanged","GroupId":"@TGS#1","Type":"Public","Operator_Account":"x","UserDefinedDataList":[{"Key":"k","Value":"v"}]}`},
		{"member_exit_other", `{"CallbackCommand":"Group.CallbackAfterMemberExit","GroupId":"@TGS#1","Type":"Public","ExitType":"Other","ExitMemberList":[{"Member_Account":"x"}]}`},
		{"empty_member_list", `{"CallbackCommand":"Group.CallbackAfterNewMemberJoin","GroupId":"@TGS#1","Type":"Public","NewMemberList":[]}`},
		{"empty_recall", `{"CallbackCommand":"Group.CallbackAfterRecallMsg","GroupId":"@TGS#1","Type":"Public","MsgSeqList":[]}`},
		{"group_created", `{"CallbackCommand":"Group.CallbackAfterCreateGroup","GroupId":"@TGS#1","Type":"Public","Operator_Account":"x","Owner_Account":"x","Name":"n","MemberList":[{"Member_Account":"y"}]}`},
		{"group_full", `{"CallbackCommand":"Group.CallbackAfterGroupFull","GroupId":"@TGS#1"}`},
		{"state_change", `{"CallbackCommand":"State.StateChange","EventTime":1670574414123,"Info":{"Action":"Login","To_Account":"x","Reason":"Register"}}`},
		{"sns", `{"CallbackCommand":"Sns.CallbackFriendAdd","PairList":[{"From_Account":"a","To_Account":"b"}]}`},
		{"before_callback", `{"CallbackCommand":"C2C.CallbackBeforeSendMsg","From_Account":"a","To_Account":"b","MsgBody":"not what we parse"}`},
		{"c2c_other", `{"CallbackCommand":"C2C.CallbackAfterMsgReport","Report_Account":"a","Peer_Account":"b","LastReadTime":1}`},
		{"group_other", `{"CallbackCommand":"Group.CallbackAfterMemberFieldChanged","GroupId":"@TGS#1"}`},
		{"unhandled_command", `{"CallbackCommand":"Profile.CallbackPortraitSet","Operator_Account":"a"}`},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			b, err := Decode([]byte(tc.body), params("", ""), now)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Messages) != 0 || len(b.Recalls) != 0 || len(b.Ignored) != 1 || b.Ignored[tc.reason] != 1 {
				t.Fatalf("batch %+v: want only ignored %q", b, tc.reason)
			}
		})
	}
}

// Malformed bodies are 400s that say what is wrong, and nothing of them is kept.
func TestMalformed(t *testing.T) {
	good := `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgTime":1700000000,"MsgKey":"k","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]}`
	for _, tc := range []struct{ name, query, body, want string }{
		{"empty", "", ``, "empty body"},
		{"array", "", `[` + good + `]`, "JSON object"},
		{"truncated", "", good[:len(good)-9], "not valid JSON"},
		{"trailing garbage", "", good + `x`, "not valid JSON"},
		{"no command", "", `{"From_Account":"a"}`, "CallbackCommand is missing"},
		{"commands differ", "Group.CallbackAfterSendMsg", good, "differ"},
		{"command not a string", "", `{"CallbackCommand":1}`, "CallbackCommand: must be a string"},
		{"from not a string", "", strings.Replace(good, `"From_Account":"a"`, `"From_Account":7`, 1), "From_Account: must be a string"},
		{"MsgBody not an array", "", strings.Replace(good, `"MsgBody":[`, `"MsgBody":{"a":[`, 1) + "}", "MsgBody: must be an array"},
		{"MsgTime not a number", "", strings.Replace(good, `1700000000`, `"soon"`, 1), "MsgTime: must be an integer"},
		{"MsgTime missing", "", strings.Replace(good, `"MsgTime":1700000000,`, ``, 1), "MsgTime is required"},
		{"MsgTime in ms", "", strings.Replace(good, `1700000000`, `1700000000000`, 1), "createTime"},
		{"MsgKey missing", "", strings.Replace(good, `"MsgKey":"k",`, ``, 1), "MsgKey is required"},
		{"To missing", "", strings.Replace(good, `"To_Account":"b",`, ``, 1), "To_Account is required"},
		{"Text not a string", "", strings.Replace(good, `"Text":"x"`, `"Text":5`, 1), "MsgBody[0].MsgContent.Text: must be a string"},
		{"element not an object", "", strings.Replace(good, `{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}`, `"x"`, 1), "MsgBody[0]"},
		{"MsgContent not an object", "", strings.Replace(good, `{"Text":"x"}`, `[1]`, 1), "MsgBody[0].MsgContent: must be an object"},
		{"account with spaces", "", strings.Replace(good, `"From_Account":"a"`, `"From_Account":" a"`, 1), "data.from"},
		{"group without MsgSeq", "", `{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#1","Type":"Public","From_Account":"a","MsgTime":1700000000,"MsgBody":[]}`, "MsgSeq is required"},
		{"group without GroupId", "", `{"CallbackCommand":"Group.CallbackAfterSendMsg","Type":"Public","From_Account":"a","MsgSeq":1,"MsgTime":1700000000,"MsgBody":[]}`, "GroupId is required"},
		{"kick without operator", "", `{"CallbackCommand":"Group.CallbackAfterMemberExit","GroupId":"@TGS#1","Type":"Public","ExitType":"Kicked","ExitMemberList":[{"Member_Account":"x"}]}`, "Operator_Account is required"},
		{"member list wrong type", "", `{"CallbackCommand":"Group.CallbackAfterNewMemberJoin","GroupId":"@TGS#1","Type":"Public","NewMemberList":"x"}`, "NewMemberList: must be an array"},
		{"EventTime not digits", "", `{"CallbackCommand":"Group.CallbackAfterGroupDestroyed","GroupId":"@TGS#1","Owner_Account":"o","EventTime":"yesterday"}`, "EventTime: must be an integer"},
		{"recall without key", "", `{"CallbackCommand":"C2C.CallbackAfterMsgWithDraw","From_Account":"a","To_Account":"b"}`, "MsgKey is required"},
		{"recall MsgSeq missing", "", `{"CallbackCommand":"Group.CallbackAfterRecallMsg","GroupId":"@TGS#1","Type":"Public","MsgSeqList":[{}]}`, "MsgSeq is required"},
		{"second element bad", "", strings.Replace(good, `{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}`, `{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}},{"MsgType":"TIMSoundElem","MsgContent":{"Url":"u","Second":"long"}}`, 1), "MsgBody[1].MsgContent.Second"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := params(tc.query, "")
			b, err := Decode([]byte(tc.body), q, now)
			var se *source.Error
			if !errors.As(err, &se) || se.Status != http.StatusBadRequest {
				t.Fatalf("err %v (batch %+v): want a 400", err, b)
			}
			if !strings.Contains(se.Msg, tc.want) {
				t.Fatalf("error %q does not say %q", se.Msg, tc.want)
			}
			if len(b.Messages) != 0 || len(b.Recalls) != 0 || len(b.Ignored) != 0 {
				t.Fatalf("a refused body kept %+v", b)
			}
		})
	}
}

func TestSignDocumentExample(t *testing.T) {
	if got := Sign("xxxxyyyy", "1669872112"); got != "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061" {
		t.Fatalf("Sign = %s", got)
	}
}

func TestAuthenticate(t *testing.T) {
	s := New("xxxxyyyy", "1400000000", 5*time.Minute)
	s.now = func() time.Time { return time.Unix(1669872112+60, 0) }
	req := func(q string) *http.Request {
		return httptest.NewRequest("POST", "/v1/callbacks/tencent?"+q, nil)
	}
	base := "SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json&ClientIP=1.2.3.4&OptPlatform=iOS"
	sign := "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
	if err := s.Authenticate(req(base+"&Sign="+sign+"&RequestTime=1669872112"), nil); err != nil {
		t.Fatalf("the document's example: %v", err)
	}
	if err := s.Authenticate(req(base+"&Sign="+strings.ToUpper(sign)+"&RequestTime=1669872112"), nil); err != nil {
		t.Fatalf("upper-case hex: %v", err)
	}
	for _, tc := range []struct {
		name, q string
		status  int
		want    string
	}{
		{"no Sign", base + "&RequestTime=1669872112", 401, "no Sign"},
		{"wrong Sign", base + "&Sign=" + strings.Replace(sign, "1", "2", 1) + "&RequestTime=1669872112", 401, "Sign does not match"},
		{"Sign of another time", base + "&Sign=" + sign + "&RequestTime=1669872113", 401, "Sign does not match"},
		{"RequestTime not a number", base + "&Sign=" + sign + "&RequestTime=abc", 401, "RequestTime"},
		{"wrong app", strings.Replace(base, "1400000000", "1400000001", 1) + "&Sign=" + sign + "&RequestTime=1669872112", 403, "SdkAppid \"1400000001\""},
		{"no app", strings.Replace(base, "SdkAppid=1400000000&", "", 1) + "&Sign=" + sign + "&RequestTime=1669872112", 403, "no SdkAppid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Authenticate(req(tc.q), nil)
			var se *source.Error
			if !errors.As(err, &se) || se.Status != tc.status || !strings.Contains(se.Msg, tc.want) {
				t.Fatalf("err %v: want %d saying %q", err, tc.status, tc.want)
			}
		})
	}
	// Stale: the same signed pair, ten minutes later.
	s.now = func() time.Time { return time.Unix(1669872112+600, 0) }
	err := s.Authenticate(req(base+"&Sign="+sign+"&RequestTime=1669872112"), nil)
	var se *source.Error
	if !errors.As(err, &se) || se.Status != 401 || !strings.Contains(se.Msg, "max_skew") {
		t.Fatalf("stale: %v", err)
	}
	s.maxSkew = 0
	if err := s.Authenticate(req(base+"&Sign="+sign+"&RequestTime=1669872112"), nil); err != nil {
		t.Fatalf("max_skew 0 disables the check: %v", err)
	}
}

func TestReply(t *testing.T) {
	w := httptest.NewRecorder()
	(&Source{}).Reply(w, source.Reply{Status: 200, Accepted: 2, Ignored: 1})
	if w.Code != 200 || w.Body.String() != `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}` || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("OK reply %d %q", w.Code, w.Body.String())
	}
	w = httptest.NewRecorder()
	(&Source{}).Reply(w, source.Reply{Status: 401, Err: &source.Error{Status: 401, Msg: `Sign does not match <"x">`}})
	if w.Code != 401 || w.Body.String() != `{"ActionStatus":"FAIL","ErrorCode":401,"ErrorInfo":"Sign does not match <\"x\">"}` {
		t.Fatalf("FAIL reply %d %s", w.Code, w.Body.String())
	}
	w = httptest.NewRecorder()
	(&Source{}).Reply(w, source.Reply{Status: 503, Err: &source.Error{Status: 503, Msg: "spool full"}})
	if w.Code != 503 || w.Body.String() != `{"ActionStatus":"FAIL","ErrorCode":503,"ErrorInfo":"spool full"}` {
		t.Fatalf("503 reply %d %s", w.Code, w.Body.String())
	}
}

func TestClientType(t *testing.T) {
	for p, want := range map[string]message.ClientType{
		"Android": 1, "iOS": 2, "IOS": 2, "iPad": 2, "Windows": 4, "Web": 16, "RESTAPI": 32, "Mac": 64, "macOS": 64,
		"Unknown": source.DefaultClientType, "": source.DefaultClientType, "MiniProgram": source.DefaultClientType,
	} {
		if got := ClientType(p); got != want {
			t.Errorf("ClientType(%q) = %d, want %d", p, got, want)
		}
	}
}

func TestBaseNameAndExt(t *testing.T) {
	for in, want := range map[string]string{
		"file:///private/var/Application/tmp/trim.B75D.MOV": "trim.B75D.MOV",
		`C:\Users\a\报告.pdf`:                                 "报告.pdf",
		"plain.txt":                                         "plain.txt",
		"file:///a/b%20c.doc":                               "b c.doc",
	} {
		if got := baseName(in); got != want {
			t.Errorf("baseName(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"https://x/y/a.M4A?sign=1": "m4a", "https://x/y/0": "", "https://x/y.dir/file": "", "https://x/a.tar.gz": "gz", "::bad": "",
	} {
		if got := extFromURL(in); got != want {
			t.Errorf("extFromURL(%q) = %q, want %q", in, got, want)
		}
	}
}
