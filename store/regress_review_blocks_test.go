package store_test

// Review of the native block reader (store/native.go): the tests here that
// fail on the reviewed code demonstrate bugs; the others pin behaviour the
// review checked and found right.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// reviewUsers is the managed server's users.xml plus users whose profiles
// set what a DBA may well set for every session of a user.
const reviewUsers = `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default><max_memory_usage>4000000000</max_memory_usage></default>
        <logs><max_memory_usage>4000000000</max_memory_usage><send_logs_level>information</send_logs_level></logs>
        <tracelogs><max_memory_usage>4000000000</max_memory_usage><send_logs_level>trace</send_logs_level><log_queries>1</log_queries></tracelogs>
        <extremes><max_memory_usage>4000000000</max_memory_usage><extremes>1</extremes></extremes>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <secret>
            <password>s3cr et</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </secret>
        <logs>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>logs</profile>
            <quota>default</quota>
        </logs>
        <tracelogs>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>tracelogs</profile>
            <quota>default</quota>
        </tracelogs>
        <extremes>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>extremes</profile>
            <quota>default</quota>
        </extremes>
    </users>
    <quotas><default></default></quotas>
</yandex>
`

// reviewServer starts a private ClickHouse with reviewUsers and returns
// its address once every user can log in. The managed-server code writes
// the config (and is stopped); the server is then started on it directly,
// as 18.16 does not reliably pick up a rewritten users.xml.
func reviewServer(t *testing.T, serverLogLevel string) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := store.StartManaged(ctx, store.ManagedOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	addr := m.Addr()
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(reviewUsers), 0o640); err != nil {
		t.Fatal(err)
	}
	// Debian's packaged config logs at trace; the managed one at warning,
	// which 18.16 also applies to what it sends clients.
	cfg, err := os.ReadFile(filepath.Join(dir, "config.xml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("<level>warning</level>"), []byte("<level>"+serverLogLevel+"</level>"), 1)
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), cfg, 0o640); err != nil {
		t.Fatal(err)
	}
	bin, err := store.FindServerBinary("")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--config-file=" + filepath.Join(dir, "config.xml")}
	if filepath.Base(bin) == "clickhouse" {
		args = append([]string{"server"}, args...)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	for _, u := range []struct{ user, password string }{{"secret", "s3cr et"}, {"logs", ""}, {"tracelogs", ""}, {"extremes", ""}} {
		for deadline := time.Now().Add(60 * time.Second); ; {
			c, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr},
				Auth: clickhouse.Auth{Username: u.user, Password: u.password, Database: "default"}})
			if err == nil {
				err = c.Ping(ctx)
				c.Close()
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("user %s cannot log in: %v", u.user, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return addr
}

// openAs opens a fresh database on addr as user, with n lines stored.
func openAs(t *testing.T, addr, userinfo, db string, n int) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.Open(ctx, fmt.Sprintf("clickhouse://%s@%s/%s", userinfo, addr, db), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	storetest.InsertLines(t, s, n)
	return s
}

func pullAll(s *store.Store, n uint64) ([]string, error) {
	var lines []string
	err := s.StreamLines(context.Background(), store.LineFilter{UpTo: n}, func(l string) error {
		lines = append(lines, l)
		return nil
	})
	return lines, err
}

func exportLines(s *store.Store, n uint64) ([]string, error) {
	var lines []string
	_, err := s.StreamExport(context.Background(), store.ExportFilter{UpTo: n}, func(scene string, typ uint16, line string) error {
		lines = append(lines, line)
		return nil
	})
	return lines, err
}

// The block reader against users configured as a DBA may configure them,
// on one private server that logs at trace (Debian's packaged config does).
// Run: go test -run TestReviewBlockReaderUsers ./store
func TestReviewBlockReaderUsers(t *testing.T) {
	addr := reviewServer(t, "trace")
	t.Run("send_logs_level=information", func(t *testing.T) { reviewLogPackets(t, addr) })
	t.Run("send_logs_level=trace", func(t *testing.T) { reviewTraceLogs(t, addr) })
	t.Run("password", func(t *testing.T) { reviewPassword(t, addr) })
	t.Run("extremes=1", func(t *testing.T) { reviewExtremes(t, addr) })
}

// A user whose profile sets send_logs_level (a DBA watching queries, or a
// profile shared with clickhouse-client users), on a server that logs at
// trace (Debian's packaged config): from client revision 54406 on, the
// server sends Log packets with every query. The driver reads them; the
// block reader does not know packet 10.
//
// At "information" the query's summary ("Read N rows ...") comes after the
// data: the reader fails the whole pull and export with "unexpected packet
// 10", after the server started answering, so there is no fallback.
func reviewLogPackets(t *testing.T, addr string) {
	const n = 100
	s := openAs(t, addr, "logs", "review_logs", n)
	if !store.HasBlockReader(s) {
		t.Fatal("the DSN should get the block reader")
	}
	for _, reader := range []string{"block reader", "driver"} {
		if reader == "driver" {
			store.WithoutBlockReader(s)
		}
		pulled, perr := pullAll(s, n)
		exported, eerr := exportLines(s, n)
		if perr != nil || eerr != nil || len(pulled) != n || len(exported) != n {
			t.Errorf("%s: pull %d lines, err %v; export %d lines, err %v; want %d lines each, no error",
				reader, len(pulled), perr, len(exported), eerr, n)
		}
	}
}

// At "trace" (or "debug") the first Log packet comes before the header
// block: the reader fails "before the query started", so every window's
// query runs on the server twice (the reader's, abandoned, then the
// driver's), and the reader never serves such a user.
func reviewTraceLogs(t *testing.T, addr string) {
	const n = 100
	s := openAs(t, addr, "tracelogs", "review_tracelogs", n)
	ctx := context.Background()
	pulled, err := pullAll(s, n) // served, by the driver in the end
	if err != nil || len(pulled) != n {
		t.Fatalf("pull: %d lines, err %v", len(pulled), err)
	}
	// Which pull queries the server started: the reader's carries its
	// SETTINGS clause, the driver's does not.
	if err := s.Conn().Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		t.Fatal(err)
	}
	var byReader, byDriver uint64
	if err := s.Conn().QueryRow(ctx, "SELECT countIf(query LIKE '%SETTINGS max_block_size = 4096%'), countIf(query NOT LIKE '%SETTINGS max_block_size%')"+
		" FROM system.query_log WHERE type = 1 AND query LIKE 'SELECT line FROM messages WHERE seq > %'").Scan(&byReader, &byDriver); err != nil {
		t.Fatal(err)
	}
	var line proto.ColStr
	rows := 0
	done, err := store.StreamBlocks(ctx, s, "SELECT line FROM messages WHERE seq > ? AND seq <= ?",
		[]any{uint64(0), uint64(n)}, proto.Results{{Name: "line", Data: &line}}, func(r int) error { rows += r; return nil })
	if !done || err != nil || rows != n || byDriver != 0 {
		t.Fatalf("reader: done %v, err %v, %d rows; the one pull's query started by the reader %d times and by the driver %d times;"+
			" want the reader to serve all %d lines, once", done, err, rows, byReader, byDriver, n)
	}
}

// A DSN with a password (with a space in it) and a database other than
// default: the block reader logs in and serves, it does not fall back.
func reviewPassword(t *testing.T, addr string) {
	const n = 5000
	s := openAs(t, addr, "secret:s3cr%20et", "review_secret", n)
	var line proto.ColStr
	rows := 0
	done, err := store.StreamBlocks(context.Background(), s, "SELECT line FROM messages WHERE seq > ? AND seq <= ?",
		[]any{uint64(0), uint64(n)}, proto.Results{{Name: "line", Data: &line}}, func(r int) error { rows += r; return nil })
	if !done || err != nil || rows != n {
		t.Fatalf("done %v, err %v, %d rows; want the reader to serve all %d", done, err, rows, n)
	}
}

// A user whose profile sets extremes=1. The block reader fails on the
// Extremes packet; the driver decodes it as two more rows (a pre-existing
// driver-path bug: min and max of every column come out as lines). Neither
// exports exactly the stored lines.
func reviewExtremes(t *testing.T, addr string) {
	const n = 100
	s := openAs(t, addr, "extremes", "review_extremes", n)
	for _, reader := range []string{"block reader", "driver"} {
		t.Run(reader, func(t *testing.T) {
			if reader == "driver" {
				store.WithoutBlockReader(s)
			}
			pulled, perr := pullAll(s, n)
			exported, eerr := exportLines(s, n)
			if perr != nil || eerr != nil || len(pulled) != n || len(exported) != n {
				t.Errorf("pull %d lines, err %v; export %d lines, err %v; want %d lines each, no error",
					len(pulled), perr, len(exported), eerr, n)
			}
		})
	}
}

// Cancelling the context while fn runs (the consumer is busy: a pull
// writing to its client, an export handing over a batch) must end the
// query. The reader's context.AfterFunc moves the deadline into the past,
// but the loop then calls deadline() before its next read and moves it
// back: the cancellation is lost and every remaining block is read and
// handed to fn.
func TestReviewBlockReaderCancelWhileFnRuns(t *testing.T) {
	s := storetest.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n proto.ColUInt64
	blocks, after := 0, 0
	_, err := store.QueryBlocks(ctx, s, "SELECT number AS n FROM system.numbers LIMIT 100000 SETTINGS max_block_size = 1000",
		proto.Results{{Name: "n", Data: &n}}, func(rows int) error {
			if blocks++; blocks == 1 {
				cancel()
				time.Sleep(100 * time.Millisecond) // the consumer is busy a moment
				return nil
			}
			after++
			return nil
		})
	if !errors.Is(err, context.Canceled) || after > 1 {
		t.Fatalf("err %v; %d blocks handed to fn after the cancellation; want context.Canceled and at most 1", err, after)
	}
}

// The same through StreamLines, as the pull uses it: its fn never fails,
// so after the puller went away the reader streams the rest of the window.
func TestReviewPullKeepsStreamingAfterCancel(t *testing.T) {
	s := storetest.Open(t)
	const n = 20000
	storetest.InsertLines(t, s, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lines := 0
	err := s.StreamLines(ctx, store.LineFilter{UpTo: n}, func(string) error {
		if lines++; lines == 1 {
			cancel()
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	})
	if err == nil || lines > 2*store.LineBlockRows {
		t.Fatalf("err %v; %d of %d lines handed over after a cancel at the first; want an error within two blocks", err, lines, n)
	}
}

// An exception after rows were handed over ends the query with the
// server's error and no fallback (no row is emitted twice), plain and
// compressed.
func TestReviewBlockReaderExceptionMidStream(t *testing.T) {
	s := storetest.Open(t)
	for _, compress := range []bool{false, true} {
		var n proto.ColUInt64
		rows := 0
		started, err := store.BlockReaderAt(store.ServerAddr(s), compress)(context.Background(),
			"SELECT number AS n FROM system.numbers WHERE NOT throwIf(number = 50000) LIMIT 100000 SETTINGS max_block_size = 1000",
			proto.Results{{Name: "n", Data: &n}}, func(r int) error { rows += r; return nil })
		code, ok := store.IsServerError(err)
		if !started || !ok || code == 0 || rows == 0 || rows > 50000 {
			t.Fatalf("compress %v: started %v, err %v (code %d), %d rows; want the server's exception after some rows", compress, started, err, code, rows)
		}
	}
}

// The compressed path really serves (the export comparison in
// TestBlockReaderExportMatchesTheDriver would pass on a silent fallback).
func TestReviewCompressedReaderServes(t *testing.T) {
	s := storetest.Open(t)
	const n = 20000
	storetest.InsertLines(t, s, n)
	var line proto.ColStr
	var got []string
	started, err := store.BlockReaderAt(store.ServerAddr(s), true)(context.Background(),
		"SELECT line FROM "+s.Database()+".messages ORDER BY seq SETTINGS max_block_size = 4096",
		proto.Results{{Name: "line", Data: &line}}, func(r int) error {
			for i := range r {
				got = append(got, line.Row(i))
			}
			return nil
		})
	want, perr := pullAll(s, n)
	if !started || err != nil || perr != nil || !slices.Equal(got, want) {
		t.Fatalf("started %v, err %v (pull err %v): %d lines, equal %v", started, err, perr, len(got), slices.Equal(got, want))
	}
}

// Every way a query ends (end of stream, an exception before and after
// rows, fn failing, cancellation before and during the query, a server
// that hangs up) leaves no connection and no goroutine behind.
func TestReviewBlockReaderLeavesNothingBehind(t *testing.T) {
	s := storetest.Open(t)
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	errFn := errors.New("fn failed")
	run := func() {
		var n proto.ColUInt64
		cols := proto.Results{{Name: "n", Data: &n}}
		nop := func(int) error { return nil }
		q := func(ctx context.Context, sql string, fn func(int) error) {
			_, _ = store.QueryBlocks(ctx, s, sql, cols, fn)
		}
		bg := context.Background()
		q(bg, "SELECT number AS n FROM system.numbers LIMIT 5000 SETTINGS max_block_size = 1000", nop)
		q(bg, "SELECT n FROM no_such_table", nop)
		q(bg, "SELECT number AS n FROM system.numbers WHERE NOT throwIf(number = 3000) LIMIT 5000 SETTINGS max_block_size = 1000", nop)
		q(bg, "SELECT number AS n FROM system.numbers LIMIT 5000 SETTINGS max_block_size = 1000", func(int) error { return errFn })
		done, cancel := context.WithCancel(bg)
		cancel()
		q(done, "SELECT number AS n FROM system.numbers LIMIT 5000", nop)
		ctx, cancel := context.WithCancel(bg)
		q(ctx, "SELECT number AS n FROM system.numbers LIMIT 100000 SETTINGS max_block_size = 1000", func(int) error { cancel(); return nil })
		cancel()
	}
	run() // warm up (the driver's pool, the runtime's pollers)
	time.Sleep(200 * time.Millisecond)
	fd0, g0 := fds(), runtime.NumGoroutine()
	for range 10 {
		run()
	}
	time.Sleep(200 * time.Millisecond)
	if fd1, g1 := fds(), runtime.NumGoroutine(); fd1 > fd0 || g1 > g0 {
		t.Fatalf("fds %d -> %d, goroutines %d -> %d after 60 queries", fd0, fd1, g0, g1)
	}
}

// The block reader honours what the driver honours in a DSN, or leaves
// the DSN to the driver. It does not: an http:// DSN (clickhouse-go speaks
// HTTP to that port) gets a native-protocol reader dialling the HTTP port,
// and compress=false (or another method) is overridden for a remote server.
func TestReviewBlockReaderDSNsItDoesNotHonour(t *testing.T) {
	s, err := store.New("http://127.0.0.1:8123/db", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if store.HasBlockReader(s) {
		t.Errorf("http:// DSN: a native-protocol block reader for %s", store.ServerAddr(s))
	}
	s2, err := store.New("clickhouse://10.0.0.5:9000/db?compress=false", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if store.HasBlockReader(s2) && store.BlockReaderCompresses(s2) {
		t.Errorf("compress=false: the block reader compresses")
	}
}

// Compressed blocks bigger than one compressed frame (ClickHouse splits at
// max_compress_block_size, 1 MiB): ~4 MiB blocks decode the same
// compressed and plain.
func TestReviewCompressedMultiFrameBlocks(t *testing.T) {
	s := storetest.Open(t)
	read := func(compress bool) []string {
		var col proto.ColStr
		var got []string
		started, err := store.BlockReaderAt(store.ServerAddr(s), compress)(context.Background(),
			"SELECT concat(toString(number), arrayStringConcat(arrayMap(x -> 'abcdefghij', range(100)))) AS s"+
				" FROM system.numbers LIMIT 20000 SETTINGS max_block_size = 4096",
			proto.Results{{Name: "s", Data: &col}}, func(r int) error {
				for i := range r {
					got = append(got, col.Row(i))
				}
				return nil
			})
		if !started || err != nil {
			t.Fatalf("compress %v: started %v, err %v", compress, started, err)
		}
		return got
	}
	plain, compressed := read(false), read(true)
	if len(plain) != 20000 || !slices.Equal(plain, compressed) {
		t.Fatalf("%d plain lines, %d compressed, equal %v", len(plain), len(compressed), slices.Equal(plain, compressed))
	}
}

// A pull on a context already cancelled (a puller gone before the query)
// reports the cancellation, as the driver does; the block reader's dial
// wraps it as ErrUnavailable ("clickhouse unavailable: dial ...: operation
// was canceled") with the context's error flattened to text.
func TestReviewCancelledBeforeDialIsNotUnavailable(t *testing.T) {
	s := storetest.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.StreamLines(ctx, store.LineFilter{UpTo: 10}, func(string) error { return nil })
	if !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("err %v; want context.Canceled, not ErrUnavailable", err)
	}
}
