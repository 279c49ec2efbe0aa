package spool

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
)

// The torn-seal case through the spool: records acknowledged before the
// seal batch; the seal batch's pwrite stopped inside its index frame (the
// process killed), so raft-wal never rotated. On restart finishRotation
// records the torn index as the segment's index, and the spool cannot read
// its own acknowledged records (here: Open fails reading the last one).
func TestRegressRotationTornSealSpool(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{DedupWindow: noDedup})
	n := 0
	for {
		recs := make([]Record, 2000)
		for j := range recs {
			recs[j] = smallRec(n + j)
		}
		if _, err := s.Append(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
		n += len(recs)
		if segs, _ := filepath.Glob(filepath.Join(dir, "*.wal")); len(segs) >= 2 {
			break
		}
	}
	time.Sleep(50 * time.Millisecond)
	s.Close()
	// Rewind the meta to before the rotation's commit, and tear the seal write.
	meta := &metadb.BoltMetaDB{}
	st, err := meta.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Segments) != 2 || st.Segments[0].SealTime.IsZero() {
		t.Fatalf("setup: %+v", st)
	}
	sealed := st.Segments[0]
	os.Remove(filepath.Join(dir, segment.FileName(st.Segments[1])))
	st.Segments = st.Segments[:1]
	st.Segments[0].SealTime, st.Segments[0].MaxIndex, st.Segments[0].IndexStart = time.Time{}, 0, 0
	st.NextSegmentID--
	if err := meta.CommitState(st); err != nil {
		t.Fatal(err)
	}
	meta.Close()
	tearSeal(t, dir, sealed, 1000) // the index's first 1000 slots made it to disk
	t.Logf("segment %d..%d sealed at %d; seal batch (last 2000 records) torn", sealed.BaseIndex, sealed.MaxIndex, sealed.IndexStart)

	s, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("records 1..%d were acknowledged; restart: %v", sealed.MaxIndex-2000, err)
	}
	defer s.Close()
	es, err := s.Read(1500, 1, 1<<20)
	if err != nil || len(es) != 1 || !bytes.HasPrefix(es[0].Data, []byte("000001499-")) {
		t.Errorf("read acknowledged seq 1500: %v %v", es, err)
	}
}
