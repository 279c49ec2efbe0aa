package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/imbridge/imbridge/config"
	"github.com/imbridge/imbridge/exporter"
	"github.com/imbridge/imbridge/pipeline"
)

func runExport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("export", "export [--config FILE] [--out DIR] [--before TIME] [--after TIME] [--full]", stderr)
	out := fs.String("out", "", "write the run's folder under this `dir` (default export.dir)")
	before := fs.String("before", "", "RFC 3339 `time`: messages created before it (default migration.cutoff)")
	after := fs.String("after", "", "RFC 3339 `time`: messages created at or after it")
	full := fs.Bool("full", false, "export the whole stored history, not only what was stored since the last successful run")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("export: unexpected argument %q", fs.Arg(0))
	}
	var bounds [2]time.Time
	for i, v := range []struct{ name, value string }{{"--before", *before}, {"--after", *after}} {
		if v.value == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v.value)
		if err != nil {
			return usageError("%s %q is not an RFC 3339 time (e.g. 2026-12-01T00:00:00+08:00)", v.name, v.value)
		}
		bounds[i] = t
	}
	cfg, err := loadConfig(getenv, *cfgPath)
	if err != nil {
		return err
	}
	if bounds[0].IsZero() {
		bounds[0] = cfg.Migration.Cutoff
	}
	if !bounds[0].IsZero() && !bounds[1].IsZero() && !bounds[1].Before(bounds[0]) {
		return usageError("export: --after %s is not before the cutoff %s", bounds[1].Format(time.RFC3339), bounds[0].Format(time.RFC3339))
	}
	logger := newLogger(cfg.Config, stderr)
	limitMemory(getenv, 96<<20, 0) // soft: the run's live heap is a few MiB of batches
	// Beside a running serve this attaches to its managed ClickHouse; alone
	// it starts (then stops) its own.
	st, err := pipeline.OpenStore(ctx, cfg.Config, logger, 60*time.Second)
	if err != nil {
		return err
	}
	defer st.Close()
	req := exporter.Request{Trigger: "command", Out: *out, Before: bounds[0], After: bounds[1], Full: *full}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		req.Progress = func(total uint64) exporter.Progress { return newBar(f, total) }
	}
	m, err := newExporter(cfg.Config, st).Run(ctx, req)
	if err != nil {
		if errors.Is(err, exporter.ErrBusy) {
			return &exitError{code: 3, err: fmt.Errorf("%w: wait for it to finish (a scheduled run in serve, or another imbridge export)", err)}
		}
		return err
	}
	fmt.Fprintf(stdout, "export %s (%s): %d lines (%d p2p, %d team) in %s\n", m.RunID, m.Mode, m.Lines, m.P2P, m.Team, exportFolder(cfg.Config, *out, m.RunID))
	for _, f := range m.Files {
		fmt.Fprintf(stdout, "  %-16s %10d lines %12d bytes  sha256 %s\n", f.Name, f.Lines, f.Bytes, f.SHA256)
	}
	if m.Held.Messages > 0 {
		fmt.Fprintf(stdout, "not exported: %d team messages of %d groups without a team mapping (see manifest.json; load them with imbridge teammap load)\n", m.Held.Messages, m.Held.GroupsTotal)
	}
	if m.Recalled > 0 {
		fmt.Fprintf(stdout, "not exported: %d recalled messages\n", m.Recalled)
	}
	if m.UnmappedURLs > 0 {
		fmt.Fprintf(stdout, "warning: %d exported media lines still point at old URLs (no URL mapping yet)\n", m.UnmappedURLs)
	}
	return nil
}

func exportFolder(cfg config.Config, out, runID string) string {
	if out == "" {
		out = cfg.ExportDir()
	}
	return out + string(os.PathSeparator) + runID
}

func newExporter(cfg config.Config, st *pipeline.Store) *exporter.Exporter {
	return exporter.New(st.Store, exporter.Options{Dir: cfg.ExportDir(), MaxFileBytes: cfg.Export.MaxFileBytes, Gzip: cfg.Export.Gzip})
}

// bar is a terminal progress bar: lines done of total, rate, ETA.
type bar struct{ b *progressbar.ProgressBar }

func newBar(w io.Writer, total uint64) *bar {
	return &bar{progressbar.NewOptions64(int64(total),
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("exporting"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("lines"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionFullWidth(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)}
}

func (b *bar) Add(n int) { _ = b.b.Add(n) }
func (b *bar) Finish()   { _ = b.b.Finish() }
