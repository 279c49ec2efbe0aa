package test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
)

const mapsAdminToken = "maps-admin-token"

// mapCmd runs `imbridge urlmap|teammap …` with serve's configuration and
// returns its stdout, stderr and exit status.
func mapCmd(t *testing.T, s *server, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = s.env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// csvFile writes a map CSV into the test's temporary directory.
func csvFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// mapVersions counts the committed map versions in serve's ClickHouse.
func mapVersions(t *testing.T, s *server) uint64 {
	t.Helper()
	return countIn(t, s, "SELECT count() FROM map_versions")
}

// countIn runs a SELECT count() query on serve's managed ClickHouse.
func countIn(t *testing.T, s *server, q string, args ...any) uint64 {
	t.Helper()
	st, err := store.Open(context.Background(), managedDSN(t, s), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var n uint64
	if err := st.Conn().QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// pullUntil pulls with puller's stored cursor until a line holding every
// one of parts arrives, and returns it.
func pullUntil(t *testing.T, base, puller string, parts ...string) string {
	t.Helper()
	var found string
	waitFor(t, time.Minute, "a line with "+strings.Join(parts, " and "), func() bool {
		for _, l := range pull(t, base, puller, -1, 0).lines {
			if containsAll(string(l), parts) {
				found = string(l)
			}
		}
		return found != ""
	})
	return found
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func imageLine(msgid int64, url string) string {
	return `{"data":{"ext":"","clientType":"2","createTime":` + strconv.FormatInt(1700000000000+msgid, 10) + `,"msgid":` +
		strconv.FormatInt(msgid, 10) + `,"from":"a","to":"b","attach":"{\"ext\":\"jpg\",\"url\":\"` + url + `\"}"},"type":1}`
}

// The map loaders from CSV files, beside a running serve and without one:
// the unmapped lists, bad files refused at their line numbers with nothing
// written, a team map that releases held messages, a URL map that re-issues
// a delivered image, a refused change of a used team mapping, and loads
// made while serve is down applied when it starts again.
func TestMapLoadersEndToEnd(t *testing.T) {
	s := startServer(t, t.TempDir(), "", "IMBRIDGE_SOURCES_EASEMOB_SECRET="+emSecret, "IMBRIDGE_ADMIN_TOKEN="+mapsAdminToken)
	ts := time.Now().UnixMilli()
	for i, group := range []string{"g-a", "g-b"} {
		body := emMsg("chat", "groupchat", strconv.FormatInt(ts+int64(i), 10), ts+int64(i), "u1", group, group,
			`{"ext":{},"bodies":[{"msg":"held in `+group+`","type":"txt"}]}`)
		if code, reply := emPost(t, s.base, body); code != 200 {
			t.Fatalf("posting to %s: %d %s", group, code, reply)
		}
	}
	for id, url := range map[int64]string{7701: "https://old.example/a.jpg", 7702: "https://old.example/b.jpg"} {
		if code, body, err := postNative(s.base, imageLine(id, url)); err != nil || code != 200 {
			t.Fatalf("posting image %d: %d %s %v", id, code, body, err)
		}
	}
	delivered := ""
	waitFor(t, time.Minute, "both images delivered", func() bool {
		for _, l := range pull(t, s.base, "maps", -1, 0).lines {
			delivered += string(l)
		}
		return strings.Contains(delivered, `"msgid":7701`) && strings.Contains(delivered, `"msgid":7702`)
	})

	// What is left to map, read from the store.
	unmapped := func(which, want string) {
		t.Helper()
		var out, errOut string
		waitFor(t, time.Minute, which+" unmapped", func() bool {
			var code int
			out, errOut, code = mapCmd(t, s, "", which, "unmapped")
			return code == 0 && out == want
		})
		if out != want {
			t.Fatalf("%s unmapped:\n%s%s\nwant:\n%s", which, out, errOut, want)
		}
	}
	unmapped("teammap", "source\tgroup_id\theld\neasemob\tg-a\t1\neasemob\tg-b\t1\n")
	unmapped("urlmap", "old_url\tmessages\nhttps://old.example/a.jpg\t1\nhttps://old.example/b.jpg\t1\n")

	// Bad files are refused with their line numbers; nothing is written.
	refused := []struct {
		name, which, csv, want string
	}{
		{"a line that is not a URL (checked by the command)", "urlmap",
			"old_url,new_url\nhttps://old.example/a.jpg,https://nim.example/a.jpg\nnot-a-url,https://nim.example/x.jpg\n",
			`line 3: old_url "not-a-url" is not an absolute http or https URL`},
		{"a URL mapped twice (checked in ClickHouse, through serve)", "urlmap",
			"https://old.example/a.jpg,https://nim.example/a.jpg\nhttps://old.example/b.jpg,https://nim.example/b.jpg\nhttps://old.example/a.jpg,https://nim.example/a2.jpg\n",
			"line 3: https://old.example/a.jpg is mapped twice: to https://nim.example/a2.jpg here and to https://nim.example/a.jpg on line 1"},
		{"a native group", "teammap", "easemob,g-a,902\nnative,g-n,5\n", `line 2: source "native" is not mapped`},
	}
	for _, r := range refused {
		out, errOut, code := mapCmd(t, s, "", r.which, "load", csvFile(t, "bad.csv", r.csv))
		if code == 0 || !strings.Contains(errOut, r.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr:\n%s\nwant a refusal with %q", r.name, code, out, errOut, r.want)
		}
	}
	if n := mapVersions(t, s); n != 0 {
		t.Fatalf("%d map versions after refused loads, want none", n)
	}

	// A team map through serve (read from stdin) releases the held message
	// with its tid on the next pull.
	out, errOut, code := mapCmd(t, s, "source,group_id,tid\neasemob,g-a,902\n", "teammap", "load", "-")
	if code != 0 || !strings.Contains(out, "1 mappings new or changed: map version") || !strings.Contains(out, "through serve") {
		t.Fatalf("teammap load: exit %d\n%s%s", code, out, errOut)
	}
	pullUntil(t, s.base, "maps", `"tid":902`, "held in g-a")

	// A URL map through serve re-issues the delivered image: same msgid, new URL.
	out, errOut, code = mapCmd(t, s, "", "urlmap", "load", csvFile(t, "urls.csv", "https://old.example/a.jpg,https://nim.example/a.jpg\n"))
	if code != 0 || !strings.Contains(out, "through serve") {
		t.Fatalf("urlmap load: exit %d\n%s%s", code, out, errOut)
	}
	pullUntil(t, s.base, "maps", `"msgid":7701`, "https://nim.example/a.jpg")

	// Changing a mapping that a message was delivered under is refused,
	// naming the group and the count; nothing of the file is written.
	out, errOut, code = mapCmd(t, s, "", "teammap", "load", csvFile(t, "change.csv", "easemob,g-b,904\neasemob,g-a,903\n"))
	if want := "line 2: easemob group g-a is already mapped to tid 902 (1 messages rendered under it so far"; code == 0 || !strings.Contains(errOut, want) {
		t.Fatalf("changing g-a's tid: exit %d, stdout %q, stderr:\n%s\nwant a refusal with %q", code, out, errOut, want)
	}
	if n := mapVersions(t, s); n != 2 {
		t.Fatalf("%d map versions, want 2 (the refused load wrote one)", n)
	}
	unmapped("teammap", "source\tgroup_id\theld\neasemob\tg-b\t1\n")
	unmapped("urlmap", "old_url\tmessages\nhttps://old.example/b.jpg\t1\n")

	// With serve stopped the loaders write to ClickHouse themselves; serve
	// applies the versions when it starts again.
	if code := s.terminate(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	for _, load := range []struct{ which, csv string }{
		{"teammap", "easemob,g-b,904\n"},
		{"urlmap", "https://old.example/b.jpg,https://nim.example/b.jpg\n"},
	} {
		out, errOut, code := mapCmd(t, s, "", load.which, "load", csvFile(t, "direct.csv", load.csv))
		if code != 0 || !strings.Contains(out, "directly in ClickHouse") || !strings.Contains(out, "when it next starts") {
			t.Fatalf("%s load without serve: exit %d\n%s%s", load.which, code, out, errOut)
		}
	}
	s.start()
	pullUntil(t, s.base, "maps", `"tid":904`, "held in g-b")
	pullUntil(t, s.base, "maps", `"msgid":7702`, "https://nim.example/b.jpg")
}
