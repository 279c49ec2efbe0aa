package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// Pull and export of more rows than one 4096-row block against the test
// server (ClickHouse 18.16): every row comes back once, in seq order, and
// the server really sends blocks of at most 4096 rows (the setting is
// accepted, not ignored). The profile callback rides along on the caller's
// ctx, which lineBlocks extends rather than replaces.
func TestRegressLineBlocks(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	const n = 20000
	var rows []store.Message
	for i := uint64(1); i <= n; i++ {
		rows = append(rows, row(i))
	}
	if err := s.InsertMessages(ctx, rows); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var blocks, profRows uint64
	var version string
	if err := s.Conn().QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Logf("version: %v", err)
	}
	pctx := clickhouse.Context(ctx, clickhouse.WithProfileInfo(func(p *clickhouse.ProfileInfo) {
		mu.Lock()
		blocks += p.Blocks
		profRows += p.Rows
		mu.Unlock()
	}))

	var lines []string
	if err := s.StreamLines(pctx, store.LineFilter{After: 0, UpTo: n}, func(l string) error {
		lines = append(lines, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(lines) != n {
		t.Fatalf("pull: %d lines; want %d", len(lines), n)
	}
	for i, l := range lines {
		if want := fmt.Sprintf(`{"n":%d}`, i+1); l != want {
			t.Fatalf("pull: line %d = %s; want %s", i, l, want)
		}
	}
	t.Logf("server %s: pull profile: %d rows in %d blocks", version, profRows, blocks)
	if profRows == n && blocks < n/4096 {
		t.Errorf("pull: %d rows came in %d blocks: max_block_size 4096 not in effect", profRows, blocks)
	}

	blocks, profRows = 0, 0
	var got []string
	if _, err := s.StreamExport(pctx, store.ExportFilter{After: 0, UpTo: n}, func(scene string, typ uint16, line string) error {
		got = append(got, line)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("export: %d lines; want %d", len(got), n)
	}
	for i, l := range got {
		if want := fmt.Sprintf(`{"n":%d}`, i+1); l != want {
			t.Fatalf("export: line %d = %s; want %s", i, l, want)
		}
	}
	t.Logf("export profile: %d rows in %d blocks", profRows, blocks)
}
