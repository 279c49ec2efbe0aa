package test

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/message"
)

const rcSecret = "rc-e2e-app-secret"

// rcPost posts a RongCloud routing form, signed as RongCloud signs it:
// ?nonce=…&signTimestamp=<ms>&signature=sha1hex(secret + nonce + signTimestamp).
func rcPost(t *testing.T, base, secret string, at time.Time, body string) (int, string) {
	t.Helper()
	nonce := strconv.FormatInt(at.UnixNano()%1e9, 10)
	ts := strconv.FormatInt(at.UnixMilli(), 10)
	sum := sha1.Sum([]byte(secret + nonce + ts))
	q := url.Values{"nonce": {nonce}, "signTimestamp": {ts}, "signature": {hex.EncodeToString(sum[:])}}
	req, _ := http.NewRequest("POST", base+"/v1/callbacks/rongcloud?"+q.Encode(), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "RongCloud/1.0")
	return send(t, req)
}

// rcForm is a routed message's form body, fields in the documented order.
func rcForm(uid, channel, from, to, objectName, content, platform string, ts int64) string {
	v := []string{"fromUserId", from, "toUserId", to, "objectName", objectName, "content", content,
		"channelType", channel, "msgTimestamp", strconv.FormatInt(ts, 10), "msgUID", uid, "sensitiveType", "0", "source", platform}
	if channel == "GROUP" {
		v = append(v, "groupUserIds", "")
	}
	var b strings.Builder
	for i := 0; i < len(v); i += 2 {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(v[i] + "=" + url.QueryEscape(v[i+1]))
	}
	return b.String()
}

// rcLines pulls every line served from cursor 0 with a puller of its own.
func rcLines(t *testing.T, base string) map[string]int { return servedLines(t, base, "rongcloud-e2e") }

func rcID(uid string) string { return strconv.FormatInt(message.MsgID("rongcloud", uid), 10) }

func TestRongCloudCallbacksEndToEnd(t *testing.T) {
	s := startServer(t, t.TempDir(), "", "IMBRIDGE_SOURCES_RONGCLOUD_APP_SECRET="+rcSecret, "IMBRIDGE_ADMIN_TOKEN=admin-secret")
	const ts = int64(1700000000123)

	// Refused requests: their status, their error, and nothing stored.
	good := rcForm("RC-BAD-1", "PERSON", "bad", "worse", "RC:TxtMsg", `{"content":"refused"}`, "iOS", ts)
	for _, c := range []struct {
		name, secret string
		at           time.Time
		body         string
		status       int
		want         string
	}{
		{"wrong signature", "not-the-secret", time.Now(), good, 401, "wrong signature"},
		{"stale signTimestamp", rcSecret, time.Now().Add(-10 * time.Minute), good, 401, "max_skew"},
		{"truncated body", rcSecret, time.Now(), good[:strings.Index(good, "refused")], 400, "is the body complete"},
	} {
		code, resp := rcPost(t, s.base, c.secret, c.at, c.body)
		if code != c.status || !strings.HasPrefix(resp, `{"error":`) || !strings.Contains(resp, c.want) {
			t.Errorf("%s: got %d %s, want %d with an error saying %q", c.name, code, resp, c.status, c.want)
		}
	}

	// Every kind: the body, the reply it gets, the lines it gives (team
	// lines with the tid of the mapping written below).
	type rcCase struct {
		uid, channel, objectName, content, platform string
		reply                                       string
		lines                                       []string
	}
	p2p := func(uid, objectName, content, platform, line string) rcCase {
		c := rcCase{uid: uid, channel: "PERSON", objectName: objectName, content: content, platform: platform, reply: `{"accepted":1,"duplicates":0}`}
		if line != "" {
			c.lines = []string{strings.ReplaceAll(line, "MSGID", rcID(uid))}
		}
		return c
	}
	team := func(uid, objectName, content, platform string, lines ...string) rcCase {
		c := rcCase{uid: uid, channel: "GROUP", objectName: objectName, content: content, platform: platform,
			reply: fmt.Sprintf(`{"accepted":%d,"duplicates":0}`, len(lines))}
		for i, l := range lines {
			id := uid
			if i > 0 {
				id = uid + "#" + strconv.Itoa(i)
			}
			c.lines = append(c.lines, strings.ReplaceAll(l, "MSGID", rcID(id)))
		}
		return c
	}
	const tm = `"createTime":1700000000123`
	cases := []rcCase{
		// Team cases first: once the last p2p line is served, every team
		// message before it has been loaded (and is held).
		team("RC-T-TEXT", "RC:TxtMsg", `{"content":"群消息","extra":"x"}`, "Android",
			`{"data":{"ext":"x",`+tm+`,"clientType":1,"msgid":MSGID,"accid":"u1","body":"群消息","tid":123},"type":0}`),
		team("RC-T-IMG", "RC:ImgMsg", `{"content":"/9j/","imageUri":"https://img.example/t.jpg"}`, "iOS",
			`{"data":{"ext":"",`+tm+`,"clientType":2,"msgid":MSGID,"accid":"u1","attach":"{\"ext\":\"jpg\",\"url\":\"https://img.example/t.jpg\"}","tid":123},"type":1}`),
		team("RC-T-ADD", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Add","data":{"targetUserIds":["u2","u3"]},"message":""}`, "Server",
			`{"data":{"accid2":"u1",`+tm+`,"clientType":32,"msgid":MSGID,"accid":"u2","tid":123},"type":101}`,
			`{"data":{"accid2":"u1",`+tm+`,"clientType":32,"msgid":MSGID,"accid":"u3","tid":123},"type":101}`),
		team("RC-T-KICK", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Kicked","data":"{\"targetUserIds\":[\"u3\"]}"}`, "Server",
			`{"data":{"accid2":"u3",`+tm+`,"clientType":32,"msgid":MSGID,"accid":"u1","tid":123},"type":102}`),
		team("RC-T-QUIT", "RC:GrpNtf", `{"operatorUserId":"u2","operation":"Quit","data":{"targetUserIds":["u2"]}}`, "Server",
			`{"data":{`+tm+`,"clientType":32,"msgid":MSGID,"accid":"u2","tid":123},"type":109}`),
		team("RC-T-XFER", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Transfer","data":{"oldCreatorId":"u1","newCreatorId":"u4"}}`, "Server",
			`{"data":{"accid2":"u4",`+tm+`,"clientType":32,"msgid":MSGID,"accid":"u1","tid":123},"type":108}`),
		team("RC-T-DISMISS", "RC:GrpNtf", `{"operatorUserId":"u4","operation":"Dismiss","data":{}}`, "Server",
			`{"data":{`+tm+`,"clientType":32,"msgid":MSGID,"accid":"u4","tid":123},"type":110}`),
		p2p("RC-P-TEXT", "RC:TxtMsg", `{"content":"你好; a+b","extra":"{\"k\":1}"}`, "iOS",
			`{"data":{"ext":"{\"k\":1}","clientType":"2",`+tm+`,"msgid":MSGID,"from":"u1","to":"u2","body":"你好; a+b"},"type":0}`),
		p2p("RC-P-IMG", "RC:ImgMsg", `{"content":"/9j/","imageUri":"https://img.example/a.png"}`, "Websocket",
			`{"data":{"ext":"","clientType":"16",`+tm+`,"msgid":MSGID,"from":"u1","to":"u2","attach":"{\"ext\":\"png\",\"url\":\"https://img.example/a.png\"}"},"type":1}`),
		p2p("RC-P-GIF", "RC:GIFMsg", `{"gifDataSize":2048,"remoteUrl":"https://img.example/g","width":20,"height":10}`, "MiniProgram",
			`{"data":{"ext":"","clientType":"16",`+tm+`,"msgid":MSGID,"from":"u1","to":"u2","attach":"{\"h\":10,\"ext\":\"gif\",\"size\":2048,\"w\":20,\"url\":\"https://img.example/g\"}"},"type":1}`),
		p2p("RC-P-HQVC", "RC:HQVCMsg", `{"remoteUrl":"https://file.example/v","duration":7}`, "Android",
			`{"data":{"ext":"","clientType":"1",`+tm+`,"msgid":MSGID,"from":"u1","to":"u2","attach":"{\"ext\":\"aac\",\"dur\":7000,\"url\":\"https://file.example/v\"}"},"type":2}`),
		p2p("RC-P-VC", "RC:VcMsg", `{"content":"IyFBTVIK","duration":2}`, "Android",
			`{"data":{"attach":{"objectName":"RC:VcMsg","content":{"content":"IyFBTVIK","duration":2}},"clientType":"1",`+tm+`,"ext":"","msgid":MSGID,"from":"u1","to":"u2"},"type":100}`),
		p2p("RC-P-SIGHT", "RC:SightMsg", `{"sightUrl":"https://file.example/s.mp4","content":"/9j/","duration":10,"size":"123456","name":"s.mp4"}`, "iOS",
			`{"data":{"ext":"","clientType":"2",`+tm+`,"msgid":MSGID,"from":"u1","to":"u2","attach":"{\"size\":123456,\"ext\":\"mp4\",\"dur\":10000,\"name\":\"s.mp4\",\"url\":\"https://file.example/s.mp4\"}"},"type":3}`),
		p2p("RC-P-FILE", "RC:FileMsg", `{"name":"a.pdf","size":"12345","type":"pdf","fileUrl":"https://file.example/f"}`, "PC",
			`{"data":{"ext":"","clientType":"4",`+tm+`,"msgid":MSGID,"from":"u1","to":"u2","attach":"{\"size\":12345,\"ext\":\"pdf\",\"name\":\"a.pdf\",\"url\":\"https://file.example/f\"}"},"type":6}`),
		p2p("RC-P-LBS", "RC:LBSMsg", `{"content":"/9j/","latitude":39.9,"longitude":116.3,"poi":"北京"}`, "iOS",
			`{"data":{"attach":"{\"lng\":\"116.3\",\"title\":\"北京\",\"lat\":\"39.9\"}","clientType":"2",`+tm+`,"ext":"","msgid":MSGID,"from":"u1","to":"u2"},"type":4}`),
		p2p("RC-P-IMGTEXT", "RC:ImgTextMsg", `{"title":"t","content":"c","imageUri":"https://img.example/i","url":"https://x.example"}`, "Server",
			`{"data":{"attach":{"objectName":"RC:ImgTextMsg","content":{"title":"t","content":"c","imageUri":"https://img.example/i","url":"https://x.example"}},"clientType":"32",`+tm+`,"ext":"","msgid":MSGID,"from":"u1","to":"u2"},"type":100}`),
		p2p("RC-P-APP", "App:Card", `{"card":"名片","extra":{"a":1}}`, "iOS",
			`{"data":{"attach":{"objectName":"App:Card","content":{"card":"名片","extra":{"a":1}}},"clientType":"2",`+tm+`,"ext":"{\"a\":1}","msgid":MSGID,"from":"u1","to":"u2"},"type":100}`),
		// The message recalled below: never served.
		p2p("RC-P-OOPS", "RC:TxtMsg", `{"content":"oops"}`, "iOS", ""),
	}
	// Ignored events and the recall, then one more p2p message that is
	// served only after all of them are loaded.
	recall := p2p("RC-P-RECALL", "RC:RcCmd", `{"messageUId":"RC-P-OOPS","conversationType":1,"targetId":"u2","sentTime":1700000000123}`, "iOS", "")
	recall.reply = `{"accepted":0,"duplicates":0,"recalls":1}`
	read := p2p("RC-P-READ", "RC:ReadNtf", `{"lastMessageSendTime":1700000000123,"type":1}`, "iOS", "")
	read.reply = `{"accepted":0,"duplicates":0,"ignored":1}`
	room := p2p("RC-R-TEXT", "RC:TxtMsg", `{"content":"chat room"}`, "iOS", "")
	room.channel, room.reply = "TEMPGROUP", `{"accepted":0,"duplicates":0,"ignored":1}`
	last := p2p("RC-P-LAST", "RC:TxtMsg", `{"content":"last"}`, "iOS",
		`{"data":{"ext":"","clientType":"2",`+tm+`,"msgid":MSGID,"from":"u1","to":"u2","body":"last"},"type":0}`)
	cases = append(cases, recall, read, room, last)

	var p2pLines, teamLines []string
	for _, c := range cases {
		to := "u2"
		if c.channel != "PERSON" {
			to = "g-rc"
		}
		body := rcForm(c.uid, c.channel, "u1", to, c.objectName, c.content, c.platform, ts)
		if c.objectName == "RC:GrpNtf" {
			body = strings.Replace(body, "fromUserId=u1", "fromUserId=__system__", 1)
		}
		if code, resp := rcPost(t, s.base, rcSecret, time.Now(), body); code != 200 || resp != c.reply {
			t.Errorf("%s: got %d %s, want 200 %s", c.uid, code, resp, c.reply)
		}
		if c.channel == "GROUP" {
			teamLines = append(teamLines, c.lines...)
		} else {
			p2pLines = append(p2pLines, c.lines...)
		}
	}
	// A retried callback is stored once.
	retry := rcForm("RC-P-TEXT", "PERSON", "u1", "u2", "RC:TxtMsg", `{"content":"你好; a+b","extra":"{\"k\":1}"}`, "iOS", ts)
	if code, resp := rcPost(t, s.base, rcSecret, time.Now(), retry); code != 200 || resp != `{"accepted":0,"duplicates":1}` {
		t.Errorf("retry: %d %s, want 200 with a duplicate", code, resp)
	}

	var got map[string]int
	waitFor(t, time.Minute, "every p2p line served", func() bool {
		got = rcLines(t, s.base)
		for _, l := range p2pLines {
			if got[l] == 0 {
				return false
			}
		}
		return true
	})
	// Team messages of a group with no mapping are held; the recalled
	// message and the refused requests never appear.
	if len(got) != len(p2pLines) {
		t.Errorf("served %d lines before the team mapping, want the %d p2p lines only:\n%s", len(got), len(p2pLines), rcDump(got))
	}
	for l, n := range got {
		if n != 1 {
			t.Errorf("line served %d times: %s", n, l)
		}
		for _, id := range []string{rcID("RC-P-OOPS"), rcID("RC-BAD-1")} {
			if strings.Contains(l, `"msgid":`+id+`,`) {
				t.Errorf("a recalled or refused message was served: %s", l)
			}
		}
	}

	// The team mapping releases the held team lines with the mapped tid.
	req, _ := http.NewRequest("POST", s.base+"/v1/admin/maps/team", strings.NewReader(`[{"Source":"rongcloud","GroupID":"g-rc","TID":123}]`))
	req.Header.Set("Authorization", "Bearer admin-secret")
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("team mapping: %d", resp.StatusCode)
	}
	want := append(append([]string{}, p2pLines...), teamLines...)
	waitFor(t, time.Minute, "the team lines after the mapping", func() bool {
		got = rcLines(t, s.base)
		for _, l := range teamLines {
			if got[l] == 0 {
				return false
			}
		}
		return true
	})
	if len(got) != len(want) {
		t.Errorf("served %d lines, want exactly %d:\n%s", len(got), len(want), rcDump(got))
	}
	for _, l := range want {
		if got[l] != 1 {
			t.Errorf("line served %d times, want once: %s", got[l], l)
		}
	}
}

func rcDump(lines map[string]int) string {
	var b strings.Builder
	for l, n := range lines {
		fmt.Fprintf(&b, "%d× %s\n", n, l)
	}
	return b.String()
}
