package test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store/storetest"
)

// scrapeMetrics reads /metrics at base into series → value, each series
// written name{label="value",…} with its labels sorted.
func scrapeMetrics(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape %s/metrics: %d", base, resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[canonicalSeries(line[:i])] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// canonicalSeries sorts the labels of a series name (label values here hold
// no commas).
func canonicalSeries(s string) string {
	name, labels, ok := strings.Cut(s, "{")
	if !ok {
		return s
	}
	parts := strings.Split(strings.TrimSuffix(labels, "}"), ",")
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// rawPull does GET /v1/pull and returns the status and the body's size.
func rawPull(t *testing.T, base, query string) (int, int) {
	t.Helper()
	resp, err := client.Get(base + "/v1/pull?" + query)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	return resp.StatusCode, len(b)
}

// A scripted run through the real binary, then one scrape of /metrics (on
// its own listener, metrics.listen): every counter moved by exactly what
// the script did, and the gauges computed from ClickHouse say what is held,
// what is left to upload and where the puller stands.
func TestMetricsCountAScriptedRunExactly(t *testing.T) {
	metricsPort := freePort(t)
	metricsBase := fmt.Sprintf("http://127.0.0.1:%d", metricsPort)
	s := startServer(t, t.TempDir(), storetest.NewDSN(t),
		"IMBRIDGE_SOURCES_EASEMOB_SECRET="+emSecret,
		"IMBRIDGE_METRICS_LISTEN=127.0.0.1:"+strconv.Itoa(metricsPort),
		"IMBRIDGE_METRICS_AUDIT_INTERVAL=200ms",
		"IMBRIDGE_LOG_FORMAT=json")
	if code := s.status("/metrics"); code != 404 {
		t.Errorf("/metrics on the main listener with metrics.listen set: %d, want 404", code)
	}

	// The script.
	expectPost := func(what string, code, want int, body string) {
		t.Helper()
		if code != want {
			t.Fatalf("%s: %d %s, want %d", what, code, body, want)
		}
	}
	code, body, err := postNative(s.base, "["+textLine(1)+","+textLine(2)+","+textLine(3)+"]")
	if err != nil {
		t.Fatal(err)
	}
	expectPost("three new", code, 200, body)
	code, body, _ = postNative(s.base, "["+textLine(3)+","+textLine(4)+"]")
	expectPost("one new, one again", code, 200, body)
	req, _ := http.NewRequest("POST", s.base+"/v1/callbacks/native", strings.NewReader(textLine(5)))
	req.Header.Set("Authorization", "Bearer wrong")
	code, body = send(t, req)
	expectPost("wrong token", code, 401, body)
	code, body, _ = postNative(s.base, "["+textLine(6))
	expectPost("truncated", code, 400, body)
	ts := time.Now().UnixMilli()
	code, body = emPost(t, s.base, emMsg("chat", "chat", "em-img-1", ts, "u1", "u2", "",
		`{"ext":{},"bodies":[{"filename":"a.jpg","size":{"width":1,"height":1},"secret":"s","file_length":9,"type":"img","url":"https://a1.easemob.com/o/a/chatfiles/unmapped1"}]}`))
	expectPost("easemob image", code, 200, body)
	code, body = emPost(t, s.base, emMsg("chat", "groupchat", "em-held-1", ts, "u1", "g-unmapped", "g-unmapped",
		`{"ext":{},"bodies":[{"msg":"hi","type":"txt"}]}`))
	expectPost("easemob group text, no team mapping", code, 200, body)
	code, body = emPost(t, s.base, emMsg("chat", "chatroom", "em-room-1", ts, "u1", "room1", "",
		`{"ext":{},"bodies":[{"msg":"hi","type":"txt"}]}`))
	expectPost("easemob chat room (ignored)", code, 200, body)

	// 4 native + 2 easemob messages: seqs 1–6, the group text held.
	waitFor(t, 30*time.Second, "everything loaded", func() bool {
		m := scrapeMetrics(t, metricsBase)
		return m["imbridge_loader_watermark"] == 6 && m["imbridge_loader_lag"] == 0
	})
	if code, _ := rawPull(t, s.base, "token=wrong"); code != 401 {
		t.Fatalf("pull with a wrong token: %d", code)
	}
	code, yunxinBytes := rawPull(t, s.base, "token="+pullToken)
	if code != 200 {
		t.Fatalf("pull: %d", code)
	}
	code, backupBytes := rawPull(t, s.base, "token="+pullToken+"&name=backup&cursor=0&limit=2")
	if code != 200 {
		t.Fatalf("pull with a cursor: %d", code)
	}

	// The audit gauges come from ClickHouse, at most every 200 ms.
	var m map[string]float64
	waitFor(t, 30*time.Second, "the audit gauges after the pull", func() bool {
		m = scrapeMetrics(t, metricsBase)
		return m[`imbridge_pull_stored_cursor{puller="yunxin"}`] == 6
	})
	for _, want := range []struct {
		series string
		value  float64
	}{
		{`imbridge_callback_requests_total{outcome="ok",source="native"}`, 2},
		{`imbridge_callback_requests_total{outcome="unauthorized",source="native"}`, 1},
		{`imbridge_callback_requests_total{outcome="bad_request",source="native"}`, 1},
		{`imbridge_callback_requests_total{outcome="invalid_message",source="native"}`, 0},
		{`imbridge_callback_requests_total{outcome="ok",source="easemob"}`, 3},
		{`imbridge_ingest_messages_total{outcome="accepted",source="native"}`, 4},
		{`imbridge_ingest_messages_total{outcome="duplicate",source="native"}`, 1},
		{`imbridge_ingest_messages_total{outcome="accepted",source="easemob"}`, 2},
		{`imbridge_ingest_ignored_events_total{kind="chatroom",source="easemob"}`, 1},
		{`imbridge_callback_ack_duration_seconds_count{source="native"}`, 2},
		{`imbridge_callback_ack_duration_seconds_count{source="easemob"}`, 3},
		{`imbridge_loader_rows_total`, 6},
		{`imbridge_loader_held_total`, 1},
		{`imbridge_loader_lag`, 0},
		{`imbridge_spool_oldest_unloaded_age_seconds`, 0},
		{`imbridge_pull_responses_total{outcome="advanced",puller="yunxin"}`, 1},
		{`imbridge_pull_responses_total{outcome="explicit_cursor",puller="backup"}`, 1},
		{`imbridge_pull_messages_total{puller="yunxin"}`, 5},
		{`imbridge_pull_messages_total{puller="backup"}`, 2},
		{`imbridge_pull_bytes_total{puller="yunxin"}`, float64(yunxinBytes)},
		{`imbridge_pull_bytes_total{puller="backup"}`, float64(backupBytes)},
		{`imbridge_http_requests_total{code="401",route="/v1/pull"}`, 1},
		{`imbridge_http_requests_total{code="200",route="/v1/pull"}`, 2},
		{`imbridge_held_messages{source="easemob"}`, 1},
		{`imbridge_unmapped_media_urls`, 1},
		{`imbridge_pull_oldest_undelivered_age_seconds{puller="yunxin"}`, 0},
	} {
		got, ok := m[want.series]
		if !ok && want.value != 0 {
			t.Errorf("%s missing from /metrics", want.series)
			continue
		}
		if got != want.value {
			t.Errorf("%s = %v, want %v", want.series, got, want.value)
		}
	}
	if t.Failed() {
		t.Logf("imbridge_ series scraped:\n%s", seriesWith(m, "imbridge_"))
	}

	// One log line per request, with its id and route; the pull token in
	// the query string never reaches the log.
	log := s.log()
	if n := strings.Count(log, `"msg":"request"`); n < 10 {
		t.Errorf("%d request lines logged for 10 requests", n)
	}
	if !strings.Contains(log, `"route":"/v1/callbacks/native","status":401`) {
		t.Errorf("no request line for the refused callback:\n%s", lastLines(log, 20))
	}
	if strings.Contains(log, pullToken) || strings.Contains(log, nativeToken) || strings.Contains(log, emSecret) {
		t.Errorf("a secret is in the log:\n%s", log)
	}
}

func seriesWith(m map[string]float64, prefix string) string {
	var out []string
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, fmt.Sprintf("%s %v", k, v))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
