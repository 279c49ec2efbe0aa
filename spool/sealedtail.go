package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// finishRotation completes a segment rotation that raft-wal left half done.
//
// An append that fills the tail segment writes the segment's index (sealing
// the file) and hands the rotation to the next segment to a goroutine of
// raft-wal's own. If the log is closed (a shutdown, the writer's periodic
// reopen) or the process dies before that goroutine records it, the meta
// store still names the sealed file as the open tail, and raft-wal v0.4.0's
// Open recovers it as the tail without rotating: every later append fails
// with "segment is sealed", after every restart. So before the log is
// opened, a sealed tail is recorded as sealed and a new tail segment is
// added after it, as the rotation would have done (raft-wal creates the
// missing file on Open).
func finishRotation(dir string, meta *metadb.BoltMetaDB, logger *slog.Logger) error {
	state, err := meta.Load(dir)
	if err != nil || len(state.Segments) == 0 {
		return err
	}
	tail := state.Segments[len(state.Segments)-1]
	if !tail.SealTime.IsZero() {
		return nil
	}
	w, err := segment.NewFiler(dir, fs.New()).RecoverTail(tail)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a rotation recorded before its file was created: Open creates it
	}
	if err != nil {
		return fmt.Errorf("spool: check the log's tail segment: %w", err)
	}
	sealed, indexStart, err := w.Sealed()
	last := w.LastIndex()
	if err == nil && sealed {
		err = indexCovers(dir, tail, w, indexStart, last)
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, errTornSeal) {
		// The seal's write was torn (a kill or power loss during it): the
		// records it did not commit are gone, the committed ones are read
		// through raft-wal's in-memory offsets. Recording this index would
		// make them unreadable, so the log is left as it is: it opens, reads
		// and loads, and refuses appends until someone repairs it.
		logger.Error("spool: the log's tail segment has a torn index; appends will fail until it is repaired (everything committed stays readable)",
			"segment", tail.ID, "last_seq", last, "err", err)
		return nil
	}
	if err != nil || !sealed {
		return err
	}
	now := time.Now()
	tail.SealTime, tail.MaxIndex, tail.IndexStart = now, last, indexStart
	state.Segments[len(state.Segments)-1] = tail
	state.Segments = append(state.Segments, types.SegmentInfo{
		ID:         state.NextSegmentID,
		BaseIndex:  last + 1,
		MinIndex:   last + 1,
		SizeLimit:  tail.SizeLimit,
		Codec:      tail.Codec,
		CreateTime: now,
	})
	state.NextSegmentID++
	if err := meta.CommitState(state); err != nil {
		return fmt.Errorf("spool: finish the log's rotation after segment %d: %w", tail.ID, err)
	}
	logger.Info("spool: finished a segment rotation the log left half done", "sealed_segment", tail.ID, "last_seq", last)
	return nil
}

// errTornSeal says a sealed tail's index does not cover its committed
// records.
var errTornSeal = errors.New("the index does not cover the committed records")

// indexCovers checks that the on-disk index of a sealed tail holds the
// offset of every committed record, as the recovered writer knows them. A
// write that sealed the segment but was torn inside its index frame leaves
// raft-wal reporting the file as sealed (with the index's position) although
// the seal was never committed; a segment sealed by a first write that was
// torn holds no committed record at all.
func indexCovers(dir string, tail types.SegmentInfo, w types.SegmentWriter, indexStart, last uint64) error {
	if last < tail.BaseIndex {
		return fmt.Errorf("%w: no committed record", errTornSeal)
	}
	offs, ok := w.(interface{ OffsetForFrame(uint64) (uint32, error) })
	if !ok {
		return fmt.Errorf("spool: raft-wal's segment writer has no OffsetForFrame")
	}
	f, err := os.Open(filepath.Join(dir, segment.FileName(tail)))
	if err != nil {
		return err
	}
	defer f.Close()
	n := last - tail.BaseIndex + 1
	index := make([]byte, 4*n)
	if _, err := f.ReadAt(index, int64(indexStart)); err != nil {
		return fmt.Errorf("%w: reading it: %v", errTornSeal, err)
	}
	for i := range n {
		want, err := offs.OffsetForFrame(tail.BaseIndex + i)
		if err != nil {
			return err
		}
		if got := binary.LittleEndian.Uint32(index[4*i:]); got != want {
			return fmt.Errorf("%w: record %d at offset %d, the index says %d", errTornSeal, tail.BaseIndex+i, want, got)
		}
	}
	return nil
}
