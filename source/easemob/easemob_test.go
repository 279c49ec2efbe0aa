package easemob_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/render"
	"github.com/imbridge/imbridge/source"
	"github.com/imbridge/imbridge/source/easemob"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

const secret = "s3cr3t"

// ts is the timestamp every test body carries (2020-09-14T05:20:47.294Z).
const ts = 1600060847294

// chat is a message callback of chat_type ct whose payload is payload,
// shaped as callback_message_send.md documents it.
func chat(ct, payload string) string {
	group := ""
	if ct == "groupchat" {
		group = `"group_id":"169XXXX21545",`
	}
	return fmt.Sprintf(`{"callId":"XXXX#XXXX_8924312242322","eventType":"chat_offline","timestamp":%d,`+
		`"chat_type":%q,%s"from":"user1","to":"user2","msg_id":"8924312242322","payload":%s,`+
		`"securityVersion":"1.0.0","security":"2ca02c394bef9e7abc83958bcc3156d3","appkey":"XXXX#XXXX","host":"msync@ebs-ali-beijing-msync40"}`,
		ts, ct, group, payload)
}

// groupOp is a group_op_event, shaped as callback_group_room_*.md document it.
func groupOp(operation, operator, payload string) string {
	p := ""
	if payload != "" {
		p = `"payload":` + payload + `,`
	}
	return fmt.Sprintf(`{"callId":"XXXX#XXXX_34092a82-XXXX-XXXX-aa2e-aefeb0bb5a65","security":"0b787dc5dXXXXdeb1e9ffe8803d01eaa",%s`+
		`"appkey":"XXXX#XXXX","id":"169XXXX21545","type":"GROUP","event":"group_op_event","operation":%q,"operator":%q,"member_count":4,"timestamp":%d}`,
		p, operation, operator, ts)
}

// Payloads of every content kind, as the docs show them.
const (
	pText   = `{"ext":{},"bodies":[{"msg":"rr 测试","type":"txt"}]}`
	pImage  = `{"ext":{},"bodies":[{"filename":"image","size":{"width":746,"height":1325},"secret":"EsYYqnkREeyZAUHNhFQyIhTJxWxvGOwyx1","file_length":118179,"type":"img","url":"https://a1.easemob.com/org/app/chatfiles/65e54a4a-b821-ebde7b50cc4b"}]}`
	pImage2 = `{"ext":{},"bodies":[{"file_length":128827,"filename":"test1.JPG","size":{"height":1325,"width":746},"type":"img","url":"https://a1.easemob.com/org/app/chatfiles/65e54a4a"}]}`
	pAudio  = `{"ext":{},"bodies":[{"filename":"test1.amr","length":4,"secret":"anm","file_length":6374,"type":"audio","url":"https://a1.easemob.com/org/app/chatfiles/0637e55a"}]}`
	pVideo  = `{"ext":{},"bodies":[{"thumb_secret":"t1AE","filename":"video.mp4","size":{"width":360,"height":480},"thumb":"https://a1.easemob.com/org/app/chatfiles/b750","length":10,"secret":"uFtZ","file_length":601404,"type":"video","url":"https://a1.easemob.com/org/app/chatfiles/b85b"}]}`
	pFile   = `{"ext":{},"bodies":[{"file_length":3279,"filename":"record.md","secret":"2RNX","type":"file","url":"https://a1.easemob.com/org/app/chatfiles/d913"}]}`
	pLoc    = `{"ext":{},"bodies":[{"lng":116.32309156766605,"type":"loc","addr":"西城区西便门桥","lat":39.96612729238626}]}`
	pLocStr = `{"ext":{},"bodies":[{"lng":"116.36302","type":"loc","addr":"","lat":"39.9053"}]}`
	pCustom = `{"ext":{},"bodies":[{"customExts":[{"name":1}],"v2:customExts":{"k":"v","k1":"v1"},"customEvent":"flower","type":"custom"}]}`
	pMerged = `{"bodies":[{"combineLevel":1,"file_length":1059,"filename":"17326799853580001","msg":"当前版本过低，无法展示对应内容。","subType":"sub_combine","summary":"wzy1: 你在哪里？","title":"聊天记录","type":"txt","url":"https://a1-hsb.easemob.com/easemob-demo/testy/chatfiles/09ec7550"}],"ext":{"ease_chat_uikit_user_info":{"nickname":"公子小白有点黑"}},"from":"user1","to":"user2","type":"chat"}`
	pUnkn   = `{"ext":{},"bodies":[{"type":"unknown"}]}`
	pNoURL  = `{"ext":{},"bodies":[{"filename":"a.png","type":"img"}]}`
	pBadLoc = `{"ext":{},"bodies":[{"lng":500,"type":"loc","addr":"x","lat":39.9}]}`
	pExtStr = `{"ext":"plain ext","bodies":[{"msg":"hi","type":"txt"}]}`
	pTwo    = `{"ext":{"k":[1,2]},"bodies":[{"msg":"first","type":"txt"},{"msg":"second","type":"txt"}]}`
)

// teams maps one Easemob group to a Yunxin tid.
type teams struct{}

func (teams) TID(src, group string) (int64, bool) {
	return 900, src == easemob.Name && group == "169XXXX21545"
}
func (teams) URL(string) (string, bool) { return "", false }

func renderAll(t *testing.T, msgs []message.Message) string {
	t.Helper()
	var out bytes.Buffer
	var enc message.Encoder
	for i := range msgs {
		line, o := render.Line(nil, &enc, &msgs[i], teams{})
		if o.Held {
			t.Fatalf("message %d held: group %q unmapped", i, msgs[i].GroupID)
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	return out.String()
}

// golden compares got with testdata/golden/<name>.jsonl byte for byte.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".jsonl")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s:\n got: %s\nwant: %s", name, got, want)
	}
}

// Every content kind and every group operation that makes lines, rendered
// as Yunxin lines and compared with the golden files.
func TestGolden(t *testing.T) {
	for _, c := range []struct {
		name, body string
		n          int // lines expected
	}{
		{"p2p_text", chat("chat", pText), 1},
		{"p2p_image", chat("chat", pImage), 1},
		{"p2p_image_ext_from_filename", chat("chat", pImage2), 1},
		{"p2p_audio", chat("chat", pAudio), 1},
		{"p2p_video", chat("chat", pVideo), 1},
		{"p2p_file", chat("chat", pFile), 1},
		{"p2p_location", chat("chat", pLoc), 1},
		{"p2p_location_strings", chat("chat", pLocStr), 1},
		{"p2p_custom", chat("chat", pCustom), 1},
		{"p2p_merged", chat("chat", pMerged), 1},
		{"p2p_unknown_body", chat("chat", pUnkn), 1},
		{"p2p_image_without_url", chat("chat", pNoURL), 1},
		{"p2p_location_out_of_range", chat("chat", pBadLoc), 1},
		{"p2p_ext_string", chat("chat", pExtStr), 1},
		{"p2p_two_bodies", chat("chat", pTwo), 2},
		{"team_text", chat("groupchat", pText), 1},
		{"team_image", chat("groupchat", pImage), 1},
		{"team_audio", chat("groupchat", pAudio), 1},
		{"team_video", chat("groupchat", pVideo), 1},
		{"team_file", chat("groupchat", pFile), 1},
		{"team_location", chat("groupchat", pLoc), 1},
		{"team_custom", chat("groupchat", pCustom), 1},
		{"team_text_group_in_to", strings.Replace(strings.Replace(chat("groupchat", pText), `"group_id":"169XXXX21545",`, "", 1), `"to":"user2"`, `"to":"169XXXX21545"`, 1), 1},
		{"group_join_direct", groupOp("JOIN", "@ppAdmin", `{"member":["tst01","tst02"],"type":"DIRECT"}`), 2},
		{"group_join_invite", groupOp("JOIN", "tst0", `{"member":["tst9"],"type":"INVITE"}`), 1},
		{"group_join_apply", groupOp("JOIN", "tst", `{"member":["tst"],"type":"APPLY"}`), 1},
		{"group_leave_quit", groupOp("LEAVE", "tst", `{"member":["tst"],"type":"QUIT"}`), 1},
		{"group_leave_kick", groupOp("LEAVE", "tst", `{"member":["tst01"],"type":"KICK"}`), 1},
		{"group_leave_block", groupOp("LEAVE", "tst", `{"member":["tst02"],"type":"BLOCK"}`), 1},
		{"group_delete", groupOp("DELETE", "@ppAdmin", ""), 1},
		{"group_update_info", groupOp("UPDATE", "@ppAdmin", `{"type":"INFO","info":{"owner":"XXXX#XXXX_tst","created":"1729496598199","custom":"","description":"描述","mute":"false","mute_duration":-1,"avatar":"https://XXXX/XXXX/XXXX","title":"测试01","max_users":"200","invite_need_confirm":"true","public":"true","allow_user_invites":"false","disabled":"false","last_modified":"1729496598199"}}`), 1},
		{"group_update_announcement", groupOp("UPDATE", "tst", `{"type":"ANNOUNCEMENT","announcement":"公告"}`), 1},
		{"group_delete_announcement", groupOp("UPDATE", "tst", `{"type":"ANNOUNCEMENT"}`), 1},
		{"group_update_owner", groupOp("UPDATE", "@ppAdmin", `{"owner":"tst","new_owner":"tst01","type":"OWNER"}`), 1},
		{"group_admin_add", groupOp("ADMIN", "tst01", `{"admin":["tst028"],"type":"ADD"}`), 1},
		{"group_admin_remove", groupOp("ADMIN", "tst", `{"admin":["tst01"],"type":"REMOVE"}`), 1},
		{"group_mute_add", groupOp("MUTE", "@ppAdmin", `{"member":["tst01"],"expire_timestamp":1729585614955,"type":"ADD"}`), 1},
		{"group_mute_remove", groupOp("MUTE", "@ppAdmin", `{"member":["tst01"],"type":"REMOVE"}`), 1},
		{"group_mute_all", groupOp("UPDATE", "@ppAdmin", `{"mute":true,"type":"MUTE"}`), 1},
		{"group_unmute_all", groupOp("UPDATE", "@ppAdmin", `{"mute":false,"type":"MUTE"}`), 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := easemob.Decode([]byte(c.body))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if len(b.Messages) != c.n || len(b.Ignored) != 0 || len(b.Recalls) != 0 {
				t.Fatalf("got %d messages, ignored %v, recalls %v; want %d messages", len(b.Messages), b.Ignored, b.Recalls, c.n)
			}
			for _, m := range b.Messages {
				if err := m.Validate(); err != nil {
					t.Fatalf("invalid: %v", err)
				}
				if m.Source != easemob.Name || m.MsgID != message.MsgID(easemob.Name, m.SourceID) || m.CreateTime != ts || m.ClientType != source.DefaultClientType {
					t.Fatalf("ids, time or client type wrong: %+v", m)
				}
				if m.Scene == message.Team && (m.TID != 0 || m.GroupID != "169XXXX21545") {
					t.Fatalf("team message with TID %d, GroupID %q", m.TID, m.GroupID)
				}
			}
			golden(t, c.name, renderAll(t, b.Messages))
		})
	}
}

// The ids: a message keeps msg_id; several bodies share it as recall key;
// group events get ids derived from the event, stable across retries.
func TestIDs(t *testing.T) {
	b, err := easemob.Decode([]byte(chat("chat", pTwo)))
	if err != nil {
		t.Fatal(err)
	}
	if b.Messages[0].SourceID != "8924312242322" || b.Messages[0].MsgID != 8924312242322 || b.Messages[0].RecallKeyOf() != "8924312242322" {
		t.Errorf("first body: %+v", b.Messages[0])
	}
	if b.Messages[1].SourceID != "8924312242322#1" || b.Messages[1].RecallKey != "8924312242322" || b.Messages[1].MsgID == b.Messages[0].MsgID {
		t.Errorf("second body: %+v", b.Messages[1])
	}
	join := groupOp("JOIN", "@ppAdmin", `{"member":["tst01","tst02"],"type":"DIRECT"}`)
	b1, _ := easemob.Decode([]byte(join))
	retry := strings.Replace(join, "34092a82-XXXX", "ffffffff-XXXX", 1) // another callId, same event
	b2, _ := easemob.Decode([]byte(retry))
	if !reflect.DeepEqual(b1, b2) {
		t.Errorf("the same group event decoded twice differs:\n%+v\n%+v", b1, b2)
	}
	if got := b1.Messages[0].SourceID; got != "JOIN:DIRECT:169XXXX21545:1600060847294:tst01" {
		t.Errorf("group event SourceID %q", got)
	}
	if b1.Messages[0].MsgID == b1.Messages[1].MsgID {
		t.Error("two members of one JOIN share a msgid")
	}
}

// eventType chat and chat_offline of one message are the same canonical
// message (ingest then stores it once).
func TestChatAndChatOfflineAreOneMessage(t *testing.T) {
	off := chat("groupchat", pImage)
	up := strings.Replace(off, `"eventType":"chat_offline"`, `"eventType":"chat"`, 1)
	if up == off {
		t.Fatal("test body has no eventType")
	}
	a, err := easemob.Decode([]byte(up))
	if err != nil {
		t.Fatal(err)
	}
	b, err := easemob.Decode([]byte(off))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) || a.Messages[0].Identity().DedupKey(easemob.Name) != b.Messages[0].Identity().DedupKey(easemob.Name) {
		t.Fatalf("chat and chat_offline differ:\n%+v\n%+v", a, b)
	}
}

// A history-file record of a message gives the same canonical message as
// its callback.
func TestHistoryRecordMatchesCallback(t *testing.T) {
	for _, c := range []struct{ name, callback, record string }{
		{"p2p", chat("chat", pAudio), fmt.Sprintf(`{"msg_id":"8924312242322","timestamp":%d,"direction":"outgoing","to":"internal","from":"internal","chat_type":"chat","payload":{"bodies":[{"file_length":6374,"filename":"test1.amr","length":4,"secret":"anm","type":"audio","url":"https://a1.easemob.com/org/app/chatfiles/0637e55a"}],"ext":{},"from":"user1","to":"user2"}}`, ts)},
		{"team", chat("groupchat", pText), fmt.Sprintf(`{"msg_id":"8924312242322","timestamp":%d,"direction":"outgoing","to":"internal","from":"internal","chat_type":"groupchat","payload":{"bodies":[{"msg":"rr 测试","type":"txt"}],"ext":{},"from":"user1","to":"169XXXX21545"}}`, ts)},
	} {
		t.Run(c.name, func(t *testing.T) {
			cb, err := easemob.Decode([]byte(c.callback))
			if err != nil {
				t.Fatal(err)
			}
			h, err := easemob.DecodeHistory([]byte(c.record))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cb, h) {
				t.Fatalf("callback and history record differ:\n%+v\n%+v", cb, h)
			}
		})
	}
	b, err := easemob.DecodeHistory([]byte(`{"msg_id":"5I02W-XX-8278a","timestamp":1403099033211,"direction":"outgoing","to":"x","from":"x","chat_type":"chatroom","payload":{"bodies":[{"msg":"hi","type":"txt"}],"ext":{},"from":"a","to":"room"}}`))
	if err != nil || len(b.Messages) != 0 || b.Ignored["chatroom"] != 1 {
		t.Errorf("history chat-room record: %+v %v", b, err)
	}
	b, err = easemob.DecodeHistory([]byte(`{"msg_id":"5I02W-XX-8278a","timestamp":1403099033211,"direction":"outgoing","chat_type":"chat","payload":{"bodies":[{"action":"run","type":"cmd"}],"ext":{"key1":"value1"},"from":"a","to":"b"}}`))
	if err != nil || len(b.Messages) != 0 || b.Ignored["cmd"] != 1 {
		t.Errorf("history cmd record: %+v %v", b, err)
	}
	b, err = easemob.DecodeHistory([]byte(`{"msg_id":"5I02W-XX-8278a","timestamp":1403099033211,"direction":"outgoing","chat_type":"chat","payload":{"bodies":[{"msg":"welcome to easemob!","type":"txt"}],"ext":{"key1":"value1"},"from":"a","to":"b"}}`))
	if err != nil || len(b.Messages) != 1 || b.Messages[0].MsgID != message.MsgID(easemob.Name, "5I02W-XX-8278a") || b.Messages[0].Ext != `{"key1":"value1"}` {
		t.Errorf("history text record with a non-numeric id: %+v %v", b, err)
	}
}

func TestRecall(t *testing.T) {
	doc := `{"chat_type":"recall","callId":"XXXX#XXXX_966475585536657404","security":"ea7a867314fb0e0833d5f4f169eb4f8d","payload":{"ext":{},"ack_message_id":"966475220900644860","bodies":[]},"host":"******","appkey":"orgname#appname","from":"tst","recall_id":"966475220900644860","to":"170908972023810","eventType":"chat","msg_id":"966475585536657404","timestamp":1642589932646}`
	want := message.Recall{Source: "easemob", Key: "966475220900644860", ID: "966475585536657404", Operator: "tst", Time: 1642589932646}
	for name, body := range map[string]string{
		"documented":             doc,
		"ack_message_id instead": strings.Replace(doc, `"recall_id":"966475220900644860",`, "", 1),
	} {
		b, err := easemob.Decode([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(b.Messages) != 0 || len(b.Ignored) != 0 || !reflect.DeepEqual(b.Recalls, []message.Recall{want}) {
			t.Errorf("%s: %+v, want the recall %+v", name, b, want)
		}
	}
	noKey := strings.Replace(strings.Replace(doc, `"recall_id":"966475220900644860",`, "", 1), `"ack_message_id":"966475220900644860",`, "", 1)
	expect400(t, "recall without a key", noKey)
}

// Events that carry no chat content are counted under a fixed reason.
func TestIgnored(t *testing.T) {
	ack := func(ct string) string {
		return fmt.Sprintf(`{"chat_type":%q,"callId":"XXXX#XXXX_968665325555943556","security":"bd63","payload":{"ext":{},"ack_message_id":"968665323572037776","bodies":[]},"host":"h","appkey":"a#b","from":"tst","to":"tst1","eventType":"chat","msg_id":"968665325555943556","timestamp":1642602867853}`, ct)
	}
	info := func(info string) string {
		return groupOp("UPDATE", "@ppAdmin", `{"type":"INFO","info":`+info+`}`)
	}
	for _, c := range []struct{ name, body, reason string }{
		{"cmd", chat("chat", `{"ext":{},"bodies":[{"action":"run","type":"cmd"}]}`), "cmd"},
		{"empty text", chat("chat", `{"ext":{},"bodies":[{"msg":"","type":"txt"}]}`), "empty_text"},
		{"no bodies", chat("chat", `{"ext":{},"bodies":[]}`), "empty_message"},
		{"read ack", ack("read_ack"), "read_ack"},
		{"delivery ack", ack("delivery_ack"), "delivery_ack"},
		{"conversation ack", ack("channel_ack"), "channel_ack"},
		{"edit", ack("edit"), "edit"},
		{"notify", ack("notify"), "notify"},
		{"roster", ack("roster"), "roster"},
		{"old muc shape", ack("muc"), "muc_legacy"},
		{"unknown chat_type", ack("something_new"), "unknown_chat_type"},
		{"login", `{"callId":"XXXX#XXXX_25b64a81","reason":"login","security":"2c6d","os":"ios","ip":"x","host":"h","appkey":"a#b","user":"a#b_u@easemob.com/ios_6d5","version":"3.8.9.1","timestamp":1642585154644,"status":"online"}`, "user_status"},
		{"no kind at all", `{"callId":"a","security":"b","timestamp":1642585154644}`, "unknown_event"},
		{"chat room by payload.type", chat("groupchat", `{"ext":{},"bodies":[{"msg":"hi","type":"txt"}],"type":"chatroom"}`), "chatroom"},
		{"chat room by content_type", strings.Replace(chat("groupchat", pText), `"appkey"`, `"content_type":"chat:room:text","appkey"`, 1), "chatroom"},
		{"chat room op", strings.Replace(groupOp("JOIN", "u", `{"member":["u"],"type":"DIRECT"}`), `"type":"GROUP"`, `"type":"CHATROOM"`, 1), "chatroom"},
		{"unknown op target", strings.Replace(groupOp("JOIN", "u", `{"member":["u"],"type":"DIRECT"}`), `"type":"GROUP"`, `"type":"THREAD"`, 1), "unknown_group_op"},
		{"members gone with the group", groupOp("LEAVE", "@ppAdmin", `{"member":["wzy","wzy2"],"type":"DELETE"}`), "group_dismiss_leave"},
		{"blocklist add", groupOp("BLOCK", "tst", `{"member":["tst02"],"type":"ADD"}`), "group_blocklist"},
		{"blocklist remove", groupOp("BLOCK", "tst", `{"member":["tst02"],"type":"REMOVE"}`), "group_blocklist"},
		{"allowlist add", groupOp("WHITE", "tst", `{"member":["tst02"],"type":"ADD"}`), "group_allowlist"},
		{"create", groupOp("CREATE", "tst", `{"role":{"tst":"owner"},"member":["abc"],"info":{"title":"t"}}`), "group_create"},
		{"disable", groupOp("UPDATE", "@ppAdmin", `{"type":"DISABLE"}`), "group_disable"},
		{"unknown operation", groupOp("RENAME", "tst", `{"type":"X"}`), "unknown_group_op"},
		{"unknown join type", groupOp("JOIN", "tst", `{"member":["a"],"type":"QR_CODE"}`), "unknown_group_op"},
		{"title only", info(`{"title":"新名字"}`), "group_title"},
		{"nothing mapped", info(`{"max_users":"200"}`), "group_info_unmapped"},
		{"join of nobody", groupOp("JOIN", "tst", `{"member":[],"type":"DIRECT"}`), "group_op_empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := easemob.Decode([]byte(c.body))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if len(b.Messages) != 0 || len(b.Recalls) != 0 || !reflect.DeepEqual(b.Ignored, map[string]int{c.reason: 1}) {
				t.Fatalf("got %d messages, %d recalls, ignored %v; want ignored {%s:1}", len(b.Messages), len(b.Recalls), b.Ignored, c.reason)
			}
		})
	}
}

func expect400(t *testing.T, name, body string) {
	t.Helper()
	b, err := easemob.Decode([]byte(body))
	var se *source.Error
	if !errors.As(err, &se) || se.Status != 400 || se.Msg == "" {
		t.Errorf("%s: error %v, want a 400 *source.Error", name, err)
	}
	if len(b.Messages)+len(b.Recalls)+len(b.Ignored) != 0 {
		t.Errorf("%s: a refused body returned %+v", name, b)
	}
}

// Malformed bodies are 400s naming what is wrong, and return nothing.
func TestMalformed(t *testing.T) {
	text := chat("chat", pText)
	for _, c := range []struct{ name, body, mention string }{
		{"truncated", text[:len(text)/2], "JSON"},
		{"empty", "", "JSON"},
		{"array", "[" + text + "]", "object"},
		{"trailing data", text + "{}", "trailing"},
		{"invalid UTF-8", strings.Replace(text, "rr", "r\xffr", 1), "UTF-8"},
		{"payload not an object", chat("chat", `"text"`), "payload"},
		{"bodies not an array", chat("chat", `{"ext":{},"bodies":{"msg":"rr","type":"txt"}}`), "payload.bodies"},
		{"body not an object", chat("chat", `{"ext":{},"bodies":["rr"]}`), "payload.bodies[0]"},
		{"msg a number", chat("chat", `{"ext":{},"bodies":[{"msg":5,"type":"txt"}]}`), "payload.bodies[0].msg"},
		{"type a number", chat("chat", `{"ext":{},"bodies":[{"msg":"x","type":1}]}`), "payload.bodies[0].type"},
		{"file_length not a number", chat("chat", `{"ext":{},"bodies":[{"file_length":"big","filename":"a","type":"file","url":"u"}]}`), "file_length"},
		{"size not an object", chat("chat", `{"ext":{},"bodies":[{"size":7,"type":"img","url":"u"}]}`), "size"},
		{"length not a number", chat("chat", `{"ext":{},"bodies":[{"length":true,"type":"audio","url":"u"}]}`), "length"},
		{"lat not a number", chat("chat", `{"ext":{},"bodies":[{"lat":"north","lng":1,"type":"loc"}]}`), "lat"},
		{"no payload", strings.Replace(text, `"payload":`+pText+`,`, "", 1), "payload"},
		{"no msg_id", strings.Replace(text, `"msg_id":"8924312242322",`, "", 1), "msg_id"},
		{"msg_id an object", strings.Replace(text, `"msg_id":"8924312242322"`, `"msg_id":{}`, 1), "msg_id"},
		{"no timestamp", strings.Replace(text, fmt.Sprintf(`"timestamp":%d,`, ts), "", 1), "timestamp"},
		{"timestamp text", strings.Replace(text, fmt.Sprintf(`"timestamp":%d`, ts), `"timestamp":"yesterday"`, 1), "timestamp"},
		{"timestamp in seconds", strings.Replace(text, fmt.Sprintf(`"timestamp":%d`, ts), `"timestamp":1600060847`, 1), "createTime"},
		{"no sender", strings.Replace(text, `"from":"user1",`, "", 1), "from"},
		{"no receiver", strings.Replace(text, `"to":"user2",`, "", 1), "to"},
		{"no group", strings.Replace(strings.Replace(chat("groupchat", pText), `"group_id":"169XXXX21545",`, "", 1), `"to":"user2",`, "", 1), "group_id"},
		{"chat_type a number", strings.Replace(text, `"chat_type":"chat"`, `"chat_type":1`, 1), "chat_type"},
		{"group op without id", strings.Replace(groupOp("DELETE", "@ppAdmin", ""), `"id":"169XXXX21545",`, "", 1), "id"},
		{"group op members not a list", groupOp("JOIN", "a", `{"member":{"a":1},"type":"DIRECT"}`), "payload.member"},
		{"join without operator", groupOp("JOIN", "", `{"member":["a"],"type":"DIRECT"}`), "operator"},
		{"owner without new owner", groupOp("UPDATE", "@ppAdmin", `{"owner":"tst","type":"OWNER"}`), "new_owner"},
		{"mute-all without mute", groupOp("UPDATE", "@ppAdmin", `{"type":"MUTE"}`), "payload.mute"},
		{"mute-all not a bool", groupOp("UPDATE", "@ppAdmin", `{"type":"MUTE","mute":"perhaps"}`), "payload.mute"},
		{"info without info", groupOp("UPDATE", "@ppAdmin", `{"type":"INFO"}`), "payload.info"},
		{"info description a number", groupOp("UPDATE", "@ppAdmin", `{"type":"INFO","info":{"description":5}}`), "payload.info.description"},
		{"member with spaces", groupOp("MUTE", "@ppAdmin", `{"member":[" a"],"type":"ADD"}`), "accid2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			expect400(t, c.name, c.body)
			_, err := easemob.Decode([]byte(c.body))
			if err != nil && !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %q does not mention %q", err, c.mention)
			}
		})
	}
}

// The signature, with the test vector md5("XXXX#XXXX_8924312242322" +
// "s3cr3t" + "1600060847294") computed independently (coreutils md5sum);
// Easemob publishes no example with its secret.
func TestSignature(t *testing.T) {
	if got := easemob.Signature("XXXX#XXXX_8924312242322", secret, "1600060847294"); got != "3b35c0c2ff15699432c4a36c7193c1e9" {
		t.Fatalf("signature %s", got)
	}
}

// sign sets body's security for secret.
func sign(body, callID string, ts int64) string {
	sig := easemob.Signature(callID, secret, fmt.Sprint(ts))
	return replaceField(body, "security", sig)
}

func replaceField(body, key, value string) string {
	i := strings.Index(body, `"`+key+`":"`)
	if i < 0 {
		panic("no " + key)
	}
	j := i + len(key) + 4
	k := strings.IndexByte(body[j:], '"')
	return body[:j] + value + body[j+k:]
}

func TestVerify(t *testing.T) {
	now := time.UnixMilli(ts).Add(3 * time.Second)
	good := sign(chat("chat", pText), "XXXX#XXXX_8924312242322", ts)
	for _, c := range []struct {
		name    string
		body    string
		secret  string
		now     time.Time
		skew    time.Duration
		status  int // 0: accepted
		mention string
	}{
		{"good", good, secret, now, 10 * time.Minute, 0, ""},
		{"upper-case hex", strings.ToUpper(good[:0]) + replaceField(good, "security", strings.ToUpper(easemob.Signature("XXXX#XXXX_8924312242322", secret, fmt.Sprint(ts)))), secret, now, 10 * time.Minute, 0, ""},
		{"timestamp as a string", strings.Replace(good, fmt.Sprintf(`"timestamp":%d`, ts), fmt.Sprintf(`"timestamp":"%d"`, ts), 1), secret, now, 10 * time.Minute, 0, ""},
		{"wrong secret", good, "other", now, 10 * time.Minute, 401, "security does not match"},
		{"tampered callId", strings.Replace(good, "8924312242322\",\"eventType", "8924312242323\",\"eventType", 1), secret, now, 10 * time.Minute, 401, "security does not match"},
		{"no security", strings.Replace(good, `"security":"`, `"securityX":"`, 1), secret, now, 10 * time.Minute, 401, "security missing"},
		{"no callId", strings.Replace(good, `"callId":`, `"callIdX":`, 1), secret, now, 10 * time.Minute, 401, "callId missing"},
		{"no timestamp", strings.Replace(good, `"timestamp":`, `"timestampX":`, 1), secret, now, 10 * time.Minute, 401, "timestamp missing"},
		{"stale", good, secret, now.Add(11 * time.Minute), 10 * time.Minute, 401, "max_skew"},
		{"from the future", good, secret, now.Add(-11 * time.Minute), 10 * time.Minute, 401, "max_skew"},
		{"old but no skew check", good, secret, now.Add(48 * time.Hour), 0, 0, ""},
		{"timestamp written as a float", strings.Replace(good, fmt.Sprintf(`"timestamp":%d`, ts), `"timestamp":1.600060847294e+12`, 1), secret, now, 10 * time.Minute, 400, "timestamp"},
		{"truncated", good[:100], secret, now, 10 * time.Minute, 400, "JSON"},
		{"security a number", strings.Replace(good, `"security":"`, `"security":5,"x":"`, 1), secret, now, 10 * time.Minute, 400, "security"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := easemob.Verify([]byte(c.body), c.secret, c.now, c.skew)
			if c.status == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var se *source.Error
			if !errors.As(err, &se) || se.Status != c.status || !strings.Contains(se.Msg, c.mention) {
				t.Fatalf("error %v, want %d mentioning %q", err, c.status, c.mention)
			}
		})
	}
	// The source's Authenticate is Verify with the configured secret.
	s := easemob.New(secret, 10*time.Minute)
	if err := s.Authenticate(httptest.NewRequest("POST", "/", nil), []byte(good)); err == nil {
		t.Error("a body signed in 2020 passed the freshness check against the real clock")
	}
	if err := easemob.New(secret, 0).Authenticate(nil, []byte(good)); err != nil {
		t.Errorf("max_skew 0: %v", err)
	}
}

// Replies stay below Easemob's 1000-character limit.
func TestReplyIsShort(t *testing.T) {
	w := httptest.NewRecorder()
	easemob.New(secret, 0).Reply(w, source.Reply{Status: 400, Err: &source.Error{Status: 400, Msg: strings.Repeat("长", 2000)}})
	if w.Code != 400 || len([]rune(w.Body.String())) >= 1000 || !strings.HasPrefix(w.Body.String(), `{"error":"长`) {
		t.Errorf("reply %d %d chars: %.80s", w.Code, len([]rune(w.Body.String())), w.Body.String())
	}
	w = httptest.NewRecorder()
	easemob.New(secret, 0).Reply(w, source.Reply{Status: 200, Accepted: 1})
	if w.Code != 200 || w.Body.String() != `{"accepted":1,"duplicates":0}` {
		t.Errorf("reply %d %s", w.Code, w.Body.String())
	}
}
