package test

import (
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

const yunxinSecret = "yx-e2e-secret"

// yunxinCases are the 抄送 bodies of every kind and their golden results,
// shared with the source's unit tests.
const yunxinCases = "../source/yunxin/testdata/cases"

// postYunxin posts body to /v1/callbacks/yunxin signed as Yunxin signs:
// MD5 = md5hex(signedBody), CheckSum = sha1hex(secret + MD5 + CurTime).
// signedBody differs from body to test a changed body.
func postYunxin(t *testing.T, base, secret string, body, signedBody []byte, curTime time.Time) (int, string) {
	t.Helper()
	m := md5.Sum(signedBody)
	md5hex := hex.EncodeToString(m[:])
	cur := strconv.FormatInt(curTime.UnixMilli(), 10)
	c := sha1.Sum([]byte(secret + md5hex + cur))
	req, _ := http.NewRequest("POST", base+"/v1/callbacks/yunxin", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json;charset=utf-8")
	req.Header.Set("AppKey", "source-app-key")
	req.Header.Set("CurTime", cur)
	req.Header.Set("MD5", md5hex)
	req.Header.Set("CheckSum", hex.EncodeToString(c[:]))
	return send(t, req)
}

// allLines pulls everything served from cursor 0 (a puller of the test's
// own, so the stored cursors do not matter).
func allLines(t *testing.T, base string) map[string]int { return servedLines(t, base, "yunxin-e2e") }

// yunxinGolden is one case: its body and what it must give.
type yunxinGolden struct {
	name                       string
	body                       []byte
	lines                      []string // expected Yunxin lines (team ones with the mapped tid)
	accepted, ignored, recalls int
}

func loadYunxinCases(t *testing.T) []yunxinGolden {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(yunxinCases, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no cases in %s: %v", yunxinCases, err)
	}
	var out []yunxinGolden
	for _, p := range paths {
		body, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		golden, err := os.ReadFile(strings.TrimSuffix(p, ".json") + ".golden")
		if err != nil {
			t.Fatal(err)
		}
		c := yunxinGolden{name: strings.TrimSuffix(filepath.Base(p), ".json"), body: body}
		for _, l := range strings.Split(strings.TrimSpace(string(golden)), "\n") {
			switch {
			case strings.HasPrefix(l, "{"):
				c.lines = append(c.lines, l)
			case strings.HasPrefix(l, "message "):
				c.accepted++
			case strings.HasPrefix(l, "ignored "):
				n, _ := strconv.Atoi(l[strings.LastIndexByte(l, ' ')+1:])
				c.ignored += n
			case strings.HasPrefix(l, "recall "):
				c.recalls++
			}
		}
		out = append(out, c)
	}
	// Team cases first: once the last p2p line is served, every team
	// message before it has been loaded (and is held).
	sort.SliceStable(out, func(i, j int) bool { return isTeam(out[i]) && !isTeam(out[j]) })
	return out
}

func isTeam(c yunxinGolden) bool {
	for _, l := range c.lines {
		if strings.Contains(l, `"tid":`) {
			return true
		}
	}
	return false
}

func p2pText(id, from, to string, ts int64, body string) []byte {
	return []byte(fmt.Sprintf(`{"attach":"","body":%q,"convType":"PERSON","eventType":"1","fromAccount":%q,"fromClientType":"IOS","msgTimestamp":"%d","msgType":"TEXT","msgidClient":"c-%s","msgidServer":%q,"resendFlag":"0","to":%q}`,
		body, from, ts, id, id, to))
}

func TestYunxinCallbacksEndToEnd(t *testing.T) {
	s := startServer(t, t.TempDir(), "", "IMBRIDGE_SOURCES_YUNXIN_APP_SECRET="+yunxinSecret, "IMBRIDGE_ADMIN_TOKEN=admin-secret")
	now := time.Now

	// Refused requests: status, error body, and nothing stored.
	refused := map[string][]byte{}
	for i, c := range []struct {
		name, secret string
		signed       func(b []byte) []byte
		body         func(b []byte) []byte
		at           func() time.Time
		status       int
		want         string
	}{
		{"wrong secret", "not-the-secret", nil, nil, now, 401, "wrong CheckSum"},
		{"changed body", yunxinSecret, func(b []byte) []byte { return append([]byte(" "), b...) }, nil, now, 401, "body does not match MD5"},
		{"stale CurTime", yunxinSecret, nil, nil, func() time.Time { return time.Now().Add(-10 * time.Minute) }, 401, "max_skew"},
		{"truncated body", yunxinSecret, nil, func(b []byte) []byte { return b[:len(b)/2] }, now, 400, "truncated"},
	} {
		id := strconv.Itoa(9100001 + i)
		body := p2pText(id, "bad", "worse", 1700000000000+int64(i), "refused "+c.name)
		refused[id] = body
		if c.body != nil {
			body = c.body(body)
		}
		signed := body
		if c.signed != nil {
			signed = c.signed(body)
		}
		code, resp := postYunxin(t, s.base, c.secret, body, signed, c.at())
		if code != c.status || !strings.HasPrefix(resp, `{"error":`) || !strings.Contains(resp, c.want) {
			t.Errorf("%s: got %d %s, want %d with an error saying %q", c.name, code, resp, c.status, c.want)
		}
	}

	// Every documented kind, as its golden file says.
	cases := loadYunxinCases(t)
	var p2pLines, teamLines []string
	for _, c := range cases {
		code, resp := postYunxin(t, s.base, yunxinSecret, c.body, c.body, time.Now())
		want := fmt.Sprintf(`"accepted":%d,`, c.accepted)
		if code != 200 || !strings.Contains(resp, want) ||
			(c.ignored > 0) != strings.Contains(resp, fmt.Sprintf(`"ignored":%d`, c.ignored)) ||
			(c.recalls > 0) != strings.Contains(resp, fmt.Sprintf(`"recalls":%d`, c.recalls)) {
			t.Errorf("%s: got %d %s, want 200 with %d accepted, %d ignored, %d recalls", c.name, code, resp, c.accepted, c.ignored, c.recalls)
		}
		if isTeam(c) {
			teamLines = append(teamLines, c.lines...)
		} else {
			p2pLines = append(p2pLines, c.lines...)
		}
	}
	if len(teamLines) < 15 || len(p2pLines) < 10 {
		t.Fatalf("%d team and %d p2p lines in the cases", len(teamLines), len(p2pLines))
	}
	// A retried 抄送 is stored once.
	for _, c := range cases {
		if c.name != "team_invite" {
			continue
		}
		if code, resp := postYunxin(t, s.base, yunxinSecret, c.body, c.body, time.Now()); code != 200 || !strings.Contains(resp, `"accepted":0,"duplicates":2`) {
			t.Errorf("retry of %s: %d %s, want 200 with both lines duplicates", c.name, code, resp)
		}
	}

	var got map[string]int
	waitFor(t, time.Minute, "every p2p line served", func() bool {
		got = allLines(t, s.base)
		for _, l := range p2pLines {
			if got[l] == 0 {
				return false
			}
		}
		return true
	})
	for _, l := range p2pLines {
		if got[l] != 1 {
			t.Errorf("p2p line served %d times, want once: %s", got[l], l)
		}
	}
	for l := range got {
		if strings.Contains(l, `"tid":`) {
			t.Errorf("team line served before its group has a mapping: %s", l)
		}
		if strings.Contains(l, `"from":"bad"`) {
			t.Errorf("a refused request was stored: %s", l)
		}
	}
	if len(got) != len(p2pLines) {
		t.Errorf("%d lines served, want the %d p2p lines of the cases", len(got), len(p2pLines))
	}

	// The source app's tids get their destination tids: the team lines
	// appear, exactly as the golden files (rendered with the same map) say.
	req, _ := http.NewRequest("POST", s.base+"/v1/admin/maps/team", strings.NewReader(
		`[{"Source":"yunxin","GroupID":"11623","TID":900},{"Source":"yunxin","GroupID":"11631","TID":901},{"Source":"yunxin","GroupID":"super:11620","TID":902}]`))
	req.Header.Set("Authorization", "Bearer admin-secret")
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin team map: %v %v", resp, err)
	}
	resp.Body.Close()
	waitFor(t, time.Minute, "every team line served with its mapped tid", func() bool {
		got = allLines(t, s.base)
		for _, l := range teamLines {
			if got[l] == 0 {
				return false
			}
		}
		return true
	})
	for _, l := range teamLines {
		if got[l] != 1 {
			t.Errorf("team line served %d times, want once: %s", got[l], l)
		}
	}

	// Recalls: a served p2p message and a served team message disappear
	// from the pull once recalled; a message whose recall came first is
	// never served.
	ts := time.Now().UnixMilli()
	teamText := []byte(fmt.Sprintf(`{"body":"撤回我","convType":"TEAM","eventType":"1","fromAccount":"r1","fromClientType":"WEB","msgTimestamp":"%d","msgType":"TEXT","msgidClient":"c-r2","msgidServer":"9200002","resendFlag":"0","to":"11623"}`, ts))
	for _, b := range [][]byte{p2pText("9200001", "r1", "r2", ts, "撤回我"), teamText} {
		if code, resp := postYunxin(t, s.base, yunxinSecret, b, b, time.Now()); code != 200 || !strings.Contains(resp, `"accepted":1`) {
			t.Fatalf("post %s: %d %s", b, code, resp)
		}
	}
	served := func(msgid string) bool {
		for l := range allLines(t, s.base) {
			if strings.Contains(l, `"msgid":`+msgid+`,`) {
				return true
			}
		}
		return false
	}
	waitFor(t, time.Minute, "both messages to recall served", func() bool { return served("9200001") && served("9200002") })
	for _, r := range []string{
		fmt.Sprintf(`{"clientId":"c-r1","deleteTime":"%d","eventType":"7","from":"r1","fromClientType":"IOS","msgId":"9200001","selfMsg":"撤回了一条消息","sendTime":"%d","to":"r2"}`, ts+1000, ts),
		fmt.Sprintf(`{"clientId":"c-r2","deleteTime":"%d","eventType":"8","from":"r1","fromClientType":"WEB","msgId":"9200002","selfMsg":"撤回了一条消息","sendTime":"%d","to":"11623"}`, ts+1000, ts),
		fmt.Sprintf(`{"deleteTime":"%d","eventType":"7","from":"r1","msgId":"9200003","to":"r2"}`, ts+1000),
	} {
		if code, resp := postYunxin(t, s.base, yunxinSecret, []byte(r), []byte(r), time.Now()); code != 200 || !strings.Contains(resp, `"recalls":1`) {
			t.Fatalf("recall %s: %d %s", r, code, resp)
		}
	}
	for _, b := range [][]byte{p2pText("9200003", "r1", "r2", ts, "撤回在先"), p2pText("9200004", "r1", "r2", ts, "marker")} {
		if code, resp := postYunxin(t, s.base, yunxinSecret, b, b, time.Now()); code != 200 || !strings.Contains(resp, `"accepted":1`) {
			t.Fatalf("post %s: %d %s", b, code, resp)
		}
	}
	waitFor(t, time.Minute, "the recalled messages gone from the pull", func() bool { return !served("9200001") && !served("9200002") })
	waitFor(t, time.Minute, "the marker served", func() bool { return served("9200004") })
	if served("9200003") {
		t.Error("a message recalled before it arrived was served")
	}
	for id := range refused {
		if served(id) {
			t.Errorf("refused message %s was served", id)
		}
	}
}
