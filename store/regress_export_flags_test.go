package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// From the review of fa03eda (packed flags column): against the test server
// (ClickHouse 18.16), every type up to 65535 — notifications 101–110
// included — in both scenes, originals and re-issued copies, comes back with
// its own scene and type; a same-identity original within the window is
// dropped once, a copy is always written, and a superseded original is not.
func TestRegressExportFlagsRoundTrip(t *testing.T) { bothReaders(t, testExportFlagsRoundTrip) }

// bothReaders runs test on a store whose streams go through the block
// reader and on one whose streams go through the driver.
func bothReaders(t *testing.T, test func(t *testing.T, s *store.Store)) {
	t.Run("block reader", func(t *testing.T) {
		s := storetest.Open(t)
		test(t, s)
		if store.BlockReaderServed(s) == 0 {
			t.Error("the block reader served no query: the driver did")
		}
	})
	t.Run("driver", func(t *testing.T) {
		s := storetest.Open(t)
		store.WithoutBlockReader(s)
		test(t, s)
	})
}

func testExportFlagsRoundTrip(t *testing.T, s *store.Store) {
	ctx := context.Background()
	types := []uint16{0, 1, 2, 3, 4, 6, 7, 8, 15, 16, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110,
		255, 256, 1023, 4095, 8191, 8192, 32767, 32768, 65534, 65535}
	type want struct {
		scene string
		typ   uint16
	}
	wants := map[string]want{}   // line -> what must come back
	mustNot := map[string]bool{} // lines that must not come back
	var rows []store.Message
	seq := uint64(0)
	next := func(scene string, typ uint16, msgid int64) store.Message {
		seq++
		r := row(seq)
		r.Scene, r.Type, r.MsgID = scene, typ, msgid
		if scene == "team" {
			r.To, r.TID = "", 42
		}
		return r
	}
	for _, scene := range []string{"p2p", "team"} {
		for _, typ := range types {
			a := next(scene, typ, int64(seq+1)) // an original
			rows = append(rows, a)
			wants[a.Line] = want{scene, typ}
			dup := next(scene, typ, a.MsgID) // same identity as a: dropped
			dup.CreateTime = a.CreateTime
			rows = append(rows, dup)
			mustNot[dup.Line] = true
			b := next(scene, typ, int64(seq+1)) // an original superseded by its copy
			rows = append(rows, b)
			mustNot[b.Line] = true
			c := next(scene, typ, b.MsgID) // b's re-issued copy
			c.Origin, c.CreateTime = b.Seq, b.CreateTime
			rows = append(rows, c)
			wants[c.Line] = want{scene, typ}
			c2 := next(scene, typ, a.MsgID) // a copy with a's identity (a not its origin): always written
			c2.Origin, c2.CreateTime = dup.Seq, a.CreateTime
			rows = append(rows, c2)
			wants[c2.Line] = want{scene, typ}
			mustNot[dup.Line] = true // dup is superseded by c2 as well
		}
	}
	if err := s.InsertMessages(ctx, rows); err != nil {
		t.Fatal(err)
	}
	got := map[string]want{}
	dups, err := s.StreamExport(ctx, store.ExportFilter{After: 0, UpTo: seq}, func(scene string, typ uint16, line string) error {
		if _, seen := got[line]; seen {
			return fmt.Errorf("line %s written twice", line)
		}
		got[line] = want{scene, typ}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for l, w := range wants {
		if g, ok := got[l]; !ok {
			t.Errorf("line %s (scene %s, type %d) not exported", l, w.scene, w.typ)
		} else if g != w {
			t.Errorf("line %s: exported as %s/%d; want %s/%d", l, g.scene, g.typ, w.scene, w.typ)
		}
	}
	for l := range got {
		if mustNot[l] {
			t.Errorf("line %s exported; it is a duplicate or superseded", l)
		}
	}
	if len(got) != len(wants) {
		t.Errorf("%d lines exported; want %d", len(got), len(wants))
	}
	t.Logf("%d lines, %d dups", len(got), dups)
}

// A plain duplicate (no copy involved) is counted and dropped once.
func TestRegressExportDupCount(t *testing.T) { bothReaders(t, testExportDupCount) }

func testExportDupCount(t *testing.T, s *store.Store) {
	ctx := context.Background()
	a, b, c := row(1), row(2), row(3)
	b.MsgID, b.CreateTime = a.MsgID, a.CreateTime
	c.MsgID, c.CreateTime, c.Scene, c.To, c.TID, c.Type = a.MsgID, a.CreateTime, "team", "", 7, 65535
	if err := s.InsertMessages(ctx, []store.Message{a, b, c}); err != nil {
		t.Fatal(err)
	}
	var lines []string
	var types []uint16
	dups, err := s.StreamExport(ctx, store.ExportFilter{After: 0, UpTo: 3}, func(scene string, typ uint16, line string) error {
		lines = append(lines, scene+" "+line)
		types = append(types, typ)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if dups != 1 || len(lines) != 2 || lines[0] != `p2p {"n":1}` || lines[1] != `team {"n":3}` || types[1] != 65535 {
		t.Fatalf("dups %d, lines %q, types %v", dups, lines, types)
	}
}
