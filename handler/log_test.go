package handler

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/config"
	"github.com/imbridge/imbridge/metrics"
	"github.com/imbridge/imbridge/source/easemob"
	"github.com/imbridge/imbridge/source/native"
	"github.com/imbridge/imbridge/source/rongcloud"
	"github.com/imbridge/imbridge/source/tencent"
	"github.com/imbridge/imbridge/source/yunxin"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// The secrets of the log test, each distinctive enough to be searched for.
const (
	secretPull      = "PullTok3n-a81f"
	secretAdmin     = "AdminTok3n-6c0d"
	secretNative    = "NativeTok3n-27be"
	secretEasemob   = "EasemobS3cret-93d1"
	secretTencent   = "TencentTok3n-4e7a"
	secretRongCloud = "RongS3cret-b5c2"
	secretYunxin    = "YunxinS3cret-0f96"
	secretDSN       = "DsnPassw0rd-71aa"
)

// No secret is ever logged: requests carrying every secret — the pull token
// in the query and as a bearer token, the admin and native tokens, each
// provider's signature made with its secret, right and wrong — go through
// the server at Debug level, in JSON and in text, and so do the start-up
// configuration dump, a configuration error about a DSN with a password, and
// ClickHouse refusing that password. Neither a secret nor a signature made
// with one appears in what was logged.
func TestNoSecretIsLogged(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			opts := &slog.HandlerOptions{Level: slog.LevelDebug}
			logger := slog.New(slog.NewJSONHandler(&buf, opts))
			if format == "text" {
				logger = slog.New(slog.NewTextHandler(&buf, opts))
			}
			signatures := logEverySecret(t, logger)
			out := buf.String()
			if n := strings.Count(out, "request_id"); n < 20 {
				t.Fatalf("only %d lines with a request id were logged; the test is not looking at the request log:\n%s", n, out)
			}
			for _, s := range append([]string{secretPull, secretAdmin, secretNative, secretEasemob, secretTencent,
				secretRongCloud, secretYunxin, secretDSN}, signatures...) {
				if strings.Contains(out, s) {
					t.Errorf("the log holds the secret %q:\n%s", s, linesWith(out, s))
				}
			}
		})
	}
}

// logEverySecret runs the requests and logs the start-up lines; it returns
// the signatures made with the secrets.
func logEverySecret(t *testing.T, logger *slog.Logger) []string {
	t.Helper()
	now := time.Now()
	h := NewServer(Deps{
		Logger: logger, Metrics: metrics.New(), Ingest: &fakeIngester{}, Lines: &fakeLines{lines: []string{`{"a":1}`}},
		Watermark: func() uint64 { return 1 }, Ready: func(context.Context) error { return nil },
		Sources: []Source{native.New(secretNative), easemob.New(secretEasemob, time.Hour),
			tencent.New(secretTencent, "1400000001", time.Hour), rongcloud.New(secretRongCloud, time.Hour), yunxin.New(secretYunxin, time.Hour)},
		Admin: &Admin{Token: secretAdmin, Status: func(context.Context) any { return map[string]any{"ok": true} }},
		Pull:  PullConfig{Token: secretPull}, MaxBodyBytes: 1 << 20,
		Receipt: func(*http.Request) (receipt, error) { return received{}, nil },
	})

	ms := strconv.FormatInt(now.UnixMilli(), 10)
	emSig := easemob.Signature("cb-1", secretEasemob, ms)
	emBody := `{"callId":"cb-1","eventType":"chat","chat_type":"chat","security":"` + emSig + `","timestamp":` + ms +
		`,"msg_id":"1","from":"a","to":"b","payload":{"bodies":[{"type":"txt","msg":"hi"}]}}`
	tcTime := strconv.FormatInt(now.Unix(), 10)
	tcSig := tencent.Sign(secretTencent, tcTime)
	rcSig := rongcloud.Sign(secretRongCloud, "n0nce", ms)
	yxBody := `{"eventType":"1","convType":"PERSON","fromAccount":"a","to":"b","msgType":"TEXT","body":"hi","msgTimestamp":"` + ms + `","msgidServer":"1"}`
	yxMD5 := md5hex(yxBody)
	yxSum := sha1hex(secretYunxin + yxMD5 + ms)
	jsonCT := []string{"Content-Type", "application/json"}

	for _, r := range []struct {
		method, target, body string
		header               []string
	}{
		{"GET", "/v1/pull?token=" + secretPull, "", nil},
		{"GET", "/v1/pull?token=" + secretPull + "x", "", nil},
		{"GET", "/v1/pull?cursor=nope&token=" + secretPull, "", nil},
		{"GET", "/v1/pull", "", []string{"Authorization", "Bearer " + secretPull}},
		{"GET", "/v1/pull", "", []string{"Authorization", "Bearer " + secretPull + "x"}},
		{"POST", "/v1/pull?token=" + secretPull, "", nil},
		{"GET", "/v1/admin/status", "", []string{"Authorization", "Bearer " + secretAdmin}},
		{"GET", "/v1/admin/status", "", []string{"Authorization", "Bearer " + secretAdmin + "x"}},
		{"POST", "/v1/admin/maps/url", "[{", []string{"Authorization", "Bearer " + secretAdmin}},
		{"POST", "/v1/callbacks/native", good, append([]string{"Authorization", "Bearer " + secretNative}, jsonCT...)},
		{"POST", "/v1/callbacks/native", "[" + good, append([]string{"Authorization", "Bearer " + secretNative}, jsonCT...)},
		{"POST", "/v1/callbacks/native", good, append([]string{"Authorization", "Bearer " + secretNative + "x"}, jsonCT...)},
		{"POST", "/v1/callbacks/easemob", emBody, jsonCT},
		{"POST", "/v1/callbacks/easemob", strings.Replace(emBody, `"callId":"cb-1"`, `"callId":"cb-2"`, 1), jsonCT},
		{"POST", "/v1/callbacks/easemob", strings.Replace(emBody, `"msg_id":"1"`, `"msg_id":{}`, 1), jsonCT},
		{"POST", "/v1/callbacks/tencent?SdkAppid=1400000001&CallbackCommand=C2C.CallbackAfterSendMsg&contenttype=json&Sign=" + tcSig + "&RequestTime=" + tcTime,
			`{"CallbackCommand":"C2C.CallbackAfterSendMsg"}`, jsonCT},
		{"POST", "/v1/callbacks/tencent?SdkAppid=1400000001&Sign=" + tcSig + "&RequestTime=" + tcTime + "1", `{}`, jsonCT},
		{"POST", "/v1/callbacks/rongcloud?nonce=n0nce&signTimestamp=" + ms + "&signature=" + rcSig,
			"fromUserId=a&toUserId=b&objectName=RC%3ATxtMsg&content=%7B%22content%22%3A%22hi%22%7D&channelType=PERSON&msgTimestamp=" + ms + "&msgUID=X",
			[]string{"Content-Type", "application/x-www-form-urlencoded"}},
		{"POST", "/v1/callbacks/rongcloud?nonce=n0nce&signTimestamp=" + ms + "1&signature=" + rcSig, "a=b",
			[]string{"Content-Type", "application/x-www-form-urlencoded"}},
		{"POST", "/v1/callbacks/yunxin", yxBody, append([]string{"CurTime", ms, "MD5", yxMD5, "CheckSum", yxSum}, jsonCT...)},
		{"POST", "/v1/callbacks/yunxin", yxBody, append([]string{"CurTime", ms + "1", "MD5", yxMD5, "CheckSum", yxSum}, jsonCT...)},
		{"POST", "/v1/callbacks/yunxin", "{", append([]string{"CurTime", ms, "MD5", md5hex("{"), "CheckSum", sha1hex(secretYunxin + md5hex("{") + ms)}, jsonCT...)},
		{"GET", "/no/such/route?token=" + secretPull, "", []string{"Authorization", "Bearer " + secretAdmin}},
		{"GET", "/healthz", "", []string{"Authorization", "Bearer " + secretAdmin}},
	} {
		do(h, r.method, r.target, r.body, r.header...)
	}

	// serve's start-up: the effective configuration, secrets masked.
	env := map[string]string{
		"IMBRIDGE_PULL_TOKEN": secretPull, "IMBRIDGE_ADMIN_TOKEN": secretAdmin,
		"IMBRIDGE_CLICKHOUSE_DSN":               "clickhouse://default:" + secretDSN + "@127.0.0.1:9000/imbridge",
		"IMBRIDGE_SOURCES_NATIVE_TOKEN":         secretNative,
		"IMBRIDGE_SOURCES_EASEMOB_SECRET":       secretEasemob,
		"IMBRIDGE_SOURCES_TENCENT_TOKEN":        secretTencent,
		"IMBRIDGE_SOURCES_TENCENT_SDKAPPID":     "1400000001",
		"IMBRIDGE_SOURCES_RONGCLOUD_APP_SECRET": secretRongCloud,
		"IMBRIDGE_SOURCES_YUNXIN_APP_SECRET":    secretYunxin,
	}
	cfg, err := config.Load(func(k string) string { return env[k] }, "")
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("imbridge starting", cfg.Dump()...)
	// A DSN the URL parser refuses: the configuration error names the key.
	env["IMBRIDGE_CLICKHOUSE_DSN"] = "clickhouse://default:" + secretDSN + "@127.0.0.1:port/imbridge"
	if _, err := config.Load(func(k string) string { return env[k] }, ""); err == nil {
		t.Fatal("a DSN with a bad port was accepted")
	} else {
		logger.Error("bad configuration", "err", err)
	}
	// ClickHouse refusing the password.
	u, err := url.Parse(storetest.NewDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("default", secretDSN)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if st, err := store.Open(ctx, u.String(), logger); err == nil {
		st.Close()
		t.Fatal("ClickHouse took a wrong password")
	} else {
		logger.Error("clickhouse", "err", err)
	}
	return []string{emSig, tcSig, rcSig, yxSum}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func sha1hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// linesWith returns the lines of out that contain s.
func linesWith(out, s string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			fmt.Fprintln(&b, l)
		}
	}
	return b.String()
}

// One line per request, with its id, route, status and latency; refusals
// add a line with the same id and the error.
func TestRequestLogLine(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	d := testDeps()
	d.Logger = logger
	h := NewServer(d)
	do(h, "POST", "/v1/callbacks/native", good, "Authorization", "Bearer nope", "X-Request-Id", "req-1")
	do(h, "GET", "/healthz", "") // at Debug: not logged at Info
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want the refusal and the request line:\n%s", len(lines), buf.String())
	}
	refusal, req := lines[0], lines[1]
	if refusal["request_id"] != "req-1" || refusal["status"] != float64(401) || !strings.Contains(fmt.Sprint(refusal["err"]), "bearer token") {
		t.Errorf("refusal line %v: want request_id req-1, status 401 and the error", refusal)
	}
	if req["msg"] != "request" || req["request_id"] != "req-1" || req["route"] != "/v1/callbacks/native" || req["status"] != float64(401) || req["latency"] == nil {
		t.Errorf("request line %v: want request_id, route, status and latency", req)
	}
}
