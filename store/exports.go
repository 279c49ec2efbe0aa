package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/ch-go/proto"
)

// ExportFilter selects the messages of a stock export: seq in (After, UpTo]
// (the snapshot fixed when the run starts) and, when set, create_time in
// [NotBefore, Before) (ms).
type ExportFilter struct {
	After, UpTo       uint64
	NotBefore, Before int64
}

// rangeWhere is the range part of the filter.
func (f ExportFilter) rangeWhere() (string, []any) {
	q := "seq > ? AND seq <= ?"
	args := []any{f.After, f.UpTo}
	if f.NotBefore != 0 {
		q += " AND create_time >= ?"
		args = append(args, f.NotBefore)
	}
	if f.Before != 0 {
		q += " AND create_time < ?"
		args = append(args, f.Before)
	}
	return q, args
}

// notSuperseded keeps out an original that a re-issued copy stored at most
// at snapshot replaces (rendered again with newer maps: a held message whose
// group got mapped, a media URL that got mapped). The reissues view is
// ordered by origin, so this reads only the copies of f's range.
func (f ExportFilter) notSuperseded(snapshot uint64) string {
	return "seq NOT IN (SELECT origin FROM reissues WHERE origin > " + strconv.FormatUint(f.After, 10) +
		" AND origin <= " + strconv.FormatUint(f.UpTo, 10) + " AND seq <= " + strconv.FormatUint(snapshot, 10) + ")"
}

// ExportCounts are what an export run finds in its range.
type ExportCounts struct {
	Rows         uint64 // to be written (before same-identity duplicates are dropped); superseded originals are not counted
	Held         uint64 // team messages of unmapped groups (without a mapped copy): not written
	Recalled     uint64 // recalled: not written
	UnmappedURLs uint64 // of Rows, media messages whose URL has no mapping yet
}

// CountExport counts what f selects.
func (s *Store) CountExport(ctx context.Context, f ExportFilter) (_ ExportCounts, err error) {
	defer wrap(&err, "store.CountExport(%d, %d]", f.After, f.UpTo)
	rng, args := f.rangeWhere()
	q := `SELECT
 countIf(held = 0 AND NOT recalled AND live),
 countIf(held = 1 AND NOT recalled AND live),
 countIf(recalled AND live),
 countIf(held = 0 AND NOT recalled AND live AND attach_url != '' AND attach_url NOT IN (SELECT old_url FROM url_map WHERE ` + committed + `))
 FROM (SELECT held, attach_url, (source, recall_key) IN (SELECT source, recall_key FROM recalls) AS recalled,
  ` + f.notSuperseded(f.UpTo) + ` AS live FROM messages WHERE ` + rng + `)`
	var c ExportCounts
	err = retryRead(ctx, func() error {
		return s.conn.QueryRow(ctx, q, args...).Scan(&c.Rows, &c.Held, &c.Recalled, &c.UnmappedURLs)
	})
	return c, err
}

// HeldGroup is a provider group whose messages are held for want of a team
// mapping.
type HeldGroup struct {
	Source   string `json:"source"`
	GroupID  string `json:"group_id"`
	Messages uint64 `json:"messages"`
}

// HeldGroups lists up to limit groups with held messages in f's range, the
// most held first, and how many groups there are in all.
func (s *Store) HeldGroups(ctx context.Context, f ExportFilter, limit int) (_ []HeldGroup, total uint64, err error) {
	defer wrap(&err, "store.HeldGroups")
	rng, args := f.rangeWhere()
	inner := "SELECT source, group_id, count() AS n FROM messages WHERE " + rng + " AND held = 1 AND " + NotRecalled +
		" AND " + f.notSuperseded(f.UpTo) + " GROUP BY source, group_id"
	var out []HeldGroup
	err = retryRead(ctx, func() error {
		out = out[:0]
		if err := s.conn.QueryRow(ctx, "SELECT toUInt64(count()) FROM ("+inner+")", args...).Scan(&total); err != nil {
			return err
		}
		rows, err := s.conn.Query(ctx, inner+" ORDER BY n DESC, source, group_id LIMIT "+strconv.Itoa(limit), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var g HeldGroup
			if err := rows.Scan(&g.Source, &g.GroupID, &g.Messages); err != nil {
				return err
			}
			out = append(out, g)
		}
		return rows.Err()
	})
	return out, total, err
}

// ExportWindow is how many seqs one export SELECT covers. An original
// that a re-issued copy in the snapshot replaces is left out (the copy is
// written instead). Within a window a Yunxin identity (msgid, from,
// to/tid, createTime) of an original is written once: a message stored
// twice because a callback and an import were further apart than the
// de-duplication window. Further apart, the second line repeats the first
// and Yunxin's overwrite rule (注1) makes it a no-op.
const ExportWindow = 1 << 18

// StreamExport calls fn with the scene, type and line of every message f
// selects (not held, not recalled, not superseded by a re-issued copy), in
// seq order, once per Yunxin identity within each window of ExportWindow
// seqs. It returns how many same-identity duplicates it left out. Memory stays constant on both
// sides: one window is read while the server prepares the next (at most two
// windows in flight, a few small batches buffered), so the server's sort of
// a window overlaps the writing of the one before.
func (s *Store) StreamExport(ctx context.Context, f ExportFilter, fn func(scene string, typ uint16, line string) error) (dups uint64, err error) {
	defer wrap(&err, "store.StreamExport(%d, %d]", f.After, f.UpTo)
	seen := newIdentities(ExportWindow)
	err = streamWindowBatches(ctx, f.After, f.UpTo, ExportWindow, func(ctx context.Context, lo, hi uint64, emit func(exportRow) bool) error {
		wf := f
		wf.After, wf.UpTo = lo, hi
		return s.fetchExportWindow(ctx, wf, f.UpTo, emit)
	}, seen.reset, func(batch []exportRow) error {
		seen.touch(batch)
		for i := range batch {
			r := &batch[i]
			scene, ok := r.scene()
			if !ok {
				return fmt.Errorf("a stored message's scene is neither p2p nor team (flags %#x)", r.flags)
			}
			if !r.copied() && !seen.add(r.identity) { // a copy is the newer rendering: always written
				dups++
				continue
			}
			if err := fn(scene, r.typ(), r.line); err != nil {
				return err
			}
		}
		return nil
	})
	return dups, err
}

type exportRow struct {
	identity uint64 // hash of the Yunxin identity
	flags    uint32 // exportFlags: type, scene and whether the row is a re-issued copy, packed by ClickHouse
	line     string
}

// exportFlags packs what the export needs of a row besides its line and
// identity into one UInt32: the type above bit 2, the scene in bits 1–2
// (0 p2p, 1 team, 2 anything else) and bit 0 for a re-issued copy. One
// column instead of three: the driver's per-row scan is a third of the
// export's CPU, and a scene string cost an allocation per row.
const exportFlags = "bitOr(bitShiftLeft(toUInt32(type), 3), bitOr(bitShiftLeft(toUInt32(multiIf(scene = 'p2p', 0, scene = 'team', 1, 2)), 1), toUInt32(origin != seq)))"

// exportScenes are the scenes exportFlags encodes, by code.
var exportScenes = [...]string{"p2p", "team"}

func (r exportRow) copied() bool { return r.flags&1 == 1 }
func (r exportRow) typ() uint16  { return uint16(r.flags >> 3) }
func (r exportRow) scene() (string, bool) {
	code := int(r.flags>>1) & 3
	if code >= len(exportScenes) {
		return "", false
	}
	return exportScenes[code], true
}

func (s *Store) fetchExportWindow(ctx context.Context, f ExportFilter, snapshot uint64, emit func(exportRow) bool) error {
	where, args := f.rangeWhere()
	q := "SELECT cityHash64(scene, msgid, from_account, to_account, tid, group_id, create_time) AS identity, " + exportFlags + " AS flags, line" +
		" FROM messages WHERE " + where + " AND held = 0 AND " + NotRecalled + " AND " + f.notSuperseded(snapshot) + " ORDER BY seq"
	if done, err := s.fetchExportBlocks(ctx, q, args, emit); done {
		return err
	}
	rows, err := s.conn.Query(lineBlocks(ctx), q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var r exportRow // scanned into through pointers: one allocation for the window, not one per row
	for rows.Next() {
		if err := rows.Scan(&r.identity, &r.flags, &r.line); err != nil {
			return err
		}
		if !emit(r) {
			return nil
		}
	}
	return rows.Err()
}

// fetchExportBlocks runs the export query q through the block reader.
// done is false when the reader cannot serve it and the driver should.
func (s *Store) fetchExportBlocks(ctx context.Context, q string, args []any, emit func(exportRow) bool) (done bool, err error) {
	var (
		identity proto.ColUInt64
		flags    proto.ColUInt32
		line     proto.ColStr
	)
	cols := proto.Results{{Name: "identity", Data: &identity}, {Name: "flags", Data: &flags}, {Name: "line", Data: &line}}
	return s.queryBlocks(ctx, q, args, cols, func(rows int) error {
		lines := detach(&line)
		for i := range rows {
			if !emit(exportRow{identity: identity[i], flags: flags[i], line: lines.at(i)}) {
				return errStopBlocks
			}
		}
		return nil
	})
}

// ExportRun is one row of export_runs.
type ExportRun struct {
	RunID, Status, Trigger, Mode, Dir string
	StartedAt, RecordedAt             time.Time
	Final                             bool
	BeforeMs, AfterMs                 int64
	SeqFrom, SeqTo                    uint64
	Files                             string // JSON array of file names
	Lines, P2PLines, TeamLines, Bytes uint64
	Held, Recalled, Duplicates        uint64
	UnmappedURLs                      uint64
	Error, Host                       string
	PID                               uint32
}

// RecordExportRun appends a state of a run.
func (s *Store) RecordExportRun(ctx context.Context, r ExportRun) (err error) {
	defer wrap(&err, "store.RecordExportRun(%s, %s)", r.RunID, r.Status)
	var final uint8
	if r.Final {
		final = 1
	}
	return s.insertRow(ctx, `INSERT INTO export_runs (run_id, status, trigger, mode, dir, started_at, recorded_at, final,
 before_ms, after_ms, seq_from, seq_to, files, lines, p2p_lines, team_lines, bytes, held, recalled, duplicates,
 unmapped_urls, error, host, pid)`,
		r.RunID, r.Status, r.Trigger, r.Mode, r.Dir, r.StartedAt.UTC(), r.RecordedAt.UTC(), final,
		r.BeforeMs, r.AfterMs, r.SeqFrom, r.SeqTo, r.Files, r.Lines, r.P2PLines, r.TeamLines, r.Bytes,
		r.Held, r.Recalled, r.Duplicates, r.UnmappedURLs, r.Error, r.Host, r.PID)
}

// LastExport is the latest run into dir that ended well: incremental runs
// into dir start after its seq_to (a run written elsewhere, say a trial
// into another --out, does not move dir's baseline). ok is false when no
// run into dir has succeeded yet.
func (s *Store) LastExport(ctx context.Context, dir string) (runID string, seqTo uint64, beforeMs, afterMs int64, ok bool, err error) {
	defer wrap(&err, "store.LastExport(%s)", dir)
	ok, err = s.firstRow(ctx, `SELECT run_id, seq_to, before_ms, after_ms FROM export_runs
 WHERE status = 'ok' AND final = 1 AND dir = ? ORDER BY seq_to DESC, recorded_at DESC LIMIT 1`, []any{dir},
		&runID, &seqTo, &beforeMs, &afterMs)
	return
}

// UnfinishedExports are runs in dir whose only state is 'running'.
func (s *Store) UnfinishedExports(ctx context.Context, dir string) (_ []ExportRun, err error) {
	defer wrap(&err, "store.UnfinishedExports")
	var out []ExportRun
	err = retryRead(ctx, func() error {
		out = out[:0]
		rows, err := s.conn.Query(ctx, `SELECT run_id, trigger, mode, started_at, before_ms, after_ms, seq_from, seq_to, host, pid
 FROM export_runs WHERE dir = ? GROUP BY run_id, trigger, mode, started_at, before_ms, after_ms, seq_from, seq_to, host, pid
 HAVING max(final) = 0`, dir)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r := ExportRun{Dir: dir, Status: "running"}
			if err := rows.Scan(&r.RunID, &r.Trigger, &r.Mode, &r.StartedAt, &r.BeforeMs, &r.AfterMs, &r.SeqFrom, &r.SeqTo, &r.Host, &r.PID); err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// CountSeqs counts the stored seqs (messages and recalls) in (after, upTo].
// Seqs are dense, so the range is complete when the count is upTo - after.
func (s *Store) CountSeqs(ctx context.Context, after, upTo uint64) (_ uint64, err error) {
	defer wrap(&err, "store.CountSeqs(%d, %d]", after, upTo)
	var m, r uint64
	err = retryRead(ctx, func() error {
		if err := s.conn.QueryRow(ctx, "SELECT count() FROM messages WHERE seq > ? AND seq <= ?", after, upTo).Scan(&m); err != nil {
			return err
		}
		return s.conn.QueryRow(ctx, "SELECT count() FROM recalls WHERE seq > ? AND seq <= ?", after, upTo).Scan(&r)
	})
	return m + r, err
}
