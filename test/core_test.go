package test

import (
	"bufio"
	"context"
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// Many times spool.max_bytes pass through a small spool while ClickHouse
// keeps up: loaded records are released (after ClickHouse has them on disk)
// and the used-bytes figure comes back down, so nothing is ever refused.
func TestSmallSpoolUnderSustainedLoadRefusesNothing(t *testing.T) {
	const spoolBytes = 1 << 20
	s := startServer(t, t.TempDir(), "", "IMBRIDGE_SPOOL_MAX_BYTES=1MiB")
	acks, refused := newAckSet(), &sync.Map{}
	var next atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	wg := load(ctx, s.base, 16, func() int64 { return next.Add(1) }, acks, refused)
	// At least 200 bytes spooled per message: stop after 20 spools' worth.
	waitFor(t, 5*time.Minute, "20× spool.max_bytes through the spool", func() bool {
		return int64(len(acks.snapshot()))*200 > 20*spoolBytes
	})
	cancel()
	wg.Wait()
	expectNoneRefused(t, refused)
	acked := acks.snapshot()
	expectEachOnce(t, pullAllFrom(t, s.base, acked, 2*time.Minute), acked)
	if t.Failed() {
		t.Logf("acknowledged %d messages", len(acked))
	}
}

// A replaced machine: a new, empty data_dir against a ClickHouse that already
// holds messages. New seqs continue after the stored ones, the old messages
// are still delivered, a puller's stored cursor carries on, and a retry of
// an old message is still recognised.
func TestFreshDataDirOnAUsedDatabaseDeliversOldAndNew(t *testing.T) {
	dsn := storetest.NewDSN(t)
	old := startServer(t, t.TempDir(), dsn)
	for id := int64(1); id <= 30; id++ {
		if code, body, err := postNative(old.base, textLine(id)); err != nil || code != 200 {
			t.Fatalf("post %d: %d %s %v", id, code, body, err)
		}
	}
	// Yunxin takes the first 10 with its stored cursor.
	waitFor(t, time.Minute, "the first 30 loaded", func() bool { return len(pull(t, old.base, "audit", 0, 0).lines) == 30 })
	if r := pull(t, old.base, "yunxin", -1, 10); len(r.lines) != 10 {
		t.Fatalf("first pull: %d lines", len(r.lines))
	}
	waitFor(t, time.Minute, "the stored cursor", func() bool { return storedCursor(t, dsn, "yunxin") > 0 })
	old.terminate()

	s := startServer(t, t.TempDir(), dsn) // the new machine
	for id := int64(31); id <= 40; id++ {
		if code, body, err := postNative(s.base, textLine(id)); err != nil || code != 200 {
			t.Fatalf("post %d: %d %s %v", id, code, body, err)
		}
	}
	if code, body, _ := postNative(s.base, textLine(5)); code != 200 || !strings.Contains(body, `"duplicates":1`) {
		t.Errorf("retry of an old message on the new machine: %d %s, want it recognised as a duplicate", code, body)
	}
	want := map[int64]bool{}
	for id := int64(1); id <= 40; id++ {
		want[id] = true
	}
	expectEachOnce(t, pullAllFrom(t, s.base, want, time.Minute), want)
	seen := map[int64]bool{}
	waitFor(t, time.Minute, "Yunxin's stored cursor to deliver the rest", func() bool {
		for _, l := range pull(t, s.base, "yunxin", -1, 0).lines {
			seen[msgidOf(t, l)] = true
		}
		return len(seen) == 30
	})
	for id := int64(1); id <= 10; id++ {
		if seen[id] {
			t.Errorf("msgid %d was delivered again to a puller whose cursor had passed it", id)
		}
	}
}

// A puller that reads all but the last 600 KiB of a large response and then
// resets the connection did not receive it: its stored cursor stays, and the
// next pull starts where the lost one started.
func TestPullerThatResetsBeforeTheEndGetsItAgain(t *testing.T) {
	s := startServer(t, t.TempDir(), "")
	const n = 20000 // about 3 MB of lines
	var batch strings.Builder
	for id := int64(1); id <= n; id++ {
		batch.WriteString(textLine(id) + "\n")
		if id%2000 == 0 {
			if code, body, err := postNative(s.base, batch.String()); err != nil || code != 200 {
				t.Fatalf("post: %d %s %v", code, body, err)
			}
			batch.Reset()
		}
	}
	var total int
	waitFor(t, time.Minute, "all loaded", func() bool {
		r := pull(t, s.base, "audit", 0, 0)
		total = 0
		for _, l := range r.lines {
			total += len(l) + 1
		}
		return len(r.lines) == n
	})

	// The raw puller: headers, then the body up to 600 KiB before its end.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /v1/pull?token=%s HTTP/1.1\r\nHost: imbridge\r\n\r\n", pullToken)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pull: %v %v", resp, err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, int64(total-600<<10)); err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close() // RST: the last 600 KiB were never read

	waitFor(t, time.Minute, "the lost response recorded as not advanced", func() bool {
		return deliveries(t, s, "yunxin", "advanced = 0") == 1
	})
	if c := storedCursorOf(t, s, "yunxin"); c != 0 {
		t.Fatalf("the stored cursor moved to %d on a response the puller never finished", c)
	}
	r := pull(t, s.base, "yunxin", -1, 0)
	if len(r.lines) != n || msgidOf(t, r.lines[0]) != 1 {
		t.Fatalf("the next pull has %d lines starting at msgid %d, want all %d from msgid 1", len(r.lines), msgidOf(t, r.lines[0]), n)
	}
	waitFor(t, time.Minute, "the complete response advancing the cursor", func() bool {
		return storedCursorOf(t, s, "yunxin") >= n
	})
}

// `imbridge schema --apply` beside a busy serve on the managed ClickHouse
// attaches to serve's server: nothing refused, nothing lost, and the same
// clickhouse-server process before and after.
func TestSchemaApplyBesideServeRefusesNothing(t *testing.T) {
	dataDir := t.TempDir()
	s := startServer(t, dataDir, "")
	pid := managedPid(t, dataDir)
	acks, refused := newAckSet(), &sync.Map{}
	var next atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	wg := load(ctx, s.base, 8, func() int64 { return next.Add(1) }, acks, refused)
	for i := 0; i < 3; i++ {
		cmd := exec.Command(binary, "schema", "--apply")
		cmd.Env = s.env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("schema --apply: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "schema applied") {
			t.Fatalf("schema --apply said: %s", out)
		}
	}
	cancel()
	wg.Wait()
	expectNoneRefused(t, refused)
	if got := managedPid(t, dataDir); got != pid {
		t.Errorf("serve's clickhouse-server was pid %d, now %d: a command replaced it", pid, got)
	}
	if strings.Contains(s.log(), "exited unexpectedly") {
		t.Errorf("serve saw its ClickHouse die:\n%s", lastLines(s.log(), 20))
	}
	acked := acks.snapshot()
	expectEachOnce(t, pullAllFrom(t, s.base, acked, time.Minute), acked)
}

// A URL mapping written after a message was delivered re-issues it: the next
// pull carries it again, same msgid, with the new URL.
func TestURLMappingReissuesADeliveredMessage(t *testing.T) {
	s := startServer(t, t.TempDir(), "", "IMBRIDGE_ADMIN_TOKEN=admin-secret")
	image := `{"data":{"ext":"","clientType":"2","createTime":1700000000001,"msgid":77,"from":"a","to":"b","attach":"{\"ext\":\"jpg\",\"url\":\"https://old.example/a.jpg\"}"},"type":1}`
	if code, body, err := postNative(s.base, image); err != nil || code != 200 {
		t.Fatalf("post: %d %s %v", code, body, err)
	}
	waitFor(t, time.Minute, "the image delivered", func() bool { return len(pull(t, s.base, "yunxin", -1, 0).lines) == 1 })

	req, _ := http.NewRequest("POST", s.base+"/v1/admin/maps/url",
		strings.NewReader(`[{"Old":"https://old.example/a.jpg","New":"https://nim.example/a.jpg"}]`))
	req.Header.Set("Authorization", "Bearer admin-secret")
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin url map: %v %v", resp, err)
	}
	resp.Body.Close()
	var again []string
	waitFor(t, time.Minute, "the re-issued image", func() bool {
		for _, l := range pull(t, s.base, "yunxin", -1, 0).lines {
			again = append(again, string(l))
		}
		return len(again) > 0
	})
	if len(again) != 1 || msgidOf(t, []byte(again[0])) != 77 || !strings.Contains(again[0], `https://nim.example/a.jpg`) {
		t.Fatalf("re-issued lines %v: want the image once more, msgid 77, with the new URL", again)
	}
}

// managedPid is the pid of the managed clickhouse-server under dataDir.
func managedPid(t *testing.T, dataDir string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dataDir, "clickhouse", "server.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// storedCursor is a puller's stored cursor read straight from ClickHouse.
func storedCursor(t *testing.T, dsn, puller string) uint64 {
	t.Helper()
	st, err := store.Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := st.PullCursor(context.Background(), puller)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// managedDSN is the DSN of the managed server under a running serve.
func managedDSN(t *testing.T, s *server) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(s.dataDir, "clickhouse", "server.port"))
	if err != nil {
		t.Fatal(err)
	}
	return "clickhouse://127.0.0.1:" + strings.TrimSpace(string(raw)) + "/imbridge"
}

func storedCursorOf(t *testing.T, s *server, puller string) uint64 {
	return storedCursor(t, managedDSN(t, s), puller)
}

// deliveries counts a puller's deliveries matching cond.
func deliveries(t *testing.T, s *server, puller, cond string) int {
	t.Helper()
	return int(countIn(t, s, "SELECT count() FROM deliveries WHERE puller = ? AND "+cond, puller))
}
