// Package storetest gives tests a real ClickHouse: one private server per
// test package, started by the same managed-server code `imbridge serve`
// uses, and a fresh database per test. Set IMBRIDGE_TEST_CLICKHOUSE_DSN to
// use a running server instead. When no server can be had the tests fail;
// they never skip.
package storetest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
)

var (
	baseDSN string
	managed *store.Managed
	counter atomic.Int64
)

// Main starts the package's ClickHouse, runs the tests and stops the server.
// Call it from TestMain: os.Exit(storetest.Main(m)).
func Main(m *testing.M) int {
	if dsn := os.Getenv("IMBRIDGE_TEST_CLICKHOUSE_DSN"); dsn != "" {
		baseDSN = dsn
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "imbridge-ch-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "storetest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	managed, err = store.StartManaged(ctx, store.ManagedOptions{Dir: dir})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "storetest: no ClickHouse for the tests:", err)
		return 1
	}
	baseDSN = managed.DSN("default")
	code := m.Run()
	_ = managed.Stop(context.Background())
	return code
}

// Server is the package's managed server, nil when an external DSN is used.
func Server() *store.Managed { return managed }

// NewDSN returns the DSN of a database no other test uses. The database is
// created by store.Open.
func NewDSN(tb testing.TB) string {
	tb.Helper()
	if baseDSN == "" {
		tb.Fatal("storetest: call storetest.Main from TestMain")
	}
	name := strings.NewReplacer("/", "_", "-", "_", " ", "_", "#", "_").Replace(tb.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	db := fmt.Sprintf("t%d_%d_%s", os.Getpid(), counter.Add(1), name)
	dsn, err := store.WithDatabase(baseDSN, db)
	if err != nil {
		tb.Fatal(err)
	}
	return dsn
}

// Open returns a migrated store on a fresh database, dropped when the test
// ends.
func Open(tb testing.TB) *store.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.Open(ctx, NewDSN(tb), nil)
	if err != nil {
		tb.Fatalf("storetest: open: %v", err)
	}
	tb.Cleanup(func() {
		_ = s.Conn().Exec(context.Background(), "DROP DATABASE IF EXISTS "+s.Database())
		_ = s.Close()
	})
	return s
}

// InsertLines stores n messages with seqs 1..n and realistic text lines
// (about 190 bytes, Chinese included), for benchmarks of the read paths.
func InsertLines(tb testing.TB, s *store.Store, n int) {
	tb.Helper()
	body := strings.Repeat("消息", 20)
	for lo := 1; lo <= n; lo += 50000 {
		var rows []store.Message
		for i := lo; i < lo+50000 && i <= n; i++ {
			rows = append(rows, store.Message{Seq: uint64(i), Origin: uint64(i), Source: "bench", Scene: "p2p", MsgID: int64(i), From: "a", To: "b",
				CreateTime: 1700000000000, ClientType: 2, ReceivedAt: time.Now().UnixMilli(),
				Line: fmt.Sprintf(`{"data":{"ext":"","clientType":"2","createTime":1700000000000,"msgid":%d,"from":"a","to":"b","body":"%s"},"type":0}`, i, body)})
		}
		if err := s.InsertMessages(context.Background(), rows); err != nil {
			tb.Fatal(err)
		}
	}
}
