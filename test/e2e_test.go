package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store/storetest"
)

func TestManagedServeStopsCleanlyOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, "")
	raw, err := os.ReadFile(filepath.Join(dir, "clickhouse", "server.pid"))
	if err != nil {
		t.Fatalf("managed clickhouse wrote no pid file: %v", err)
	}
	if code := s.terminate(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM:\n%s", code, s.log())
	}
	pid := strings.TrimSpace(string(raw))
	waitFor(t, 10*time.Second, "clickhouse-server "+pid+" to end", func() bool {
		_, err := os.Stat("/proc/" + pid)
		return err != nil
	})
}

func TestBadConfigurationIsOneLineAndStatus2(t *testing.T) {
	for _, test := range []struct {
		env  []string
		want string
	}{
		{[]string{"IMBRIDGE_LISTEN=bogus", "IMBRIDGE_PULL_TOKEN=x"}, `IMBRIDGE_LISTEN: "bogus" is not host:port`},
		{[]string{"IMBRIDGE_PULL_TOKEN="}, `IMBRIDGE_PULL_TOKEN: must be set`},
		{[]string{"IMBRIDGE_PULL_TOKEN=x", "IMBRIDGE_MIGRATION_CUTOFF=soon"}, `IMBRIDGE_MIGRATION_CUTOFF: "soon" is not an RFC 3339 time`},
	} {
		cmd := exec.Command(binary, "serve")
		cmd.Env = append(os.Environ(), test.env...)
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: err %v, want exit status 2; output %s", test.env, err, out)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], test.want) {
			t.Errorf("%v: output %q, want one line containing %q", test.env, out, test.want)
		}
	}
}

func TestBadMessageAmongGoodStoresNothing(t *testing.T) {
	s := startServer(t, t.TempDir(), storetest.NewDSN(t))
	body := textLine(1) + "\n" + textLine(2) + "\n" +
		`{"data":{"clientType":16,"createTime":1700000000000,"msgid":3,"accid":"a","body":"x"},"type":0}` + "\n" + textLine(4)
	code, resp, err := postNative(s.base, body)
	if err != nil {
		t.Fatal(err)
	}
	if code != 400 || !strings.Contains(resp, `"line":3`) || !strings.Contains(resp, "data.tid") {
		t.Fatalf("got %d %s, want 400 naming line 3 and data.tid", code, resp)
	}
	// A later good message is served alone: nothing of the bad request was stored.
	if code, resp, _ := postNative(s.base, textLine(5)); code != 200 {
		t.Fatalf("good message: %d %s", code, resp)
	}
	seen := pullAllFrom(t, s.base, map[int64]bool{5: true}, 30*time.Second)
	if len(seen) != 1 {
		t.Errorf("pull returned %v, want only msgid 5", seen)
	}
}

func TestRetriedMessageIsStoredOnceAcrossRestart(t *testing.T) {
	dir, dsn := t.TempDir(), storetest.NewDSN(t)
	s := startServer(t, dir, dsn)
	for i := 0; i < 2; i++ {
		if code, resp, _ := postNative(s.base, textLine(7)); code != 200 {
			t.Fatalf("post: %d %s", code, resp)
		}
	}
	pullAllFrom(t, s.base, map[int64]bool{7: true}, 30*time.Second)
	s.terminate()
	s = startServer(t, dir, dsn)
	if code, resp, _ := postNative(s.base, textLine(7)); code != 200 || !strings.Contains(resp, `"duplicates":1`) {
		t.Fatalf("retry after restart: %d %s, want 200 with the duplicate dropped", code, resp)
	}
	if code, _, _ := postNative(s.base, textLine(8)); code != 200 {
		t.Fatal("post 8")
	}
	seen := pullAllFrom(t, s.base, map[int64]bool{7: true, 8: true}, 30*time.Second)
	if seen[7] != 1 || len(seen) != 2 {
		t.Errorf("delivered %v, want msgid 7 once and 8 once", seen)
	}
}

func TestKill9DuringLoadLosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, "") // the default: managed ClickHouse
	acks := newAckSet()
	var next atomic.Int64
	for round := 0; round < 3; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		wg := load(ctx, s.base, 16, func() int64 { return next.Add(1) }, acks, nil)
		waitFor(t, 30*time.Second, "some acknowledged messages", func() bool { return len(acks.snapshot()) > (round+1)*300 })
		s.kill() // kill -9 with requests in flight
		cancel()
		wg.Wait()
		s.start()
	}
	want := acks.snapshot()
	t.Logf("%d messages acknowledged across 3 kill -9s", len(want))
	seen := pullAllFrom(t, s.base, want, 60*time.Second)
	expectEachOnce(t, seen, want)
	for id, n := range seen {
		if n > 1 {
			t.Errorf("msgid %d (not necessarily acknowledged) delivered %d times", id, n)
		}
	}
}

func TestClickHouseOutageKeepsAcceptingAndDeliversEverything(t *testing.T) {
	ch := newStoppableClickHouse(t)
	s := startServer(t, t.TempDir(), ch.dsn("outage"))

	acks := newAckSet()
	var refused sync.Map
	var next atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	wg := load(ctx, s.base, 8, func() int64 { return next.Add(1) }, acks, &refused)
	waitFor(t, 30*time.Second, "load to start", func() bool { return len(acks.snapshot()) > 200 })

	ch.stop()
	before := len(acks.snapshot())
	outage := time.Now()
	waitFor(t, 60*time.Second, "ingest to go on during the outage", func() bool {
		return len(acks.snapshot()) > before+2000 && time.Since(outage) > 20*time.Second
	})
	during := len(acks.snapshot()) - before
	ch.start()
	waitFor(t, 30*time.Second, "more load after the outage", func() bool { return len(acks.snapshot()) > before+during+200 })
	cancel()
	wg.Wait()

	expectNoneRefused(t, &refused)
	want := acks.snapshot()
	t.Logf("%d acknowledged, %d during a %v ClickHouse outage", len(want), during, time.Since(outage).Round(time.Second))
	seen := pullAllFrom(t, s.base, want, 90*time.Second)
	expectEachOnce(t, seen, want)
}

func TestConcurrentPullsNeverSkip(t *testing.T) {
	dsn := storetest.NewDSN(t)
	s := startServer(t, t.TempDir(), dsn)
	acks := newAckSet()
	var next atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	wg := load(ctx, s.base, 8, func() int64 { return next.Add(1) }, acks, nil)

	// Two pullers using their stored cursors, concurrently with ingest.
	type got struct {
		ids     []int64
		cursors []uint64
	}
	results := make([]got, 2)
	var mu sync.Mutex // guards results
	var unavailable atomic.Int64
	var pw sync.WaitGroup
	stop := make(chan struct{})
	for p := range results {
		pw.Add(1)
		go func(p int) {
			defer pw.Done()
			name := fmt.Sprintf("puller%d", p)
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := pull(t, s.base, name, -1, 100+p*900)
				if r.status == 503 { // "retry later" is a valid answer; a retry must not skip
					unavailable.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				if r.status != 200 {
					t.Errorf("pull status %d", r.status)
					return
				}
				mu.Lock()
				for _, l := range r.lines {
					results[p].ids = append(results[p].ids, msgidOf(t, l))
				}
				results[p].cursors = append(results[p].cursors, r.cursor)
				mu.Unlock()
			}
		}(p)
	}
	waitFor(t, 60*time.Second, "ingest and pulls to interleave", func() bool { return len(acks.snapshot()) > 3000 })
	cancel()
	wg.Wait()
	want := acks.snapshot()
	// Keep pulling until both pullers have caught up with everything acknowledged.
	waitFor(t, 60*time.Second, "pullers to catch up", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for p := range results {
			have := map[int64]bool{}
			for _, id := range results[p].ids {
				have[id] = true
			}
			for id := range want {
				if !have[id] {
					return false
				}
			}
		}
		return true
	})
	close(stop)
	pw.Wait()
	seqOf := seqsByMsgID(t, dsn)
	for p, r := range results {
		if !sort.SliceIsSorted(r.cursors, func(i, j int) bool { return r.cursors[i] < r.cursors[j] }) {
			t.Errorf("puller %d: stored cursor went backwards", p)
		}
		counts := map[int64]int{}
		for _, id := range r.ids {
			counts[id]++
		}
		for id, n := range counts {
			if n > 1 {
				t.Errorf("puller %d got msgid %d %d times through its stored cursor", p, id, n)
			}
		}
		t.Logf("puller %d: %d messages in %d pulls", p, len(r.ids), len(r.cursors))
		// Cursor after cursor, the lines came in seq order.
		for i := 1; i < len(r.ids); i++ {
			if seqOf[r.ids[i]] <= seqOf[r.ids[i-1]] {
				t.Errorf("puller %d: msgid %d (seq %d) came after msgid %d (seq %d)", p,
					r.ids[i], seqOf[r.ids[i]], r.ids[i-1], seqOf[r.ids[i-1]])
				break
			}
		}
	}
	if n := unavailable.Load(); n > 0 {
		t.Logf("%d pulls answered 503 and were retried", n)
	}
}

func TestFullSpoolAnswers503UntilClickHouseReturns(t *testing.T) {
	ch := newStoppableClickHouse(t)
	s := startServer(t, t.TempDir(), ch.dsn("full"), "IMBRIDGE_SPOOL_MAX_BYTES=1MiB")
	ch.stop()
	acks := map[int64]bool{}
	var id int64
	var refusal string
	for deadline := time.Now().Add(60 * time.Second); refusal == ""; {
		if time.Now().After(deadline) {
			t.Fatalf("the 1 MiB spool never filled (%d messages acknowledged)", len(acks))
		}
		id++
		code, body, err := postNative(s.base, textLine(id))
		if err != nil {
			t.Fatal(err)
		}
		switch code {
		case 200:
			acks[id] = true
		case 503:
			refusal = body
		default:
			t.Fatalf("status %d %s while filling the spool, want 200 or 503", code, body)
		}
	}
	if !strings.Contains(refusal, "spool full") {
		t.Errorf("503 body %q does not say the spool is full", refusal)
	}
	if code := s.status("/readyz"); code != 503 {
		t.Errorf("/readyz = %d while the spool is full and ClickHouse is down, want 503", code)
	}
	t.Logf("%d messages acknowledged before the 1 MiB spool filled", len(acks))

	ch.start()
	// The refused message is accepted once the loader has made room.
	waitFor(t, 60*time.Second, "the refused message to be accepted", func() bool {
		code, _, err := postNative(s.base, textLine(id))
		return err == nil && code == 200
	})
	acks[id] = true
	seen := pullAllFrom(t, s.base, acks, 60*time.Second)
	expectEachOnce(t, seen, acks)
}

func TestManagedClickHouseKilledIsRestarted(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, "")
	acks := newAckSet()
	var refused sync.Map
	var next atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	wg := load(ctx, s.base, 8, func() int64 { return next.Add(1) }, acks, &refused)
	waitFor(t, 30*time.Second, "load to start", func() bool { return len(acks.snapshot()) > 200 })

	pidFile := filepath.Join(dir, "clickhouse", "server.pid")
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	oldPid := strings.TrimSpace(string(raw))
	if err := exec.Command("kill", "-9", oldPid).Run(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "a new clickhouse-server", func() bool {
		raw, err := os.ReadFile(pidFile)
		return err == nil && strings.TrimSpace(string(raw)) != oldPid
	})
	waitFor(t, 60*time.Second, "readiness after the restart", func() bool { return s.status("/readyz") == 200 })
	before := len(acks.snapshot())
	waitFor(t, 30*time.Second, "more load after the restart", func() bool { return len(acks.snapshot()) > before+200 })
	cancel()
	wg.Wait()
	expectNoneRefused(t, &refused)
	want := acks.snapshot()
	seen := pullAllFrom(t, s.base, want, 90*time.Second)
	expectEachOnce(t, seen, want)
	t.Logf("%d acknowledged around a kill -9 of the managed ClickHouse", len(want))
}

func TestPullServesFromTheCutoff(t *testing.T) {
	// textLine(id) is created at 1700000000000+id ms; the cutoff falls between 10 and 11.
	cutoff := time.UnixMilli(1700000000000 + 11).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	s := startServer(t, t.TempDir(), storetest.NewDSN(t), "IMBRIDGE_MIGRATION_CUTOFF="+cutoff)
	var body strings.Builder
	for id := int64(1); id <= 20; id++ {
		body.WriteString(textLine(id) + "\n")
	}
	if code, resp, _ := postNative(s.base, body.String()); code != 200 {
		t.Fatalf("post: %d %s", code, resp)
	}
	want := map[int64]bool{}
	for id := int64(11); id <= 20; id++ {
		want[id] = true
	}
	seen := pullAllFrom(t, s.base, want, 30*time.Second)
	if len(seen) != 10 {
		t.Errorf("pulled %v, want exactly msgids 11–20 (created at or after the cutoff)", seen)
	}
}

func TestStartsAndAcceptsWhileClickHouseIsDown(t *testing.T) {
	ch := newStoppableClickHouse(t)
	s := startServer(t, t.TempDir(), ch.dsn("down_at_start"))
	acks := map[int64]bool{}
	post := func(id int64) {
		t.Helper()
		if code, body, err := postNative(s.base, textLine(id)); err != nil || code != 200 {
			t.Fatalf("post %d: %d %s %v", id, code, body, err)
		}
		acks[id] = true
	}
	for id := int64(1); id <= 50; id++ {
		post(id)
	}
	ch.stop()
	s.kill() // kill -9 while ClickHouse is down
	s.waitFor = "/healthz"
	s.start() // ClickHouse still down: imbridge must come up and take callbacks
	if code := s.status("/readyz"); code != 503 {
		t.Errorf("/readyz = %d with ClickHouse down, want 503", code)
	}
	for id := int64(51); id <= 100; id++ {
		post(id)
	}
	ch.start()
	seen := pullAllFrom(t, s.base, acks, 90*time.Second)
	expectEachOnce(t, seen, acks)
}
