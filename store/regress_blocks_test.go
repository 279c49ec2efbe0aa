package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/imbridge/imbridge/store"
)

// Pull and export of more rows than one 4096-row block against the test
// server (ClickHouse 18.16): every row comes back once, in seq order, and
// the server really sends blocks of at most 4096 rows (the setting is
// accepted, not ignored). The profile callback rides along on the caller's
// ctx, which lineBlocks extends rather than replaces.
//
// Both readers: the driver's blocks are counted by its profile callback,
// the block reader's in TestBlockReaderAsksForBlocksOfLineBlockRows.
func TestRegressLineBlocks(t *testing.T) { bothReaders(t, testLineBlocks) }

func testLineBlocks(t *testing.T, s *store.Store) {
	ctx := context.Background()
	const n = 20000
	var rows []store.Message
	for i := uint64(1); i <= n; i++ {
		rows = append(rows, row(i))
	}
	if err := s.InsertMessages(ctx, rows); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		stream func(ctx context.Context, fn func(line string)) error
	}{
		{"pull", func(ctx context.Context, fn func(string)) error {
			return s.StreamLines(ctx, store.LineFilter{After: 0, UpTo: n}, func(l string) error { fn(l); return nil })
		}},
		{"export", func(ctx context.Context, fn func(string)) error {
			_, err := s.StreamExport(ctx, store.ExportFilter{After: 0, UpTo: n}, func(_ string, _ uint16, l string) error { fn(l); return nil })
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var blocks, profRows uint64
			pctx := clickhouse.Context(ctx, clickhouse.WithProfileInfo(func(p *clickhouse.ProfileInfo) {
				mu.Lock()
				blocks += p.Blocks
				profRows += p.Rows
				mu.Unlock()
			}))
			var lines []string
			if err := tc.stream(pctx, func(l string) { lines = append(lines, l) }); err != nil {
				t.Fatal(err)
			}
			if len(lines) != n {
				t.Fatalf("%d lines; want %d", len(lines), n)
			}
			for i, l := range lines {
				if want := fmt.Sprintf(`{"n":%d}`, i+1); l != want {
					t.Fatalf("line %d = %s; want %s", i, l, want)
				}
			}
			t.Logf("profile: %d rows in %d blocks", profRows, blocks)
			if profRows == n && blocks < n/4096 {
				t.Errorf("%d rows came in %d blocks: max_block_size 4096 not in effect", profRows, blocks)
			}
		})
	}
}
