package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/imbridge/imbridge/config"
	"github.com/imbridge/imbridge/importer"
	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/pipeline"
)

const importExamples = `
Examples:
  imbridge import --source easemob 2026112309.gz 2026112310.gz   # Easemob hourly history files
  imbridge import --source tencent --chat-type Group --group @TGS#2J4SZEAEL history-group.gz
  imbridge import --source rongcloud --format callback routed-bodies.txt
  zcat lines.ndjson.gz | imbridge import --source native -

Beside a running serve (admin.token set on both) the batches go through
serve's admin API; with no serve running, import opens the spool itself and
waits until ClickHouse has every message. A file imported whole before is
skipped (known by its sha256); an interrupted import resumes. Exit status:
0 all imported, 4 some lines rejected (see the reject file), 1 a file could
not be read to its end, 2 usage or configuration.
`

// exitRejected is the exit status of an import that rejected lines.
const exitRejected = 4

func runImport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("import", "import [--config FILE] --source NAME [--format F] FILE..."+importExamples, stderr)
	src := fs.String("source", "", "`name` of the provider whose files these are: native, easemob, tencent, rongcloud, yunxin")
	format := fs.String("format", "", "`format` of the records: lines (native), callback (one callback body per line), history (the provider's history file); default: history, lines for native, callback for yunxin")
	chatType := fs.String("chat-type", "", "tencent history: the files' `ChatType` (C2C or Group) when they have no header line; default: the header, else per record")
	group := fs.String("group", "", "tencent history: the `group id` of a Group file whose records carry no GroupId")
	server := fs.String("server", "", "`URL` of the running serve (default: http://<listen>)")
	rejectsPath := fs.String("rejects", "", "write rejected lines to this `file` (JSON lines; default <data_dir>/import-rejects/<run>.jsonl)")
	force := fs.Bool("force", false, "read files that were imported whole before again (duplicates are still dropped)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	every := fs.Duration("checkpoint-every", 2*time.Second, "record how far each file got this often (a resume starts there)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *src == "" {
		return usageError("import: --source is required")
	}
	if *format == "" {
		*format = importer.DefaultFormat(*src)
	}
	if err := importer.CheckFormat(*src, *format); err != nil {
		return usageError("import: %v", err)
	}
	if fs.NArg() == 0 {
		return usageError("import: name at least one FILE (or - for stdin)")
	}
	files := fs.Args()
	for _, f := range files {
		if f == "-" && len(files) > 1 {
			return usageError("import: - (stdin) cannot be mixed with files")
		}
	}
	cfg, err := loadConfig(getenv, *cfgPath)
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Config, stderr)
	limitMemory(getenv, 128<<20, 0) // soft: batches in flight are a few MiB each
	runID := time.Now().UTC().Format("20060102T150405Z") + fmt.Sprintf("-%d", os.Getpid())

	// Through serve when one runs; else this process opens the spool.
	var sink importer.Sink
	var st *pipeline.Store
	var local *pipeline.Pipeline
	client, err := findServe(ctx, cfg.Config, *server)
	switch {
	case err == nil:
		st, err = pipeline.OpenStore(ctx, cfg.Config, logger, 60*time.Second)
		if err != nil {
			return err
		}
		defer st.Close()
		sink = &remoteSink{c: client, source: *src}
		fmt.Fprintf(stderr, "importing through serve at %s\n", client.base)
	case errors.Is(err, errServeUnreachable):
		local, err = pipeline.Open(ctx, cfg.Config, logger)
		if err != nil {
			return fmt.Errorf("import without a running serve: %w", err)
		}
		defer local.Close()
		st = local.Store
		sink = &localSink{in: local.Ingester, source: *src}
		fmt.Fprintf(stderr, "no serve answers at %s: importing into this data_dir's spool (%s)\n", serverURL(cfg.Config, *server), cfg.DataDir)
	default:
		return err
	}

	if *rejectsPath == "" {
		*rejectsPath = filepath.Join(cfg.DataDir, "import-rejects", runID+".jsonl")
	}
	rejectsFile := &lazyFile{path: *rejectsPath}
	defer rejectsFile.Close()
	host, _ := os.Hostname()
	opts := importer.Options{
		Source: *src, Format: *format,
		Tencent:         importer.TencentOptions{ChatType: *chatType, GroupID: *group},
		Sink:            sink,
		Checkpoints:     st.Store,
		Mapped:          importer.MappedIn(st.Store, *src),
		Rejects:         rejectsFile.open,
		Force:           *force,
		ChunkBytes:      chunkBytes(cfg.Config),
		CheckpointEvery: *every,
		Stdin:           os.Stdin,
		RunID:           runID, Host: host,
		Logger: logger,
	}
	if f, ok := stderr.(*os.File); ok && !*quiet && term.IsTerminal(int(f.Fd())) {
		opts.Progress = &importBar{w: f}
	}
	started := time.Now()
	sum, runErr := importer.Run(ctx, files, opts)
	printImportSummary(stdout, sum, time.Since(started))
	if local != nil && runErr == nil {
		waitLoaded(ctx, local, stderr)
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("import interrupted: what was acknowledged is durable; run the same command again to resume")
		}
		return fmt.Errorf("import: %w", runErr)
	}
	if n := sum.Failed(); n > 0 {
		return fmt.Errorf("import: %d of %d files could not be read to their end (run again to resume them)", n, len(files))
	}
	if n := sum.Total.RejectedTotal(); n > 0 {
		return &exitError{code: exitRejected, err: fmt.Errorf("import: %d lines rejected; they are listed with line numbers and reasons in %s", n, rejectsFile.path)}
	}
	return nil
}

// chunkBytes is the size of one import batch: 1 MiB, less with a small
// spool so that a batch always fits beside what is still loading.
func chunkBytes(cfg config.Config) int {
	n := int64(1 << 20)
	if cfg.Spool.MaxBytes > 0 {
		n = min(n, cfg.Spool.MaxBytes/8)
	}
	return int(max(n, 16<<10))
}

func printImportSummary(w io.Writer, sum importer.Summary, took time.Duration) {
	for _, f := range sum.Files {
		switch {
		case f.Skipped:
			p := f.Previous
			fmt.Fprintf(w, "%s: already imported whole (run %s: %d messages stored, %d duplicates, %d rejected); --force reads it again\n",
				f.Name, p.RunID, p.Stored, p.Duplicates, p.Rejected)
			continue
		case f.Err != nil:
			fmt.Fprintf(w, "%s: FAILED after line %d: %v\n", f.Name, f.ResumedAt+f.Lines, f.Err)
		}
		resumed := ""
		if f.ResumedAt > 0 {
			resumed = fmt.Sprintf(" (resumed after line %d)", f.ResumedAt)
		}
		fmt.Fprintf(w, "%s%s: %s\n", f.Name, resumed, countsLine(f.Counts))
	}
	t := sum.Total
	rate := ""
	if s := took.Seconds(); s > 0 && t.Messages > 0 {
		rate = fmt.Sprintf(", %.0f messages/s", float64(t.Messages)/s)
	}
	fmt.Fprintf(w, "total: %s in %s%s\n", countsLine(t), took.Round(time.Millisecond), rate)
}

func countsLine(c importer.Counts) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d lines, %d messages read: %d stored, %d duplicates, %d held (group not mapped), %d recalls, %d ignored, %d rejected",
		c.Lines, c.Messages, c.Stored, c.Duplicates, c.Held, c.Recalls, c.Ignored, c.RejectedTotal())
	if len(c.Rejected) > 0 {
		b.WriteString(" (")
		first := true
		for _, r := range []string{importer.ReasonMalformed, importer.ReasonInvalid, importer.ReasonNotUTF8, importer.ReasonTooLong} {
			if n := c.Rejected[r]; n > 0 {
				if !first {
					b.WriteString(", ")
				}
				first = false
				fmt.Fprintf(&b, "%s %d", r, n)
			}
		}
		b.WriteString(")")
	}
	return b.String()
}

// waitLoaded waits until the loader has every spooled message in
// ClickHouse; interrupting it leaves the rest in the spool for serve.
func waitLoaded(ctx context.Context, p *pipeline.Pipeline, w io.Writer) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	reported := time.Now()
	for p.Loader.Lag() > 0 {
		if time.Since(reported) > 5*time.Second {
			fmt.Fprintf(w, "loading into ClickHouse: %d messages to go\n", p.Loader.Lag())
			reported = time.Now()
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(w, "%d messages stay in the spool; serve loads them when it starts\n", p.Loader.Lag())
			return
		case <-t.C:
		}
	}
}

// localSink ingests into this process's spool.
type localSink struct {
	in     *ingest.Ingester
	source string
}

func (s *localSink) Ingest(ctx context.Context, msgs []message.Message, recalls []message.Recall) (ingest.Result, error) {
	res, err := s.in.IngestBatch(ctx, s.source, msgs, recalls)
	if errors.Is(err, ingest.ErrFull) {
		return res, fmt.Errorf("%w: %v", importer.ErrRetry, err)
	}
	return res, err
}

// remoteSink sends batches to serve's admin API.
type remoteSink struct {
	c      *adminClient
	source string
	buf    atomic.Pointer[[]byte]
}

func (s *remoteSink) Ingest(ctx context.Context, msgs []message.Message, recalls []message.Recall) (ingest.Result, error) {
	var body []byte
	if b := s.buf.Swap(nil); b != nil {
		body = (*b)[:0]
	}
	body = ingest.AppendWire(body, msgs, recalls)
	defer s.buf.Store(&body)
	var out struct {
		Accepted   int   `json:"accepted"`
		Duplicates int   `json:"duplicates"`
		Recalls    int   `json:"recalls"`
		Dropped    []int `json:"dropped"`
	}
	// A batch is answered once fsync'd: far within a minute unless serve
	// hangs, and then the batch is sent again (safe: duplicates are dropped).
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := s.c.do(rctx, http.MethodPost, "/v1/admin/import?source="+url.QueryEscape(s.source), bytes.NewReader(body), &out)
	var he *httpError
	switch {
	case err == nil:
		return ingest.Result{Accepted: out.Accepted, Duplicates: out.Duplicates, Recalls: out.Recalls, Dropped: out.Dropped}, nil
	case errors.As(err, &he) && (he.Status == http.StatusServiceUnavailable || he.Status == http.StatusBadGateway || he.Status == http.StatusGatewayTimeout):
		return ingest.Result{}, fmt.Errorf("%w: %v", importer.ErrRetry, err)
	case errors.As(err, &he):
		return ingest.Result{}, err
	case ctx.Err() != nil:
		return ingest.Result{}, ctx.Err()
	}
	// The connection failed (serve restarting): the batch may or may not
	// have been stored; sending it again is safe.
	return ingest.Result{}, fmt.Errorf("%w: %v", importer.ErrRetry, err)
}

// lazyFile is created on its first write.
type lazyFile struct {
	path string
	f    *os.File
}

func (l *lazyFile) open() (io.Writer, error) {
	if err := os.MkdirAll(filepath.Dir(l.path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	l.f = f
	return f, nil
}

func (l *lazyFile) Close() {
	if l.f != nil {
		_ = l.f.Close()
	}
}

// importBar is the terminal progress bar: bytes of the files, messages,
// rate, ETA.
type importBar struct {
	w        io.Writer
	b        *progressbar.ProgressBar
	messages int64
}

func (p *importBar) Start(total int64) {
	p.b = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription("importing"),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionFullWidth(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
	)
}

func (p *importBar) Advance(bytes, messages int64) {
	p.messages += messages
	p.b.Describe(fmt.Sprintf("importing: %d messages", p.messages))
	_ = p.b.Add64(bytes)
}

func (p *importBar) Finish() { _ = p.b.Finish() }
