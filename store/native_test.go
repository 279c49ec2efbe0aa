package store_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// exportAll runs a whole export of s's first n seqs and returns its lines,
// kept past the run as a writer's caller could keep them.
func exportAll(t *testing.T, s *store.Store, n uint64) []string {
	t.Helper()
	var lines []string
	if _, err := s.StreamExport(context.Background(), store.ExportFilter{UpTo: n}, func(scene string, typ uint16, line string) error {
		lines = append(lines, scene+" "+line)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return lines
}

// The block reader decodes each block into a buffer of its own: lines
// handed out from every block (many, of ~190 bytes) stay intact after the
// blocks after them were read, and match the driver's line for line.
// The same holds for compressed blocks (what the reader asks a server on
// another machine for).
func TestBlockReaderExportMatchesTheDriver(t *testing.T) {
	s := storetest.Open(t)
	const n = 30000
	storetest.InsertLines(t, s, n)
	native := exportAll(t, s, n)
	served := store.BlockReaderServed(s)
	store.CompressBlocks(s)
	compressed := exportAll(t, s, n)
	if served == 0 || store.BlockReaderServed(s) == served {
		t.Fatalf("the block reader served %d queries plain and %d compressed: the driver did the rest",
			served, store.BlockReaderServed(s)-served)
	}
	store.WithoutBlockReader(s)
	driver := exportAll(t, s, n)
	if len(native) != n || !slices.Equal(native, driver) || !slices.Equal(compressed, driver) {
		t.Fatalf("block reader gave %d lines, %d compressed, driver %d; equal: %v, %v",
			len(native), len(compressed), len(driver), slices.Equal(native, driver), slices.Equal(compressed, driver))
	}
}

func TestLoopbackAddresses(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9000": true, "localhost:9000": true, "[::1]:9000": true, "127.0.0.2:9000": true,
		"10.0.0.5:9000": false, "clickhouse.internal:9000": false, "[2001:db8::1]:9000": false,
	} {
		if got := store.Loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v; want %v", addr, got, want)
		}
	}
}

// A reader that cannot even start (here: a server that hangs up at once)
// leaves the export to the driver, which writes every line.
func TestExportFallsBackToTheDriverWhenTheReaderCannotStart(t *testing.T) {
	s := storetest.Open(t)
	storetest.InsertLines(t, s, 100)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	store.PointBlockReaderAt(s, ln.Addr().String())
	if lines := exportAll(t, s, 100); len(lines) != 100 {
		t.Fatalf("%d lines exported; want 100", len(lines))
	}
}

func TestBlockReaderReturnsTheServersException(t *testing.T) {
	s := storetest.Open(t)
	var n proto.ColUInt64
	started, err := store.QueryBlocks(context.Background(), s, "SELECT n FROM no_such_table", proto.Results{{Name: "n", Data: &n}},
		func(int) error { return nil })
	code, ok := store.IsServerError(err)
	if !ok || code != 60 || started { // UNKNOWN_TABLE
		t.Fatalf("started %v, err %v (code %d); want the server's UNKNOWN_TABLE (60)", started, err, code)
	}
}

// Cancelling the context ends an endless query promptly with ctx's error.
func TestBlockReaderStopsWhenCancelled(t *testing.T) {
	s := storetest.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n proto.ColUInt64
	blocks := 0
	done := make(chan error, 1)
	go func() {
		_, err := store.QueryBlocks(ctx, s, "SELECT number AS n FROM system.numbers SETTINGS max_block_size = 1000",
			proto.Results{{Name: "n", Data: &n}}, func(rows int) error {
				if blocks++; blocks == 3 {
					cancel()
				}
				return nil
			})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v; want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the query did not stop within 30 s of its cancellation")
	}
}

func TestBlockReaderUnreachableServerIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var n proto.ColUInt64
	started, err := store.BlockReaderAt(addr, false)(context.Background(), "SELECT 1 AS n", proto.Results{{Name: "n", Data: &n}},
		func(int) error { return nil })
	if started || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("started %v, err %v; want ErrUnavailable before starting", started, err)
	}
}

// The streams' queries ask for blocks of LineBlockRows rows, and the
// server sends no bigger ones.
func TestBlockReaderAsksForBlocksOfLineBlockRows(t *testing.T) {
	s := storetest.Open(t)
	const n = 20000
	storetest.InsertLines(t, s, n)
	var line proto.ColStr
	var blocks, rows, biggest int
	done, err := store.StreamBlocks(context.Background(), s, "SELECT line FROM messages WHERE seq > ? AND seq <= ?", []any{uint64(0), uint64(n)},
		proto.Results{{Name: "line", Data: &line}}, func(r int) error {
			blocks++
			rows += r
			biggest = max(biggest, r)
			return nil
		})
	if !done || err != nil || rows != n || biggest > store.LineBlockRows || blocks < n/store.LineBlockRows {
		t.Fatalf("done %v, err %v: %d rows in %d blocks, the biggest of %d rows; want %d rows in blocks of at most %d",
			done, err, rows, blocks, biggest, n, store.LineBlockRows)
	}
}

// Pull's lines, kept past their blocks, match the driver's.
func TestBlockReaderPullMatchesTheDriver(t *testing.T) {
	s := storetest.Open(t)
	const n = 30000
	storetest.InsertLines(t, s, n)
	pull := func() []string {
		var lines []string
		if err := s.StreamLines(context.Background(), store.LineFilter{UpTo: n}, func(l string) error {
			lines = append(lines, l)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return lines
	}
	native := pull()
	if store.BlockReaderServed(s) == 0 {
		t.Fatal("the block reader served no query: the driver did")
	}
	store.WithoutBlockReader(s)
	driver := pull()
	if len(native) != n || !slices.Equal(native, driver) {
		t.Fatalf("block reader gave %d lines, driver %d; equal: %v", len(native), len(driver), slices.Equal(native, driver))
	}
}

// Only a DSN the block reader can honour gets one: one server, plain TCP,
// no settings for the driver to send with every query.
func TestBlockReaderOnlyForDSNsItCanHonour(t *testing.T) {
	for dsn, want := range map[string]bool{
		"clickhouse://127.0.0.1:9000/db":                           true,
		"clickhouse://user:secret@ch1.internal:9000/db":            true,
		"clickhouse://ch1:9000,ch2:9000/db":                        false,
		"clickhouse://ch1:9000/db?secure=true":                     false,
		"clickhouse://ch1:9000/db?select_sequential_consistency=1": false,
	} {
		s, err := store.New(dsn, nil)
		if err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		if got := store.HasBlockReader(s); got != want {
			t.Errorf("%s: block reader %v; want %v", dsn, got, want)
		}
		s.Close()
	}
}
