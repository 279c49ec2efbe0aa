package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// blocksOf hands InsertMessageChunks n chunks of size rows, seqs from 1,
// reusing one slice as the loader does; after the last block it returns
// none, or fails with failAt's error at that call (1-based; 0: never).
func blocksOf(n, size, failAt int, fail error) (next func() ([]store.Message, error), calls *int) {
	calls = new(int)
	buf := make([]store.Message, size)
	return func() ([]store.Message, error) {
		*calls++
		if *calls == failAt {
			return nil, fail
		}
		if *calls > n {
			return nil, nil
		}
		for i := range buf {
			buf[i] = row(uint64((*calls-1)*size + i + 1))
		}
		return buf, nil
	}, calls
}

// insertedParts counts the parts INSERTs made in the test's database (level
// 0), merged away or not.
func insertedParts(t *testing.T, s *store.Store) uint64 {
	t.Helper()
	var n uint64
	if err := s.Conn().QueryRow(context.Background(),
		"SELECT count() FROM system.parts WHERE database = ? AND table = 'messages' AND level = 0", s.Database()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func countRows(t *testing.T, s *store.Store) (rows, seqs uint64) {
	t.Helper()
	if err := s.Conn().QueryRow(context.Background(), "SELECT count(), uniqExact(seq) FROM messages").Scan(&rows, &seqs); err != nil {
		t.Fatal(err)
	}
	return rows, seqs
}

// An INSERT fed chunk by chunk (the loader's, a chunk of its batch at a
// time) stores every row once, in one part.
func TestInsertMessageChunksMakesOnePart(t *testing.T) {
	s := storetest.Open(t)
	next, calls := blocksOf(5, 1000, 0, nil)
	if err := s.InsertMessageChunks(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if *calls != 6 {
		t.Errorf("next called %d times, want 6 (5 chunks, then the end)", *calls)
	}
	if rows, seqs := countRows(t, s); rows != 5000 || seqs != 5000 {
		t.Errorf("%d rows (%d seqs), want 5000", rows, seqs)
	}
	if n := insertedParts(t, s); n != 1 {
		t.Errorf("the INSERT made %d parts, want 1", n)
	}
}

// When next fails midway, its error comes back as it is and the INSERT is
// abandoned with nothing in it: the chunks before stayed on our side (the
// server would commit whatever it had received, 18.16 taking a dropped
// connection for the end of the data). Once the server has ended the query
// (QueryRunning), nothing of it is stored.
func TestInsertMessageChunksAbandonsTheInsertWhenNextFails(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	broken := errors.New("spool read failed")
	next, _ := blocksOf(5, 1000, 3, broken)
	if err := s.InsertMessageChunks(store.WithQueryID(ctx, "abandoned-insert"), next); err != broken {
		t.Fatalf("err = %v, want next's own error", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		running, err := s.QueryRunning(ctx, "abandoned-insert")
		if err != nil {
			t.Fatal(err)
		}
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the abandoned INSERT still runs after 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rows, _ := countRows(t, s); rows != 0 {
		t.Errorf("%d rows stored by an abandoned INSERT, want 0", rows)
	}
	next, _ = blocksOf(1, 10, 0, nil)
	if err := s.InsertMessageChunks(ctx, next); err != nil {
		t.Fatalf("the next INSERT: %v", err)
	}
}

// A batch with nothing to insert (all recalls, or all stored already) sends
// no INSERT at all.
func TestInsertMessageChunksWithNoRowsSendsNothing(t *testing.T) {
	s := storetest.Open(t)
	next, calls := blocksOf(0, 10, 0, nil)
	if err := s.InsertMessageChunks(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if *calls != 1 || insertedParts(t, s) != 0 {
		t.Errorf("next called %d times, %d parts; want 1 call and no INSERT", *calls, insertedParts(t, s))
	}
}
