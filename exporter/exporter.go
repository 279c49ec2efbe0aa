// Package exporter writes the stock-history files Yunxin imports (section
// 4.1 of the migration document): one Yunxin line per line, p2p and team in
// separate files, in a folder per run with a manifest.json, recorded in the
// export_runs table. The same Run serves the export.schedule cron job in
// serve and the `imbridge export` command.
package exporter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/imbridge/imbridge/store"
)

// Store is what an export reads and records.
type Store interface {
	MaxSeq(ctx context.Context) (uint64, error)
	CountSeqs(ctx context.Context, after, upTo uint64) (uint64, error)
	CountExport(ctx context.Context, f store.ExportFilter) (store.ExportCounts, error)
	HeldGroups(ctx context.Context, f store.ExportFilter, limit int) ([]store.HeldGroup, uint64, error)
	StreamExport(ctx context.Context, f store.ExportFilter, fn func(scene string, typ uint16, line string) error) (dups uint64, err error)
	RecordExportRun(ctx context.Context, r store.ExportRun) error
	LastExport(ctx context.Context, dir string) (runID string, seqTo uint64, beforeMs, afterMs int64, ok bool, err error)
	UnfinishedExports(ctx context.Context, dir string) ([]store.ExportRun, error)
}

// Options are the export.* settings.
type Options struct {
	Dir          string // export.dir
	MaxFileBytes int64  // export.max_file_bytes: split files past this many (uncompressed) bytes; 0 = never
	Gzip         bool   // export.gzip
	Logger       *slog.Logger
}

// Request is one run.
type Request struct {
	Trigger string    // "schedule" or "command"
	Out     string    // folder for the run's folder; "" = Options.Dir
	Before  time.Time // messages created before it (migration.cutoff, --before); zero = no bound
	After   time.Time // messages created at or after it (--after); zero = no bound
	// Full exports the whole stored history; otherwise a run takes what was
	// stored since the last successful run with the same bounds.
	Full bool
	// Progress, when set, is told the number of lines to expect and then
	// each line written.
	Progress func(total uint64) Progress
}

// Progress follows a run.
type Progress interface {
	Add(n int)
	Finish()
}

// ErrBusy means another export is writing to the same folder.
var ErrBusy = errors.New("another export is running in this folder")

// Manifest is manifest.json: what a run wrote and what it left out.
type Manifest struct {
	RunID       string     `json:"run_id"`
	Trigger     string     `json:"trigger"`
	Mode        string     `json:"mode"` // full or incremental
	PreviousRun string     `json:"previous_run,omitempty"`
	StartedAt   time.Time  `json:"started_at"`
	FinishedAt  time.Time  `json:"finished_at"`
	Cutoff      *time.Time `json:"cutoff"` // messages created before it; null = no bound
	After       *time.Time `json:"after"`  // messages created at or after it; null = no bound
	// The snapshot: messages stored with seq in (SeqFrom, SeqTo].
	SeqFrom uint64 `json:"seq_from"`
	SeqTo   uint64 `json:"seq_to"`
	Files   []File `json:"files"`
	Lines   uint64 `json:"lines"`
	P2P     uint64 `json:"p2p_lines"`
	Team    uint64 `json:"team_lines"`
	// Held: team messages of groups without a team mapping, not written.
	Held struct {
		Messages    uint64            `json:"messages"`
		GroupsTotal uint64            `json:"groups_total"`
		Groups      []store.HeldGroup `json:"groups"` // the 100 groups with the most held messages
	} `json:"held"`
	Recalled     uint64 `json:"recalled"`      // recalled messages, not written
	Duplicates   uint64 `json:"duplicates"`    // stored twice under one Yunxin identity: written once
	UnmappedURLs uint64 `json:"unmapped_urls"` // lines written whose media URL has no URL mapping yet
}

// Exporter runs exports.
type Exporter struct {
	st     Store
	opts   Options
	logger *slog.Logger
	now    func() time.Time
}

// New returns an exporter.
func New(st Store, opts Options) *Exporter {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Exporter{st: st, opts: opts, logger: opts.Logger, now: time.Now}
}

func msOf(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// Run performs one export. Its files appear only when it succeeds: they are
// written in a hidden folder, fsync'd and renamed, and the folder gets its
// final name (the run id) last. A run that fails removes its folder and
// records why; one that was killed is found and recorded by the next run in
// the same folder.
func (e *Exporter) Run(ctx context.Context, req Request) (_ *Manifest, err error) {
	dir := req.Out
	if dir == "" {
		dir = e.opts.Dir
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	started := e.now()
	runID := started.UTC().Format("20060102T150405Z") + "-" + randomHex(3)
	e.reapKilled(ctx, dir, runID)

	f := store.ExportFilter{NotBefore: msOf(req.After), Before: msOf(req.Before)}
	m := &Manifest{RunID: runID, Trigger: req.Trigger, Mode: "full", StartedAt: started.UTC()}
	if !req.Before.IsZero() {
		t := req.Before.UTC()
		m.Cutoff = &t
	}
	if !req.After.IsZero() {
		t := req.After.UTC()
		m.After = &t
	}
	if f.UpTo, err = e.st.MaxSeq(ctx); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if !req.Full {
		prev, seqTo, beforeMs, afterMs, ok, err := e.st.LastExport(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		switch {
		case ok && (beforeMs != f.Before || afterMs != f.NotBefore):
			e.logger.Warn("the last successful export had other bounds (cutoff/after): this run exports everything", "previous_run", prev)
		case ok:
			f.After, m.Mode, m.PreviousRun = min(seqTo, f.UpTo), "incremental", prev
		}
	}
	if f.UpTo, err = e.completeUpTo(ctx, f.After, f.UpTo); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	m.SeqFrom, m.SeqTo = f.After, f.UpTo

	run := store.ExportRun{RunID: runID, Status: "running", Trigger: req.Trigger, Mode: m.Mode, Dir: dir,
		StartedAt: started, BeforeMs: f.Before, AfterMs: f.NotBefore, SeqFrom: f.After, SeqTo: f.UpTo,
		Host: hostname(), PID: uint32(os.Getpid())}
	run.RecordedAt = started
	if err := e.st.RecordExportRun(ctx, run); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	partial := filepath.Join(dir, "."+runID+".partial")
	defer func() {
		if err == nil {
			return
		}
		_ = os.RemoveAll(partial)
		run.Status, run.Final, run.Error, run.RecordedAt = "failed", true, err.Error(), e.now()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := e.st.RecordExportRun(rctx, run); rerr != nil {
			e.logger.Error("recording a failed export run failed", "run", runID, "err", rerr)
		}
	}()
	if err := e.write(ctx, f, m, partial, req.Progress); err != nil {
		return nil, fmt.Errorf("export %s: %w", runID, err)
	}
	final := filepath.Join(dir, runID)
	if err := os.Rename(partial, final); err != nil {
		return nil, fmt.Errorf("export %s: %w", runID, err)
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("export %s: %w", runID, err)
	}

	names := make([]string, len(m.Files))
	for i, fl := range m.Files {
		names[i] = fl.Name
		run.Bytes += uint64(fl.Bytes)
	}
	filesJSON, _ := json.Marshal(names)
	run.Status, run.Final, run.RecordedAt, run.Files = "ok", true, e.now(), string(filesJSON)
	run.Lines, run.P2PLines, run.TeamLines = m.Lines, m.P2P, m.Team
	run.Held, run.Recalled, run.Duplicates, run.UnmappedURLs = m.Held.Messages, m.Recalled, m.Duplicates, m.UnmappedURLs
	if err := e.st.RecordExportRun(ctx, run); err != nil {
		// The files are complete, but the run is not recorded as done: the
		// next incremental run covers this range again (harmless: same
		// msgids). Keep the files; say so.
		e.logger.Error("export files written but the run's end could not be recorded; the next run repeats its range", "run", runID, "dir", final, "err", err)
		return m, fmt.Errorf("export %s: files written to %s, but recording the run failed: %w", runID, final, err)
	}
	e.logger.Info("export written", "run", runID, "dir", final, "mode", m.Mode, "lines", m.Lines, "held", m.Held.Messages,
		"recalled", m.Recalled, "seq_from", m.SeqFrom, "seq_to", m.SeqTo)
	if m.Held.Messages > 0 {
		groups := make([]string, 0, len(m.Held.Groups))
		for _, g := range m.Held.Groups {
			groups = append(groups, g.Source+":"+g.GroupID)
		}
		e.logger.Warn("team messages of unmapped groups were not exported (load their team mappings)", "run", runID,
			"held", m.Held.Messages, "groups", m.Held.GroupsTotal, "first_groups", strings.Join(groups, ","))
	}
	return m, nil
}

// completeUpTo is the snapshot's end: the highest seq at most upTo below
// which every seq after after is stored. max(seq) alone is not enough: the
// loader's INSERT that spans two partitions becomes visible one part at a
// time, and a seq that appeared later below a run's end would never be
// taken by an incremental run. Seqs are dense (messages and recalls), so a
// range is complete when its count matches; otherwise a binary search over
// range counts finds the complete prefix, and the next run takes the rest.
func (e *Exporter) completeUpTo(ctx context.Context, after, upTo uint64) (uint64, error) {
	if upTo <= after {
		return after, nil
	}
	n, err := e.st.CountSeqs(ctx, after, upTo)
	if err != nil || n >= upTo-after {
		return upTo, err
	}
	lo, hi := after, upTo // complete up to lo, not up to hi
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		c, err := e.st.CountSeqs(ctx, after, mid)
		if err != nil {
			return 0, err
		}
		if c >= mid-after {
			lo = mid
		} else {
			hi = mid
		}
	}
	e.logger.Info("export snapshot ends below the highest stored seq: seqs under it are still being written; the next run takes them",
		"stored_max", upTo, "snapshot_end", lo)
	return lo, nil
}

// write fills the partial folder: the scene files, then manifest.json.
func (e *Exporter) write(ctx context.Context, f store.ExportFilter, m *Manifest, partial string, newProgress func(uint64) Progress) error {
	counts, err := e.st.CountExport(ctx, f)
	if err != nil {
		return err
	}
	groups, total, err := e.st.HeldGroups(ctx, f, 100)
	if err != nil {
		return err
	}
	m.Held.Messages, m.Held.GroupsTotal, m.Held.Groups = counts.Held, total, groups
	if m.Held.Groups == nil {
		m.Held.Groups = []store.HeldGroup{}
	}
	m.Recalled, m.UnmappedURLs = counts.Recalled, counts.UnmappedURLs

	if err := os.Mkdir(partial, 0o755); err != nil {
		return err
	}
	scenes := map[string]*sceneFiles{
		"p2p":  {dir: partial, scene: "p2p", maxBytes: e.opts.MaxFileBytes, gzip: e.opts.Gzip},
		"team": {dir: partial, scene: "team", maxBytes: e.opts.MaxFileBytes, gzip: e.opts.Gzip},
	}
	defer func() {
		for _, s := range scenes {
			s.abort()
		}
	}()
	var progress Progress
	if newProgress != nil {
		progress = newProgress(counts.Rows)
		defer progress.Finish()
	}
	pending := 0
	m.Duplicates, err = e.st.StreamExport(ctx, f, func(scene string, typ uint16, line string) error {
		s := scenes[scene]
		if s == nil {
			return fmt.Errorf("stored message with scene %q", scene)
		}
		if err := s.write(typ, line); err != nil {
			return err
		}
		if progress != nil {
			if pending++; pending == 1000 {
				progress.Add(pending)
				pending = 0
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if progress != nil && pending > 0 {
		progress.Add(pending)
	}
	for _, name := range []string{"p2p", "team"} {
		files, err := scenes[name].finish()
		if err != nil {
			return err
		}
		for _, fl := range files {
			m.Lines += fl.Lines
			if name == "p2p" {
				m.P2P += fl.Lines
			} else {
				m.Team += fl.Lines
			}
		}
		m.Files = append(m.Files, files...)
	}
	if m.Files == nil {
		m.Files = []File{}
	}
	m.FinishedAt = e.now().UTC()
	if err := writeManifest(partial, m); err != nil {
		return err
	}
	return syncDir(partial)
}

func writeManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".manifest.json.tmp")
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = fh.Write(append(b, '\n'))
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, "manifest.json"))
}

// reapKilled records runs in dir that never ended (their process died: this
// process holds the folder's lock, so none of them is still going) and
// removes their partial folders.
func (e *Exporter) reapKilled(ctx context.Context, dir, by string) {
	runs, err := e.st.UnfinishedExports(ctx, dir)
	if err != nil {
		e.logger.Warn("looking for killed export runs failed", "err", err)
	}
	for _, r := range runs {
		r.Status, r.Final, r.RecordedAt = "killed", true, e.now()
		r.Error = fmt.Sprintf("the run's process (pid %d on %s) ended before the run finished; its partial files were removed by run %s", r.PID, r.Host, by)
		if err := e.st.RecordExportRun(ctx, r); err != nil {
			e.logger.Warn("recording a killed export run failed", "run", r.RunID, "err", err)
			continue
		}
		e.logger.Warn("an earlier export run was killed before it finished; recorded", "run", r.RunID)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, ent := range entries {
		if n := ent.Name(); ent.IsDir() && strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".partial") {
			if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
				e.logger.Warn("removing a killed export's partial folder failed", "dir", n, "err", err)
			}
		}
	}
}

// lockDir takes the export folder's lock (flock, released when the process
// dies), so two runs never write to one folder at once.
func lockDir(dir string) (func(), error) {
	path := filepath.Join(dir, ".export.lock")
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("export lock: %w", err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fh.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s)", ErrBusy, dir)
		}
		return nil, fmt.Errorf("export lock: %w", err)
	}
	return func() { fh.Close() }, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
