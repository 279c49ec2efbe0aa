// Package test holds imbridge's end-to-end tests: they build the real binary,
// run it against a real ClickHouse and talk HTTP to it, kill it and stop
// ClickHouse underneath it.
package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imbridge-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "imbridge")
	build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/imbridge")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building imbridge:", err)
		os.Exit(1)
	}
	code := storetest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	pullToken   = "test-pull-token"
	nativeToken = "test-native-token"
)

// server is one running imbridge process.
type server struct {
	t       testing.TB
	cmd     *exec.Cmd
	base    string
	dataDir string
	env     []string
	logPath string
	exited  chan struct{}
	waitFor string   // the path start polls for 200: /readyz unless set
	socket  *os.File // when set, serve inherits it as fd 3 (LISTEN_FDS), as from systemd
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer runs `imbridge serve` with the given extra environment and
// waits until /readyz answers 200. dsn "" means the managed ClickHouse.
func startServer(tb testing.TB, dataDir, dsn string, extra ...string) *server {
	tb.Helper()
	s := newServer(tb, dataDir, dsn, extra...)
	s.start()
	return s
}

// newServer is startServer without the start.
func newServer(tb testing.TB, dataDir, dsn string, extra ...string) *server {
	tb.Helper()
	port := freePort(tb)
	env := append(os.Environ(),
		"IMBRIDGE_LISTEN=127.0.0.1:"+strconv.Itoa(port),
		"IMBRIDGE_DATA_DIR="+dataDir,
		"IMBRIDGE_CLICKHOUSE_DSN="+dsn,
		"IMBRIDGE_PULL_TOKEN="+pullToken,
		"IMBRIDGE_SOURCES_NATIVE_TOKEN="+nativeToken,
		"IMBRIDGE_LOG_LEVEL=info",
	)
	env = append(env, extra...)
	return &server{t: tb, base: fmt.Sprintf("http://127.0.0.1:%d", port), dataDir: dataDir, env: env}
}

func (s *server) start() {
	s.t.Helper()
	s.logPath = filepath.Join(s.dataDir, fmt.Sprintf("imbridge-%d.log", time.Now().UnixNano()))
	if err := os.MkdirAll(s.dataDir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd = exec.Command(binary, "serve")
	if s.socket != nil {
		// sh sets LISTEN_PID to its own pid, which exec hands to serve.
		s.cmd = exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" serve`, binary)
		s.cmd.ExtraFiles = []*os.File{s.socket}
	}
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		logFile.Close()
		close(s.exited)
	}()
	s.t.Cleanup(func() {
		s.kill()
		if s.t.Failed() {
			s.t.Logf("imbridge log (%s):\n%s", s.logPath, lastLines(s.log(), 40))
		}
	})
	path := s.waitFor
	if path == "" {
		path = "/readyz"
	}
	waitFor(s.t, 90*time.Second, "imbridge "+path, func() bool {
		select {
		case <-s.exited:
			s.t.Fatalf("imbridge exited during start-up:\n%s", s.log())
		default:
		}
		return s.status(path) == 200
	})
}

// status is the HTTP status of GET path, 0 when the server does not answer.
func (s *server) status(path string) int {
	resp, err := http.Get(s.base + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (s *server) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// kill ends the process with SIGKILL (no clean-up at all).
func (s *server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// terminate sends SIGTERM and waits for a clean exit.
func (s *server) terminate() int {
	s.t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(90 * time.Second):
		s.t.Fatalf("imbridge did not stop within 90s of SIGTERM:\n%s", s.log())
	}
	return s.cmd.ProcessState.ExitCode()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// textLine is a native p2p text line whose msgid identifies it.
func textLine(msgid int64) string {
	return fmt.Sprintf(`{"data":{"ext":"","clientType":"2","createTime":%d,"msgid":%d,"from":"u%d","to":"v","body":"消息 %d"},"type":0}`,
		1700000000000+msgid, msgid, msgid%97, msgid)
}

var client = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64},
}

// postNative posts body and returns the status.
func postNative(base, body string) (int, string, error) {
	req, _ := http.NewRequest("POST", base+"/v1/callbacks/native", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+nativeToken)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// ackSet records which msgids were answered 2xx, the longest wait for
// such an answer, and the requests that got no answer at all (connection
// refused or reset, timeout).
type ackSet struct {
	mu       sync.Mutex
	ids      map[int64]bool
	slowest  time.Duration
	failed   int
	firstErr error
}

func newAckSet() *ackSet { return &ackSet{ids: map[int64]bool{}} }

func (a *ackSet) add(id int64, took time.Duration) {
	a.mu.Lock()
	a.ids[id] = true
	a.slowest = max(a.slowest, took)
	a.mu.Unlock()
}

func (a *ackSet) fail(err error) {
	a.mu.Lock()
	a.failed++
	if a.firstErr == nil {
		a.firstErr = err
	}
	a.mu.Unlock()
}

// slowestAck is the longest wait for a 2xx answer.
func (a *ackSet) slowestAck() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.slowest
}

// failures is how many requests got no answer, and the first error.
func (a *ackSet) failures() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failed, a.firstErr
}

func (a *ackSet) snapshot() map[int64]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[int64]bool, len(a.ids))
	for k := range a.ids {
		out[k] = true
	}
	return out
}

// load posts one message per request from n workers until ctx ends. ids come
// from next; acknowledged ones go to acks, as do requests that got no answer;
// statuses other than 200 are counted in refused.
func load(ctx context.Context, base string, n int, next func() int64, acks *ackSet, refused *sync.Map) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				id := next()
				start := time.Now()
				code, body, err := postNative(base, textLine(id))
				switch {
				case err != nil:
					acks.fail(err)
					time.Sleep(5 * time.Millisecond) // server gone: try again shortly
				case code == 200:
					acks.add(id, time.Since(start))
				default:
					if refused != nil {
						refused.Store(id, fmt.Sprintf("%d %s", code, body))
					}
				}
			}
		}()
	}
	return &wg
}

type pullResult struct {
	lines  []json.RawMessage
	cursor uint64
	more   bool
	status int
}

// pull does one GET /v1/pull; cursor < 0 means "use the stored cursor".
func pull(tb testing.TB, base string, name string, cursor int64, limit int) pullResult {
	tb.Helper()
	u := fmt.Sprintf("%s/v1/pull?token=%s&name=%s", base, pullToken, name)
	if cursor >= 0 {
		u += fmt.Sprintf("&cursor=%d", cursor)
	}
	if limit > 0 {
		u += fmt.Sprintf("&limit=%d", limit)
	}
	resp, err := client.Get(u)
	if err != nil {
		tb.Fatalf("pull: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("pull body: %v", err)
	}
	r := pullResult{status: resp.StatusCode}
	if resp.StatusCode != 200 {
		return r
	}
	if !bytes.HasPrefix(body, []byte(`{"code":200,"data":[`)) || !bytes.HasSuffix(body, []byte(`]}`)) {
		tb.Fatalf("pull body is not exactly {\"code\":200,\"data\":[…]}: %.200s", body)
	}
	var env struct {
		Code int               `json:"code"`
		Data []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		tb.Fatalf("pull body: %v", err)
	}
	r.lines = env.Data
	r.cursor, _ = strconv.ParseUint(resp.Header.Get("X-Imbridge-Cursor"), 10, 64)
	r.more = resp.Header.Get("X-Imbridge-More") == "true"
	return r
}

// msgidOf extracts data.msgid from a line.
func msgidOf(tb testing.TB, line json.RawMessage) int64 {
	var v struct {
		Data struct {
			MsgID int64 `json:"msgid"`
		} `json:"data"`
	}
	if err := json.Unmarshal(line, &v); err != nil {
		tb.Fatalf("line %s: %v", line, err)
	}
	return v.Data.MsgID
}

// pullAllFrom pulls from cursor 0 until every id in want was seen or the
// deadline passes; it returns how often each msgid was delivered in that one
// pass over the log.
func pullAllFrom(tb testing.TB, base string, want map[int64]bool, within time.Duration) map[int64]int {
	tb.Helper()
	seen := map[int64]int{}
	var cursor uint64
	deadline := time.Now().Add(within)
	for {
		r := pull(tb, base, "audit", int64(cursor), 5000)
		if r.status != 200 {
			tb.Fatalf("pull status %d", r.status)
		}
		for _, l := range r.lines {
			seen[msgidOf(tb, l)]++
		}
		cursor = r.cursor
		missing := 0
		for id := range want {
			if seen[id] == 0 {
				missing++
			}
		}
		if missing == 0 && !r.more {
			return seen
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %v, %d of %d acknowledged messages were never pulled", within, missing, len(want))
		}
		if !r.more {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stoppableClickHouse is a ClickHouse of a test's own, so the test can stop it
// and start it again on the same port and data, under a running imbridge.
type stoppableClickHouse struct {
	t    testing.TB
	dir  string
	port int
	m    *store.Managed
}

func newStoppableClickHouse(t testing.TB) *stoppableClickHouse {
	t.Helper()
	c := &stoppableClickHouse{t: t, dir: t.TempDir()}
	c.start()
	t.Cleanup(func() { _ = c.m.Stop(context.Background()) })
	return c
}

func (c *stoppableClickHouse) dsn(db string) string { return c.m.DSN(db) }

func (c *stoppableClickHouse) start() {
	c.t.Helper()
	m, err := store.StartManaged(context.Background(), store.ManagedOptions{Dir: c.dir, Port: c.port})
	if err != nil {
		c.t.Fatal(err)
	}
	c.m, c.port = m, m.Port()
}

func (c *stoppableClickHouse) stop() {
	c.t.Helper()
	if err := c.m.Stop(context.Background()); err != nil {
		c.t.Fatal(err)
	}
}

// seqsByMsgID reads from ClickHouse the seq each msgid was given.
func seqsByMsgID(tb testing.TB, dsn string) map[int64]uint64 {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dsn, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	rows, err := st.Conn().Query(ctx, "SELECT msgid, seq FROM messages")
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]uint64{}
	for rows.Next() {
		var id int64
		var seq uint64
		if err := rows.Scan(&id, &seq); err != nil {
			tb.Fatal(err)
		}
		out[id] = seq
	}
	return out
}

// expectEachOnce fails the test for every acknowledged msgid that one pass
// of pulls did not deliver exactly once.
func expectEachOnce(tb testing.TB, seen map[int64]int, acked map[int64]bool) {
	tb.Helper()
	for id := range acked {
		if seen[id] != 1 {
			tb.Errorf("msgid %d delivered %d times, want exactly once", id, seen[id])
		}
	}
}

// expectNoneRefused fails the test for every message load saw refused.
func expectNoneRefused(tb testing.TB, refused *sync.Map) {
	tb.Helper()
	refused.Range(func(k, v any) bool {
		tb.Errorf("msgid %v refused while the spool had room: %v", k, v)
		return true
	})
}

// servedLines is every line served from cursor 0 to puller (a puller of the
// test's own, so stored cursors do not matter), with how often each came.
func servedLines(t *testing.T, base, puller string) map[string]int {
	t.Helper()
	out := map[string]int{}
	var cursor int64
	for {
		r := pull(t, base, puller, cursor, 5000)
		if r.status != 200 {
			t.Fatalf("pull status %d", r.status)
		}
		for _, l := range r.lines {
			out[string(l)]++
		}
		cursor = int64(r.cursor)
		if !r.more {
			return out
		}
	}
}

// send does req and returns the status and body.
func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
