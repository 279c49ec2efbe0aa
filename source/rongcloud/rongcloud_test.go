package rongcloud

import (
	"bytes"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/render"
	"github.com/imbridge/imbridge/source"
)

var update = flag.Bool("update", false, "rewrite the golden lines under testdata/golden")

// form encodes key, value pairs in order, as RongCloud posts them.
func form(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[i]) + "=" + url.QueryEscape(kv[i+1]))
	}
	return b.String()
}

// msg is a routed message of objectName with content: p2p from u1 to u2
// unless channel is GROUP (then toUserId is the group g1).
func msg(channel, objectName, content string, extra ...string) string {
	to := "u2"
	if channel == "GROUP" {
		to = "g1"
	}
	kv := []string{"fromUserId", "u1", "toUserId", to, "objectName", objectName, "content", content,
		"channelType", channel, "msgTimestamp", "1408710653491", "msgUID", "596E-P5PG-4FS2-7OJK"}
	return form(append(kv, extra...)...)
}

type maps struct{}

func (maps) TID(src, group string) (int64, bool) {
	if src == Name && group == "g1" {
		return 900, true
	}
	return 0, false
}
func (maps) URL(string) (string, bool) { return "", false }

func lines(t *testing.T, msgs []message.Message) string {
	t.Helper()
	var out []byte
	var enc message.Encoder
	for i := range msgs {
		var o render.Outcome
		out, o = render.Line(out, &enc, &msgs[i], maps{})
		if o.Held {
			t.Fatalf("message %d held: %+v", i, msgs[i])
		}
		out = append(out, '\n')
	}
	return string(out)
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", "golden", name+".line")
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update once to create it, then review it)", err)
	}
	if got != string(want) {
		t.Errorf("%s:\n got %s\nwant %s", name, got, want)
	}
}

// The published examples: RongCloud's docs print the lowercase hex of
// SHA-1(secret + nonce + timestamp) but never the secret behind their
// sample signatures (45beb7cc… for the routing example), so the expected
// values here were computed outside Go:
// printf '%s' 'test-app-secret143141408710653491' | sha1sum.
func TestSign(t *testing.T) {
	for _, c := range []struct{ secret, nonce, ts, want string }{
		{"test-app-secret", "14314", "1408710653491", "fc2ab892862ee08b0629d2f1cd46543f08ee85c4"},
		{"test-app-secret", "14314", "1408710653", "7c7b65ec46b4d9641ac7ebfff1443e1a210e1614"},
	} {
		if got := Sign(c.secret, c.nonce, c.ts); got != c.want {
			t.Errorf("Sign(%q, %q, %q) = %s, want %s", c.secret, c.nonce, c.ts, got, c.want)
		}
	}
}

func TestVerifySignature(t *testing.T) {
	const secret = "test-app-secret"
	now := time.UnixMilli(1408710653491 + 60_000) // a minute after the example's signTimestamp
	q := func(s string) url.Values { v, _ := url.ParseQuery(s); return v }
	for _, c := range []struct {
		name, query string
		skew        time.Duration
		ok          bool
		errHas      string
	}{
		{"the documented parameters", "signTimestamp=1408710653491&nonce=14314&signature=fc2ab892862ee08b0629d2f1cd46543f08ee85c4", 5 * time.Minute, true, ""},
		{"upper-case hex", "signTimestamp=1408710653491&nonce=14314&signature=FC2AB892862EE08B0629D2F1CD46543F08EE85C4", 5 * time.Minute, true, ""},
		{"the older rc- parameters in seconds", "rc-timestamp=1408710653&rc-nonce=14314&rc-signature=7c7b65ec46b4d9641ac7ebfff1443e1a210e1614", 5 * time.Minute, true, ""},
		{"a wrong signature", "signTimestamp=1408710653491&nonce=14314&signature=7c7b65ec46b4d9641ac7ebfff1443e1a210e1614", 5 * time.Minute, false, "wrong signature"},
		{"another nonce", "signTimestamp=1408710653491&nonce=14315&signature=fc2ab892862ee08b0629d2f1cd46543f08ee85c4", 5 * time.Minute, false, "wrong signature"},
		{"stale", "signTimestamp=1408710653491&nonce=14314&signature=fc2ab892862ee08b0629d2f1cd46543f08ee85c4", 30 * time.Second, false, "max_skew"},
		{"stale rc- timestamp", "rc-timestamp=1408710653&rc-nonce=14314&rc-signature=7c7b65ec46b4d9641ac7ebfff1443e1a210e1614", 30 * time.Second, false, "rc-timestamp"},
		{"no freshness check with max_skew 0", "signTimestamp=1408710653491&nonce=14314&signature=fc2ab892862ee08b0629d2f1cd46543f08ee85c4", 0, true, ""},
		{"no signature", "signTimestamp=1408710653491&nonce=14314", 5 * time.Minute, false, "missing signature"},
		{"no nonce", "signTimestamp=1408710653491&signature=fc2ab892862ee08b0629d2f1cd46543f08ee85c4", 5 * time.Minute, false, "missing nonce"},
		{"no timestamp", "nonce=14314&signature=fc2ab892862ee08b0629d2f1cd46543f08ee85c4", 5 * time.Minute, false, "missing signTimestamp"},
		{"timestamp not a number", "signTimestamp=x&nonce=14314&signature=fc2ab892862ee08b0629d2f1cd46543f08ee85c4", 5 * time.Minute, false, "not an epoch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := VerifySignature(q(c.query), secret, now, c.skew)
			if c.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var se *source.Error
			if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
				t.Fatalf("error %v, want a 401 *source.Error", err)
			}
			if !strings.Contains(se.Msg, c.errHas) {
				t.Errorf("error %q does not say %q", se.Msg, c.errHas)
			}
		})
	}
}

// Every content kind, decoded and rendered, byte for byte against
// testdata/golden.
func TestDecodeGolden(t *testing.T) {
	const uid = "596E-P5PG-4FS2-7OJK"
	for _, c := range []struct {
		name, body string
	}{
		{"p2p_text", msg("PERSON", "RC:TxtMsg", `{"content":"你好 hello; a+b & \"q\"","extra":"{\"k\":1}","mentionedInfo":{"type":2,"userIdList":["u2"]},"user":{"id":"u1","name":"甲"}}`, "source", "iOS", "sensitiveType", "0")},
		{"team_text", msg("GROUP", "RC:TxtMsg", `{"content":"hello group","extra":""}`, "source", "Android", "groupUserIds", "")},
		{"team_text_targeted", msg("GROUP", "RC:TxtMsg", `{"content":"only for 543 and 567"}`, "source", "Websocket", "groupUserIds", "[543,567]")},
		{"p2p_text_object_extra", msg("PERSON", "RC:TxtMsg", `{"content":"x","extra":{"b":[1,2],"a":"v"}}`, "source", "PC")},
		{"p2p_text_empty", msg("PERSON", "RC:TxtMsg", `{"content":""}`, "source", "iOS")},
		{"p2p_image", msg("PERSON", "RC:ImgMsg", `{"content":"/9j/4AAQSkZJRg","imageUri":"https://rongcloud-image.example/a/b.PNG?x=1","extra":""}`, "source", "MiniProgram")},
		{"p2p_image_no_url", msg("PERSON", "RC:ImgMsg", `{"content":"/9j/4AAQ"}`, "source", "iOS")},
		{"team_image", msg("GROUP", "RC:ImgMsg", `{"content":"/9j/","imageUri":"https://rongcloud-image.example/c","name":"photo.jpeg"}`, "source", "Server")},
		{"p2p_gif", msg("PERSON", "RC:GIFMsg", `{"gifDataSize":12345,"remoteUrl":"https://rongcloud-file.example/g","width":200,"height":"150","name":"fun.gif"}`, "source", "Android")},
		{"p2p_hq_voice", msg("PERSON", "RC:HQVCMsg", `{"remoteUrl":"https://rongcloud-file.example/v","duration":7,"extra":""}`, "source", "iOS")},
		{"team_hq_voice", msg("GROUP", "RC:HQVCMsg", `{"remoteUrl":"https://rongcloud-file.example/v.m4a","duration":"2.5"}`, "source", "iOS")},
		{"p2p_voice_amr", msg("PERSON", "RC:VcMsg", `{"content":"IyFBTVIKPJEXFr5meeHgAeev8AAAAIAAAAAAAAAAAAAAAAAAAAAA","duration":3,"extra":"e"}`, "source", "Android")},
		{"p2p_sight", msg("PERSON", "RC:SightMsg", `{"sightUrl":"https://rongcloud-file.example/s.mp4","content":"/9j/thumb","duration":10,"size":"123456","name":"x.mp4"}`, "source", "iOS")},
		{"team_sight_size_number", msg("GROUP", "RC:SightMsg", `{"sightUrl":"https://rongcloud-file.example/s2","content":"/9j/","duration":4,"size":654321}`, "source", "Android")},
		{"p2p_file", msg("PERSON", "RC:FileMsg", `{"name":"报告.PDF","size":"12345","type":"pdf","fileUrl":"https://rongcloud-file.example/f"}`, "source", "PC")},
		{"p2p_file_no_type", msg("PERSON", "RC:FileMsg", `{"name":"notes.TXT","size":"9","fileUrl":"https://rongcloud-file.example/f2"}`, "source", "PC")},
		{"p2p_location", msg("PERSON", "RC:LBSMsg", `{"content":"/9j/map","latitude":39.9,"longitude":116.30,"poi":"北京市海淀区","extra":""}`, "source", "iOS")},
		{"team_location_exponent", msg("GROUP", "RC:LBSMsg", `{"latitude":"1e-7","longitude":-0.5,"poi":"x"}`, "source", "iOS")},
		{"p2p_imgtext", msg("PERSON", "RC:ImgTextMsg", `{"title":"标题","content":"摘要","imageUri":"https://x.example/i.png","url":"https://x.example/page","extra":"ex"}`, "source", "Server")},
		{"p2p_reference", msg("PERSON", "RC:ReferenceMsg", `{"content":"reply","referMsgUserId":"u2","referMsg":{"content":"orig"},"objName":"RC:TxtMsg"}`, "source", "iOS")},
		{"team_combine", msg("GROUP", "RC:CombineMsg", `{"remoteUrl":"https://x.example/c.html","conversationType":1,"nameList":["a"],"summaryList":["a: hi"]}`, "source", "PC")},
		{"p2p_app_custom", msg("PERSON", "App:RedPacket", `{"amount":"1.00","note":"恭喜","extra":{"a":1}}`, "source", "Android")},
		{"p2p_app_custom_text", msg("PERSON", "App:Plain", `just text, not JSON`, "source", "Android")},
		{"p2p_unknown_rc_kind", msg("PERSON", "RC:StreamMsg", `{"content":"streamed"}`, "source", "Harmony")},
		{"team_grpntf_add", msg("GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Add","data":{"operatorNickname":"甲","targetUserIds":["u2","u3","u2",""],"targetUserDisplayNames":["乙","丙"]},"message":""}`, "source", "Server")},
		{"team_grpntf_kicked", msg("GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Kicked","data":"{\"targetUserIds\":[\"u4\"]}","message":""}`, "source", "Server")},
		{"team_grpntf_quit", msg("GROUP", "RC:GrpNtf", `{"operatorUserId":"u5","operation":"Quit","data":{"targetUserIds":["u5"],"newCreatorId":null}}`, "source", "Server")},
		{"team_grpntf_quit_no_targets", msg("GROUP", "RC:GrpNtf", `{"operatorUserId":"u5","operation":"Quit","data":""}`)},
		{"team_grpntf_dismiss", msg("GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Dismiss","data":{"operatorNickname":"甲","timestamp":1408710653000}}`, "source", "Server")},
		{"team_grpntf_transfer", msg("GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Transfer","data":"{\"oldCreatorId\":\"u1\",\"newCreatorId\":\"u6\"}"}`, "source", "Server")},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := Decode([]byte(c.body))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if len(b.Messages) == 0 || len(b.Ignored) > 0 || len(b.Recalls) > 0 {
				t.Fatalf("batch %+v: want messages only", b)
			}
			for i, m := range b.Messages {
				wantID := uid
				if i > 0 {
					wantID = m.SourceID // checked below for the group events
				}
				if m.Source != Name || m.SourceID != wantID || m.MsgID != message.MsgID(Name, m.SourceID) || m.CreateTime != 1408710653491 {
					t.Errorf("message %d: source %q id %q msgid %d time %d", i, m.Source, m.SourceID, m.MsgID, m.CreateTime)
				}
				if strings.HasPrefix(c.name, "team") && (m.GroupID != "g1" || m.TID != 0) {
					t.Errorf("team message %d: group %q tid %d, want the group id and no tid", i, m.GroupID, m.TID)
				}
			}
			checkGolden(t, c.name, lines(t, b.Messages))
		})
	}
}

// One source message acting on several members: element 0 keeps msgUID, the
// others get msgUID#i (i = position in RongCloud's array), all recallable by
// msgUID; repeats and blanks are skipped.
func TestGroupNotificationIDs(t *testing.T) {
	b, err := Decode([]byte(msg("GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Add","data":{"targetUserIds":["u2","u3","u2","","u4"]}}`)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range b.Messages {
		got = append(got, m.SourceID+"|"+m.RecallKeyOf()+"|"+m.From+"|"+m.Accid2)
	}
	want := []string{
		"596E-P5PG-4FS2-7OJK|596E-P5PG-4FS2-7OJK|u2|u1",
		"596E-P5PG-4FS2-7OJK#1|596E-P5PG-4FS2-7OJK|u3|u1",
		"596E-P5PG-4FS2-7OJK#4|596E-P5PG-4FS2-7OJK|u4|u1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if b.Messages[0].RecallKey != "" {
		t.Errorf("element 0 has RecallKey %q; it is only set when it differs from SourceID", b.Messages[0].RecallKey)
	}
}

func TestClientType(t *testing.T) {
	for in, want := range map[string]message.ClientType{
		"iOS": message.IOS, "Android": message.Android, "Websocket": message.Web, "MiniProgram": message.Web,
		"PC": message.PC, "Server": message.REST, "": source.DefaultClientType, "HarmonyOS": source.DefaultClientType,
	} {
		if got := ClientType(in); got != want {
			t.Errorf("ClientType(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestRecall(t *testing.T) {
	body := form("fromUserId", "u1", "toUserId", "u2", "objectName", "RC:RcCmd",
		"content", `{"messageUId":"5H6P-CGC6-44QR-VB3R","conversationType":1,"targetId":"u2","sentTime":1408710600000,"isAdmin":false,"isDelete":false}`,
		"channelType", "PERSON", "msgTimestamp", "1408710653491", "msgUID", "5H6Q-0000-0000-0001", "source", "iOS")
	b, err := Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []message.Recall{{Source: Name, Key: "5H6P-CGC6-44QR-VB3R", ID: "5H6Q-0000-0000-0001", Operator: "u1", Time: 1408710653491}}
	if len(b.Messages) != 0 || len(b.Ignored) != 0 || !reflect.DeepEqual(b.Recalls, want) {
		t.Fatalf("batch %+v, want exactly the recall %+v", b, want)
	}
	// A recall names the message by the msgUID it was routed with, which
	// is the recalled message's SourceID (and its notification lines' RecallKey).
	orig, err := Decode([]byte(strings.Replace(msg("PERSON", "RC:TxtMsg", `{"content":"oops"}`), "596E-P5PG-4FS2-7OJK", "5H6P-CGC6-44QR-VB3R", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if k := orig.Messages[0].RecallKeyOf(); k != want[0].Key {
		t.Errorf("the original's recall key is %q, the recall names %q", k, want[0].Key)
	}
}

func TestIgnored(t *testing.T) {
	for _, c := range []struct{ channel, objectName, content, reason string }{
		{"PERSONS", "RC:TxtMsg", `{"content":"x"}`, "discussion"},
		{"TEMPGROUP", "RC:TxtMsg", `{"content":"x"}`, "chatroom"},
		{"CUSTOMERSERVICE", "RC:TxtMsg", `{"content":"x"}`, "customer_service"},
		{"NOTIFY", "RC:TxtMsg", `{"content":"x"}`, "system"},
		{"MC", "RC:TxtMsg", `{"content":"x"}`, "public_service"},
		{"MP", "RC:TxtMsg", `{"content":"x"}`, "public_service"},
		{"ULTRAGROUP", "RC:TxtMsg", `{"content":"x"}`, "ultragroup"},
		{"SOMETHING_NEW", "RC:TxtMsg", `{"content":"x"}`, "other_channel"},
		{"PERSON", "RC:ReadNtf", `{"lastMessageSendTime":1,"type":1}`, "read_receipt"},
		{"GROUP", "RC:RRReqMsg", `{"messageUId":"x"}`, "read_receipt"},
		{"GROUP", "RC:RRRspMsg", `{}`, "read_receipt"},
		{"PERSON", "RC:TypSts", `{"typingContentType":"RC:TxtMsg"}`, "typing"},
		{"PERSON", "RC:CmdMsg", `{"name":"n","data":"d"}`, "command"},
		{"PERSON", "RC:CmdNtf", `{"name":"n","data":"d"}`, "command"},
		{"PERSON", "RC:InfoNtf", `{"message":"tip"}`, "info_notification"},
		{"PERSON", "RC:ProfileNtf", `{"operation":"o","data":"d"}`, "profile_notification"},
		{"PERSON", "RC:ContactNtf", `{"operation":"Request"}`, "contact_notification"},
		{"PERSON", "RC:SomeNewNtf", `{}`, "notification"},
		{"PERSON", "RC:SomeNewCmd", `{}`, "command"},
		{"PERSON", "RC:VCSummary", `{}`, "call_summary"},
		{"PERSON", "RC:VCInvite", `{}`, "call_signal"},
		{"PERSON", "RC:GrpNtf", `{"operation":"Add"}`, "grpntf_not_group"},
		{"GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Create","data":{"targetGroupName":"g"}}`, "grpntf_create"},
		{"GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Rename","data":{"targetGroupName":"g"}}`, "grpntf_rename"},
		{"GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Bulletin","data":{}}`, "grpntf_bulletin"},
		{"GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"SetAvatar"}`, "grpntf_other"},
		{"GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Add","data":{"targetUserIds":[]}}`, "grpntf_incomplete"},
		{"GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Transfer","data":{}}`, "grpntf_incomplete"},
	} {
		t.Run(c.channel+"/"+c.objectName+"/"+c.reason, func(t *testing.T) {
			b, err := Decode([]byte(msg(c.channel, c.objectName, c.content)))
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Messages) != 0 || len(b.Recalls) != 0 || !reflect.DeepEqual(b.Ignored, map[string]int{c.reason: 1}) {
				t.Fatalf("batch %+v, want only ignored %q", b, c.reason)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	good := msg("PERSON", "RC:TxtMsg", `{"content":"hello"}`)
	contentLast := form("fromUserId", "u1", "toUserId", "u2", "objectName", "RC:TxtMsg", "channelType", "PERSON",
		"msgTimestamp", "1408710653491", "msgUID", "596E-P5PG-4FS2-7OJK", "content", `{"content":"hello"}`)
	for _, c := range []struct{ name, body, errHas string }{
		{"empty", "", "empty body"},
		{"truncated in the content", good[:strings.Index(good, "hello")], "channelType"},
		{"truncated in the content, sent last", contentLast[:len(contentLast)-3], "not a JSON object"},
		{"truncated before channelType", good[:strings.Index(good, "channelType")], "channelType"},
		{"truncated in an escape", good[:strings.Index(good, "%7D")+2], "content"},
		{"JSON instead of a form", `{"fromUserId":"u1"}`, "channelType"},
		{"no msgUID", strings.Replace(good, "msgUID=", "x=", 1), "msgUID"},
		{"no fromUserId", strings.Replace(good, "fromUserId=", "x=", 1), "fromUserId"},
		{"no content", strings.Replace(good, "content=", "x=", 1), "content: required"},
		{"time in seconds", strings.Replace(good, "1408710653491", "1408710653", 1), "msgTimestamp"},
		{"time not a number", strings.Replace(good, "1408710653491", "soon", 1), "msgTimestamp"},
		{"not UTF-8", strings.Replace(good, "u1", "%FF", 1), "UTF-8"},
		{"text content not a string", msg("PERSON", "RC:TxtMsg", `{"content":5}`), "content: must be a string"},
		{"content an array", msg("PERSON", "RC:TxtMsg", `["hello"]`), "not a JSON object"},
		{"size not a number", msg("PERSON", "RC:FileMsg", `{"name":"a","size":"big","fileUrl":"https://x/f"}`), "size"},
		{"negative size", msg("PERSON", "RC:SightMsg", `{"sightUrl":"https://x/s","size":-1}`), "size"},
		{"duration an object", msg("PERSON", "RC:HQVCMsg", `{"remoteUrl":"https://x/v","duration":{}}`), "duration"},
		{"latitude out of range", msg("PERSON", "RC:LBSMsg", `{"latitude":91,"longitude":1}`), "latitude"},
		{"latitude not a number", msg("PERSON", "RC:LBSMsg", `{"latitude":"north","longitude":1}`), "latitude"},
		{"truncated custom object", msg("PERSON", "App:Card", `{"a":`), "not a JSON object"},
		{"truncated custom array", msg("PERSON", "App:Card", `[1,`), "not valid JSON"},
		{"recall without messageUId", msg("PERSON", "RC:RcCmd", `{"conversationType":1}`), "messageUId"},
		{"recall content truncated", msg("PERSON", "RC:RcCmd", `{"messageUId":"5H6P`), "not a JSON object"},
		{"group notification data list wrong", msg("GROUP", "RC:GrpNtf", `{"operation":"Add","data":{"targetUserIds":5}}`), "targetUserIds"},
		{"group notification truncated", msg("GROUP", "RC:GrpNtf", `{"operation":"Add","data":{"targetUse`), "not a JSON object"},
		{"user id with spaces", strings.Replace(good, "fromUserId=u1", "fromUserId=+u1", 1), "spaces"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := Decode([]byte(c.body))
			var se *source.Error
			if !errors.As(err, &se) || se.Status != http.StatusBadRequest {
				t.Fatalf("Decode = %+v, %v; want a 400 *source.Error", b, err)
			}
			if !strings.Contains(se.Msg, c.errHas) {
				t.Errorf("error %q does not say %q", se.Msg, c.errHas)
			}
			if len(b.Messages)+len(b.Recalls)+len(b.Ignored) != 0 {
				t.Errorf("an error came with a batch %+v", b)
			}
		})
	}
}

// A literal ';' is data in a RongCloud form (net/url would drop the pair).
func TestFormSemicolon(t *testing.T) {
	body := strings.Replace(msg("PERSON", "RC:TxtMsg", `{"content":"a;b"}`), "%3B", ";", 1)
	if !strings.Contains(body, ";") {
		t.Fatal("test body has no literal ';'")
	}
	b, err := Decode([]byte(body))
	if err != nil || len(b.Messages) != 1 || b.Messages[0].Body != "a;b" {
		t.Fatalf("%+v %v", b, err)
	}
}

// The routing doc's own example body, as printed (quotes and brackets not
// escaped).
func TestDocumentedExample(t *testing.T) {
	body := `fromUserId=123&toUserId=456&objectName=RC%3ATxtMsg&content=%7B"content"%3A"hello"%7D&channelType=PERSON&msgTimestamp=1408710653491&msgUID=596E-P5PG-4FS2-7OJK&groupUserIds=[543,567]`
	b, err := Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	got := lines(t, b.Messages)
	want := `{"data":{"ext":"","clientType":"32","createTime":1408710653491,"msgid":` + strconv.FormatInt(message.MsgID(Name, "596E-P5PG-4FS2-7OJK"), 10) + `,"from":"123","to":"456","body":"hello"},"type":0}` + "\n"
	if got != want {
		t.Errorf("got %s want %s", got, want)
	}
}

// The same message from a history log record decodes to the same message as
// its callback: same SourceID, msgid, time, and the same line.
func TestHistoryRecordMatchesCallback(t *testing.T) {
	record := `{"appId":"8luwapkv8689l","fromUserId":"23","targetId":"24","targetType":1,"GroupId":"","classname":"RC:ImgMsg","content":{"id":7,"content":"/9j/4AAQSBAAD/2wBDDBAYEBAQEB....","imageUri":"https://780g.oss-cn-zhangjiakou.aliyuncs.com/uploads/20220121/8f330e3258a4b7fe809ee9c72a1744e1.png"},"dateTime":"2022-01-21 15:40:28.920","timestamp":1642750828920,"msgUID":"BUFE-A62U-32C4-01I2","source":"Websocket","isSensitiveWord":"false"}`
	callback := form("fromUserId", "23", "toUserId", "24", "objectName", "RC:ImgMsg",
		"content", `{"id":7,"content":"/9j/4AAQSBAAD/2wBDDBAYEBAQEB....","imageUri":"https://780g.oss-cn-zhangjiakou.aliyuncs.com/uploads/20220121/8f330e3258a4b7fe809ee9c72a1744e1.png"}`,
		"channelType", "PERSON", "msgTimestamp", "1642750828920", "msgUID", "BUFE-A62U-32C4-01I2", "source", "Websocket")
	h, err := DecodeHistoryRecord([]byte(record))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Decode([]byte(callback))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h, c) {
		t.Fatalf("history %+v\ncallback %+v", h, c)
	}
	checkGolden(t, "history_p2p_image", lines(t, h.Messages))

	group := `{"appId":"a","fromUserId":"u1","targetId":"g1","targetType":3,"GroupId":"g1","classname":"RC:TxtMsg","content":"{\"content\":\"hi\"}","timestamp":"1642750828920","msgUID":"BUFE-A62U-32C4-01I3","source":"iOS"}`
	g, err := DecodeHistoryRecord([]byte(group))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Messages) != 1 || g.Messages[0].GroupID != "g1" || g.Messages[0].Body != "hi" || g.Messages[0].Scene != message.Team {
		t.Fatalf("group record: %+v", g)
	}
	room := `{"fromUserId":"u1","targetId":"r1","targetType":4,"classname":"RC:TxtMsg","content":{"content":"hi"},"timestamp":1642750828920,"msgUID":"X"}`
	if r, err := DecodeHistoryRecord([]byte(room)); err != nil || r.Ignored["chatroom"] != 1 {
		t.Fatalf("chat room record: %+v %v", r, err)
	}
	for _, bad := range []string{`{"fromUserId":"u1"`, `[]`, `{"targetType":1,"fromUserId":"u1","targetId":"u2","classname":"RC:TxtMsg","content":{"content":"hi"},"msgUID":"X"}`} {
		if r, err := DecodeHistoryRecord([]byte(bad)); err == nil {
			t.Errorf("record %s accepted: %+v", bad, r)
		}
	}
}

// The http-facing methods: the signature comes from the query, the body is
// the form, the answer is the shared JSON reply.
func TestSourceMethods(t *testing.T) {
	s := New("test-app-secret", 5*time.Minute)
	s.now = func() time.Time { return time.UnixMilli(1408710653491) }
	body := msg("PERSON", "RC:TxtMsg", `{"content":"hello"}`)
	r := httptest.NewRequest("POST", "/v1/callbacks/rongcloud?signTimestamp=1408710653491&nonce=14314&signature=fc2ab892862ee08b0629d2f1cd46543f08ee85c4", strings.NewReader(body))
	if err := s.Authenticate(r, []byte(body)); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Decode(r, []byte(body)); err != nil || len(b.Messages) != 1 {
		t.Fatalf("%+v %v", b, err)
	}
	if s.Name() != "rongcloud" || !reflect.DeepEqual(s.ContentTypes(), []string{"application/x-www-form-urlencoded"}) {
		t.Errorf("name %q types %v", s.Name(), s.ContentTypes())
	}
	w := httptest.NewRecorder()
	s.Reply(w, source.Reply{Status: 200, Accepted: 1})
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), []byte(`{"accepted":1,"duplicates":0}`)) {
		t.Errorf("reply %d %s", w.Code, w.Body)
	}
}
