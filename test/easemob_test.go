package test

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/message"
)

const emSecret = "em-e2e-rule-secret"

// emSigned is an Easemob callback body signed as Easemob signs it:
// security = md5hex(callId + secret + timestamp).
func emSigned(secret, callID string, ts int64, rest string) string {
	sum := md5.Sum([]byte(callID + secret + strconv.FormatInt(ts, 10)))
	return fmt.Sprintf(`{"callId":%q,"security":%q,"timestamp":%d,%s}`, callID, hex.EncodeToString(sum[:]), ts, rest)
}

// emMsg is a message callback (callback_message_send.md), signed.
func emMsg(eventType, chatType, id string, ts int64, from, to, group, payload string) string {
	return emMsgSignedWith(emSecret, eventType, chatType, id, ts, from, to, group, payload)
}

func emMsgSignedWith(secret, eventType, chatType, id string, ts int64, from, to, group, payload string) string {
	g := ""
	if group != "" {
		g = fmt.Sprintf(`"group_id":%q,`, group)
	}
	return emSigned(secret, "o#a_"+id, ts, fmt.Sprintf(`"eventType":%q,"chat_type":%q,%s"from":%q,"to":%q,"msg_id":%q,"payload":%s,"securityVersion":"1.0.0","appkey":"o#a","host":"msync@h"`,
		eventType, chatType, g, from, to, id, payload))
}

// emOp is a group_op_event (callback_group_room_*.md), signed.
func emOp(group, operation, operator string, ts int64, payload string) string {
	p := ""
	if payload != "" {
		p = `"payload":` + payload + `,`
	}
	return emSigned(emSecret, fmt.Sprintf("o#a_%s-%d", operation, ts), ts, fmt.Sprintf(`%s"appkey":"o#a","id":%q,"type":"GROUP","event":"group_op_event","operation":%q,"operator":%q`,
		p, group, operation, operator))
}

func emPost(t *testing.T, base, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/callbacks/easemob", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return send(t, req)
}

// emLines is every line served from cursor 0, to a puller of its own.
func emLines(t *testing.T, base string) map[string]int { return servedLines(t, base, "easemob-e2e") }

func emTeamMap(t *testing.T, base, group string, tid int64) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/admin/maps/team",
		strings.NewReader(fmt.Sprintf(`[{"Source":"easemob","GroupID":%q,"TID":%d}]`, group, tid)))
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

func TestEasemobCallbacksEndToEnd(t *testing.T) {
	s := startServer(t, t.TempDir(), "", "IMBRIDGE_SOURCES_EASEMOB_SECRET="+emSecret, "IMBRIDGE_ADMIN_TOKEN=admin-secret")
	emTeamMap(t, s.base, "g-mapped", 901)

	t0 := time.Now().UnixMilli()
	want := map[string]bool{}
	expect := func(line string) { want[line] = true }
	post := func(what, body string, status int, mention string) {
		t.Helper()
		code, reply := emPost(t, s.base, body)
		if code != status || !strings.Contains(reply, mention) || len(reply) >= 1000 {
			t.Errorf("%s: %d %s, want %d with %q", what, code, reply, status, mention)
		}
	}
	p2p := func(id string, ts int64, rest string) string {
		return fmt.Sprintf(`"clientType":"32","createTime":%d,"msgid":%s,"from":"u1","to":"u2"%s`, ts, id, rest)
	}

	// Every message kind, one-to-one.
	type kind struct {
		name, payload, line string
	}
	kinds := []kind{
		{"text", `{"ext":{},"bodies":[{"msg":"你好","type":"txt"}]}`,
			`{"data":{"ext":"",%s,"body":"你好"},"type":0}`},
		{"image", `{"ext":{},"bodies":[{"filename":"a.jpg","size":{"width":746,"height":1325},"secret":"EsYY","file_length":118179,"type":"img","url":"https://a1.easemob.com/o/a/chatfiles/img1"}]}`,
			`{"data":{"ext":"",%s,"attach":"{\"h\":1325,\"ext\":\"jpg\",\"size\":118179,\"w\":746,\"name\":\"a.jpg\",\"url\":\"https://a1.easemob.com/o/a/chatfiles/img1\"}"},"type":1}`},
		{"audio", `{"ext":{},"bodies":[{"filename":"audio.amr","length":4,"secret":"anm","file_length":6374,"type":"audio","url":"https://a1.easemob.com/o/a/chatfiles/aud1"}]}`,
			`{"data":{"ext":"",%s,"attach":"{\"size\":6374,\"ext\":\"amr\",\"dur\":4000,\"url\":\"https://a1.easemob.com/o/a/chatfiles/aud1\"}"},"type":2}`},
		{"video", `{"ext":{},"bodies":[{"thumb_secret":"t1","filename":"v.mp4","size":{"width":360,"height":480},"thumb":"https://a1.easemob.com/o/a/chatfiles/th1","length":10,"secret":"uF","file_length":601404,"type":"video","url":"https://a1.easemob.com/o/a/chatfiles/vid1"}]}`,
			`{"data":{"ext":"",%s,"attach":"{\"h\":480,\"w\":360,\"size\":601404,\"ext\":\"mp4\",\"dur\":10000,\"name\":\"v.mp4\",\"url\":\"https://a1.easemob.com/o/a/chatfiles/vid1\"}"},"type":3}`},
		{"file", `{"ext":{},"bodies":[{"file_length":3279,"filename":"record.md","secret":"2R","type":"file","url":"https://a1.easemob.com/o/a/chatfiles/file1"}]}`,
			`{"data":{"ext":"",%s,"attach":"{\"size\":3279,\"ext\":\"md\",\"name\":\"record.md\",\"url\":\"https://a1.easemob.com/o/a/chatfiles/file1\"}"},"type":6}`},
	}
	var id int64 = 100000
	for _, k := range kinds {
		id++
		ids, ts := strconv.FormatInt(id, 10), t0+id%1000
		post(k.name, emMsg("chat", "chat", ids, ts, "u1", "u2", "", k.payload), 200, `"accepted":1`)
		expect(fmt.Sprintf(k.line, p2p(ids, ts, "")))
		if k.name == "text" { // the same message again as chat_offline: stored once
			post("text as chat_offline", emMsg("chat_offline", "chat", ids, ts, "u1", "u2", "", k.payload), 200, `"duplicates":1`)
		}
	}
	// Location, custom and merged messages put attach first.
	for _, k := range []kind{
		{"location", `{"ext":{},"bodies":[{"lng":116.32309156766605,"type":"loc","addr":"西便门","lat":39.96612729238626}]}`,
			`{"data":{"attach":"{\"lng\":\"116.32309156766605\",\"title\":\"西便门\",\"lat\":\"39.96612729238626\"}",%s},"type":4}`},
		{"custom", `{"ext":{},"bodies":[{"customEvent":"flower","v2:customExts":{"k":"v"},"type":"custom"}]}`,
			`{"data":{"attach":{"customEvent":"flower","v2:customExts":{"k":"v"},"type":"custom"},%s},"type":100}`},
		{"merged", `{"bodies":[{"combineLevel":1,"file_length":1059,"filename":"1732","msg":"当前版本过低","subType":"sub_combine","summary":"a: 你在哪里？","title":"聊天记录","type":"txt","url":"https://a1.easemob.com/o/a/chatfiles/comb1"}],"ext":{"k":"v"},"from":"u1","to":"u2","type":"chat"}`,
			`{"data":{"attach":{"combineLevel":1,"file_length":1059,"filename":"1732","msg":"当前版本过低","subType":"sub_combine","summary":"a: 你在哪里？","title":"聊天记录","type":"txt","url":"https://a1.easemob.com/o/a/chatfiles/comb1"},%s},"type":100}`},
	} {
		id++
		ids, ts := strconv.FormatInt(id, 10), t0+id%1000
		post(k.name, emMsg("chat", "chat", ids, ts, "u1", "u2", "", k.payload), 200, `"accepted":1`)
		ext := `""`
		if k.name == "merged" {
			ext = `"{\"k\":\"v\"}"`
		}
		expect(fmt.Sprintf(k.line, fmt.Sprintf(`"clientType":"32","createTime":%d,"ext":%s,"msgid":%s,"from":"u1","to":"u2"`, ts, ext, ids)))
	}

	// A group message of a mapped group, and one of a group mapped later.
	id++
	teamTS := t0 + id%1000
	post("team text", emMsg("chat", "groupchat", strconv.FormatInt(id, 10), teamTS, "u1", "u2", "g-mapped", `{"ext":{},"bodies":[{"msg":"大家好","type":"txt"}]}`), 200, `"accepted":1`)
	expect(fmt.Sprintf(`{"data":{"ext":"","createTime":%d,"clientType":32,"msgid":%d,"accid":"u1","body":"大家好","tid":901},"type":0}`, teamTS, id))
	id++
	heldID, heldTS := id, t0+id%1000
	post("team text, unmapped group", emMsg("chat", "groupchat", strconv.FormatInt(id, 10), heldTS, "u1", "g-held", "g-held", `{"ext":{},"bodies":[{"msg":"稍后","type":"txt"}]}`), 200, `"accepted":1`)
	heldLine := fmt.Sprintf(`{"data":{"ext":"","createTime":%d,"clientType":32,"msgid":%d,"accid":"u1","body":"稍后","tid":902},"type":0}`, heldTS, heldID)

	// A message and its recall: the message is never served.
	id++
	recalled := strconv.FormatInt(id, 10)
	post("message to recall", emMsg("chat", "chat", recalled, t0+id%1000, "u1", "u2", "", `{"ext":{},"bodies":[{"msg":"oops","type":"txt"}]}`), 200, `"accepted":1`)
	id++
	post("recall", emSigned(emSecret, "o#a_"+strconv.FormatInt(id, 10), t0+id%1000, fmt.Sprintf(
		`"chat_type":"recall","payload":{"ext":{},"ack_message_id":%q,"bodies":[]},"host":"h","appkey":"o#a","from":"u1","recall_id":%q,"to":"u2","eventType":"chat","msg_id":"%d"`, recalled, recalled, id)),
		200, `"recalls":1`)

	// Group operations on the mapped group.
	gts := t0 + 500
	op := func(what, operation, operator, payload, mention string, lines ...string) {
		t.Helper()
		gts++
		post(what, emOp("g-mapped", operation, operator, gts, payload), 200, mention)
		for _, l := range lines {
			expect(l)
		}
	}
	// Each op() call's lines are built before it runs and moves gts on by
	// one: gts+1 is that event's timestamp.
	pair := func(accid2 string) string {
		return fmt.Sprintf(`"accid2":%q,"createTime":%d,"clientType":32`, accid2, gts+1)
	}
	plain := func() string { return fmt.Sprintf(`"createTime":%d,"clientType":32`, gts+1) }
	key := func(op, kind, member string) string {
		k := fmt.Sprintf("%s:%s:g-mapped:%d", op, kind, gts+1)
		if member != "" {
			k += ":" + member
		}
		return k
	}
	// Notification lines in the documented key order.
	line := func(typ int, head, sourceID, accid string) string {
		return fmt.Sprintf(`{"data":{%s,"msgid":%d,"accid":%q,"tid":901},"type":%d}`, head, message.MsgID("easemob", sourceID), accid, typ)
	}
	op("join", "JOIN", "@ppAdmin", `{"member":["m1","m2"],"type":"DIRECT"}`, `"accepted":2`,
		line(101, pair("@ppAdmin"), key("JOIN", "DIRECT", "m1"), "m1"), line(101, pair("@ppAdmin"), key("JOIN", "DIRECT", "m2"), "m2"))
	op("quit", "LEAVE", "m1", `{"member":["m1"],"type":"QUIT"}`, `"accepted":1`,
		line(109, plain(), key("LEAVE", "QUIT", "m1"), "m1"))
	op("kick", "LEAVE", "owner1", `{"member":["m2"],"type":"KICK"}`, `"accepted":1`,
		line(102, pair("m2"), key("LEAVE", "KICK", "m2"), "owner1"))
	op("info", "UPDATE", "owner1", `{"type":"INFO","info":{"description":"描述","avatar":"https://x.example/a.png","title":"新名字"}}`, `"accepted":1`,
		line(107, plain()+`,"tinfo":{"14":"描述","20":"https://x.example/a.png","tid":901}`, key("UPDATE", "INFO", ""), "owner1"))
	op("announcement", "UPDATE", "owner1", `{"type":"ANNOUNCEMENT","announcement":"公告"}`, `"accepted":1`,
		line(107, plain()+`,"tinfo":{"15":"公告","tid":901}`, key("UPDATE", "ANNOUNCEMENT", ""), "owner1"))
	op("owner", "UPDATE", "@ppAdmin", `{"owner":"owner1","new_owner":"m3","type":"OWNER"}`, `"accepted":1`,
		line(108, pair("m3"), key("UPDATE", "OWNER", ""), "owner1"))
	op("admin add", "ADMIN", "m3", `{"admin":["m4"],"type":"ADD"}`, `"accepted":1`,
		line(105, pair("m4"), key("ADMIN", "ADD", "m4"), "m3"))
	op("admin remove", "ADMIN", "m3", `{"admin":["m4"],"type":"REMOVE"}`, `"accepted":1`,
		line(106, pair("m4"), key("ADMIN", "REMOVE", "m4"), "m3"))
	op("mute", "MUTE", "m3", `{"member":["m4"],"expire_timestamp":1729585614955,"type":"ADD"}`, `"accepted":1`,
		line(103, pair("m4"), key("MUTE", "ADD", "m4"), "m3"))
	op("unmute", "MUTE", "m3", `{"member":["m4"],"type":"REMOVE"}`, `"accepted":1`,
		line(104, pair("m4"), key("MUTE", "REMOVE", "m4"), "m3"))
	op("mute all", "UPDATE", "m3", `{"mute":true,"type":"MUTE"}`, `"accepted":1`,
		line(107, plain()+`,"tinfo":{"17":1,"tid":901}`, key("UPDATE", "MUTE", ""), "m3"))
	op("blocklist", "BLOCK", "m3", `{"member":["m5"],"type":"ADD"}`, `"ignored":1`)
	op("members leaving a dismissed group", "LEAVE", "m3", `{"member":["m3","m4"],"type":"DELETE"}`, `"ignored":1`)
	op("dismiss", "DELETE", "m3", "", `"accepted":1`,
		line(110, plain(), key("DELETE", "", ""), "m3"))

	// Kinds without chat content: answered 200, counted, not stored.
	id++
	post("cmd", emMsg("chat", "chat", strconv.FormatInt(id, 10), t0+id%1000, "u1", "u2", "", `{"ext":{},"bodies":[{"action":"run","type":"cmd"}]}`), 200, `"ignored":1`)
	id++
	post("read ack", emSigned(emSecret, "o#a_"+strconv.FormatInt(id, 10), t0+id%1000, fmt.Sprintf(`"chat_type":"read_ack","payload":{"ext":{},"ack_message_id":"100001","bodies":[]},"from":"u2","to":"u1","eventType":"chat","msg_id":"%d"`, id)), 200, `"ignored":1`)
	id++
	post("chat room message", emMsg("chat", "groupchat", strconv.FormatInt(id, 10), t0+id%1000, "u1", "room1", "room1", `{"ext":{},"bodies":[{"msg":"room","type":"txt"}],"type":"chatroom"}`), 200, `"ignored":1`)

	// Refused requests store nothing.
	id++
	post("wrong signature", emMsgSignedWith("not-the-secret", "chat", "chat", strconv.FormatInt(id, 10), t0+id%1000, "u1", "u2", "", `{"ext":{},"bodies":[{"msg":"forged","type":"txt"}]}`), 401, "security does not match")
	id++
	post("stale timestamp", emMsg("chat", "chat", strconv.FormatInt(id, 10), t0-time.Hour.Milliseconds(), "u1", "u2", "", `{"ext":{},"bodies":[{"msg":"late","type":"txt"}]}`), 401, "max_skew")
	id++
	good := emMsg("chat", "chat", strconv.FormatInt(id, 10), t0+id%1000, "u1", "u2", "", `{"ext":{},"bodies":[{"msg":"cut","type":"txt"}]}`)
	post("truncated body", good[:len(good)-40], 400, `"error":`)
	id++
	post("malformed body", emMsg("chat", "chat", strconv.FormatInt(id, 10), t0+id%1000, "u1", "u2", "", `{"ext":{},"bodies":[{"msg":5,"type":"txt"}]}`), 400, "payload.bodies[0].msg")

	// Exactly the expected lines are served: the recalled message, the
	// ignored kinds, the refused requests and the unmapped group's message
	// are not.
	var got map[string]int
	equal := func() bool {
		got = emLines(t, s.base)
		if len(got) != len(want) {
			return false
		}
		for l, n := range got {
			if n != 1 || !want[l] {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(time.Minute)
	for !equal() {
		if time.Now().After(deadline) {
			t.Fatalf("served lines differ from the expected ones:\n%s", emDiff(got, want))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The held message appears once its group is mapped, with the mapped tid.
	emTeamMap(t, s.base, "g-held", 902)
	want[heldLine] = true
	deadline = time.Now().Add(time.Minute)
	for !equal() {
		if time.Now().After(deadline) {
			t.Fatalf("after mapping g-held:\n%s", emDiff(got, want))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func emDiff(got map[string]int, want map[string]bool) string {
	var out []string
	for l, n := range got {
		if !want[l] {
			out = append(out, "unexpected: "+l)
		} else if n != 1 {
			out = append(out, fmt.Sprintf("served %d times: %s", n, l))
		}
	}
	for l := range want {
		if got[l] == 0 {
			out = append(out, "missing:    "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
