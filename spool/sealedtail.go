package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
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
	if cerr := w.Close(); err == nil {
		err = cerr
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
