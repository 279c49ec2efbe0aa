// Package importer bulk-loads history files — the providers' hourly history
// files, stored callback bodies, native Yunxin lines — through the same
// decoders as the callbacks and the same durable ingest, with per-file
// checkpoints (a file imported whole is recognised by its hash; an
// interrupted one resumes), a reject file and a summary. `imbridge import`
// runs it against a running serve's admin API or against its own spool.
package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
	"github.com/imbridge/imbridge/store"
)

// Sink makes decoded batches durable: serve's admin API, or this process's
// own ingest.
type Sink interface {
	Ingest(ctx context.Context, msgs []message.Message, recalls []message.Recall) (ingest.Result, error)
}

// ErrRetry marks a Sink error after which the same batch may be sent again
// later: the spool is full until ClickHouse catches up, serve is restarting.
var ErrRetry = errors.New("retry later")

// Checkpoints stores how far each file got.
type Checkpoints interface {
	LastImport(ctx context.Context, sha256, source, format string) (store.ImportCheckpoint, bool, error)
	RecordImport(ctx context.Context, c store.ImportCheckpoint) error
}

// Progress follows an import: bytes of the files read and messages decoded.
type Progress interface {
	Start(totalBytes int64) // -1 when unknown (stdin)
	Advance(bytes, messages int64)
	Finish()
}

// Rejection reasons (the summary counts them; bounded values).
const (
	ReasonMalformed = "malformed" // the decoder refused the record
	ReasonInvalid   = "invalid"   // it decoded to a message Yunxin would not take
	ReasonTooLong   = "too_long"  // a line longer than Options.MaxLine
	ReasonNotUTF8   = "not_utf8"
)

// Options configure a Run.
type Options struct {
	Source, Format string
	Tencent        TencentOptions
	Sink           Sink
	Checkpoints    Checkpoints
	// Mapped says which of the source's groups have a team mapping, for
	// counting held messages; nil: held is not counted.
	Mapped func(ctx context.Context, groups []string) (map[string]bool, error)
	// Rejects receives one JSON line per rejected line; it is opened on the
	// first rejection.
	Rejects func() (io.Writer, error)
	// Progress, when set, is told of every chunk.
	Progress Progress
	// Force reads files already imported whole again (duplicates are still
	// dropped).
	Force bool
	// ChunkBytes is the size of a batch of lines (default 1 MiB); MaxLine
	// the longest line kept (default 16 MiB).
	ChunkBytes, MaxLine int
	// Workers decoding and ingesting in parallel (default GOMAXPROCS+1).
	Workers int
	// RetryFor bounds how long a batch is retried while the sink answers
	// ErrRetry (default 10 minutes).
	RetryFor time.Duration
	// CheckpointEvery is how often progress is recorded (default 2 s).
	CheckpointEvery time.Duration
	Stdin           io.Reader
	RunID, Host     string
	Logger          *slog.Logger
	Now             func() time.Time
}

// Counts of one file or a whole run.
type Counts struct {
	Lines      int64 // lines read, blank ones included
	Records    int64 // records (lines that are not blank or structure)
	Messages   int64 // messages decoded from them
	Stored     int64 // new, now durable
	Duplicates int64 // stored before (by callback or an earlier import)
	Recalls    int64 // new recalls, now durable
	Held       int64 // new team messages of groups without a team mapping
	Ignored    int64 // events that carry no chat content
	Rejected   map[string]int64
}

// RejectedTotal is the number of rejected lines.
func (c *Counts) RejectedTotal() int64 {
	var n int64
	for _, v := range c.Rejected {
		n += v
	}
	return n
}

func (c *Counts) add(o Counts) {
	c.Lines += o.Lines
	c.Records += o.Records
	c.Messages += o.Messages
	c.Stored += o.Stored
	c.Duplicates += o.Duplicates
	c.Recalls += o.Recalls
	c.Held += o.Held
	c.Ignored += o.Ignored
	for k, v := range o.Rejected {
		if c.Rejected == nil {
			c.Rejected = map[string]int64{}
		}
		c.Rejected[k] += v
	}
}

// FileResult is what happened to one file.
type FileResult struct {
	Name, SHA256 string
	// Skipped: imported whole before (Previous is that import's checkpoint).
	Skipped  bool
	Previous store.ImportCheckpoint
	// ResumedAt is the line after which this run started (0: from the top).
	ResumedAt int64
	Counts
	Err error
}

// Summary of a Run.
type Summary struct {
	Files []FileResult
	Total Counts
}

// Failed counts the files that could not be read to their end.
func (s *Summary) Failed() int {
	n := 0
	for _, f := range s.Files {
		if f.Err != nil {
			n++
		}
	}
	return n
}

// Run imports files in order. A file that cannot be read to its end is
// recorded (its checkpoint says how far it got) and the next file is read;
// the summary says which failed. ctx ending stops the run at the last
// durable batch, recorded as interrupted.
func Run(ctx context.Context, files []string, o Options) (Summary, error) {
	if err := o.defaults(); err != nil {
		return Summary{}, err
	}
	var sum Summary
	var total int64
	for _, name := range files {
		if name == "-" {
			total = -1
			break
		}
		if st, err := os.Stat(name); err == nil {
			total += st.Size()
		}
	}
	if o.Progress != nil {
		o.Progress.Start(total)
		defer o.Progress.Finish()
	}
	rej := &rejects{open: o.Rejects}
	for _, name := range files {
		res := importFile(ctx, name, o, rej)
		sum.Files = append(sum.Files, res)
		sum.Total.add(res.Counts)
		if ctx.Err() != nil {
			break
		}
	}
	if err := rej.err; err != nil {
		return sum, fmt.Errorf("reject file: %w", err)
	}
	return sum, ctx.Err()
}

func (o *Options) defaults() error {
	if err := CheckFormat(o.Source, o.Format); err != nil {
		return err
	}
	if o.Sink == nil || o.Checkpoints == nil {
		return errors.New("importer: Sink and Checkpoints are required")
	}
	if o.ChunkBytes <= 0 {
		o.ChunkBytes = 1 << 20
	}
	if o.MaxLine <= 0 {
		o.MaxLine = 16 << 20
	}
	o.MaxLine = max(o.MaxLine, o.ChunkBytes)
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0) + 1
	}
	if o.RetryFor <= 0 {
		o.RetryFor = 10 * time.Minute
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// job is one chunk on its way through the workers; done is closed when out
// is set.
type job struct {
	c    chunk
	out  chunkResult
	done chan struct{}
}

type chunkResult struct {
	Counts
	rejected []rejection
	err      error // the batch could not be made durable
}

type rejection struct {
	File   string `json:"file"`
	Line   int64  `json:"line"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
	Record string `json:"record,omitempty"`
}

// importFile imports one file and records its checkpoints.
func importFile(ctx context.Context, name string, o Options, rej *rejects) (res FileResult) {
	res.Name = name
	started := o.Now()
	cp := store.ImportCheckpoint{Source: o.Source, Format: checkpointFormat(o), File: name, RunID: o.RunID, Host: o.Host, StartedAt: started, Size: -1}
	if name != "-" {
		sum, err := fileSHA256(name)
		if err != nil {
			res.Err = err
			return res
		}
		res.SHA256, cp.SHA256 = sum, sum
		prev, ok, err := o.Checkpoints.LastImport(ctx, sum, o.Source, cp.Format)
		if err != nil {
			res.Err = fmt.Errorf("reading its checkpoint: %w", err)
			return res
		}
		if ok && prev.State == store.ImportDone && !o.Force {
			res.Skipped, res.Previous = true, prev
			if o.Progress != nil && prev.Size > 0 {
				o.Progress.Advance(prev.Size, 0)
			}
			return res
		}
		if ok && prev.State != store.ImportDone && !o.Force {
			// Resume after the last durable line; the counts go on.
			res.ResumedAt = int64(prev.Lines)
			cp.Lines, cp.Offset = prev.Lines, prev.Offset
			cp.Records, cp.Messages, cp.Stored, cp.Duplicates = prev.Records, prev.Messages, prev.Stored, prev.Duplicates
			cp.Recalls, cp.Held, cp.Ignored, cp.Rejected = prev.Recalls, prev.Held, prev.Ignored, prev.Rejected
		}
	}
	f, err := openFile(name, o.Stdin)
	if err != nil {
		res.Err = err
		return res
	}
	defer f.close()
	cp.Size = f.size
	if err := f.skip(int64(cp.Offset)); err != nil {
		res.Err = fmt.Errorf("resuming after line %d: %w", cp.Lines, err)
		return res
	}
	ch := &chunker{f: f, size: o.ChunkBytes, maxLine: o.MaxLine, line: int64(cp.Lines), off: int64(cp.Offset)}
	rawBase := f.raw.Load()
	if o.Progress != nil && rawBase > 0 {
		o.Progress.Advance(rawBase, 0)
	}
	// The first record decides how a Tencent file is read (its header).
	first, err := peekFirstLine(ch)
	if err != nil {
		res.Err = err
		return res
	}
	if cp.Offset > 0 {
		// Resumed past the first line: read it from the top once more
		// (Tencent's header says how the records are read).
		if first, err = firstLineOf(name); err != nil {
			res.Err = err
			return res
		}
	}
	decode, err := newDecoder(o.Source, o.Format, o.Tencent, first, o.Now())
	if err != nil {
		res.Err = err
		return res
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	order := make(chan *job, 2*o.Workers)
	work := make(chan *job, o.Workers)
	go func() { // the reader: chunks, in order, to the workers and the consumer
		defer close(order)
		defer close(work)
		for {
			c, ok := ch.next()
			if !ok {
				return
			}
			j := &job{c: c, done: make(chan struct{})}
			select {
			case order <- j:
			case <-runCtx.Done():
				return
			}
			if c.err != nil {
				close(j.done)
				return
			}
			select {
			case work <- j:
			case <-runCtx.Done():
				// Never processed: the consumer must not count it durable.
				j.out.err = runCtx.Err()
				close(j.done)
				return
			}
		}
	}()
	held := newHeldCounter(o.Mapped)
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				j.out = processChunk(runCtx, name, j.c, decode, o, held)
				close(j.done)
			}
		}()
	}
	defer wg.Wait()

	lastCheckpoint := o.Now()
	record := func(state string, errText string) {
		cp.State, cp.Error, cp.UpdatedMS = state, errText, o.Now().UnixMilli()
		if cp.SHA256 == "" {
			return // stdin: recorded once its hash is known, at the end
		}
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer rcancel()
		if err := o.Checkpoints.RecordImport(rctx, cp); err != nil {
			o.Logger.Warn("import checkpoint not recorded; a resume would start earlier and find duplicates", "file", name, "err", err)
		}
	}
	record(store.ImportRunning, "")
	var failure error
	for j := range order {
		// Once ctx ends, the batches already durable still count (and move
		// the checkpoint); the first one not finished ends the run.
		select {
		case <-j.done:
		case <-ctx.Done():
			select {
			case <-j.done:
			default:
			}
		}
		if !closed(j.done) {
			failure = ctx.Err()
			break
		}
		if j.c.err != nil {
			failure = j.c.err
			break
		}
		if j.out.err != nil {
			failure = j.out.err
			break
		}
		for _, r := range j.out.rejected {
			rej.write(r)
		}
		res.Counts.add(j.out.Counts)
		cp.Lines = uint64(j.c.firstLine + j.c.lines - 1)
		cp.Offset = uint64(j.c.end)
		cp.Records += uint64(j.out.Records)
		cp.Messages += uint64(j.out.Messages)
		cp.Stored += uint64(j.out.Stored)
		cp.Duplicates += uint64(j.out.Duplicates)
		cp.Recalls += uint64(j.out.Recalls)
		cp.Held += uint64(j.out.Held)
		cp.Ignored += uint64(j.out.Ignored)
		cp.Rejected += uint64(j.out.RejectedTotal())
		if o.Progress != nil {
			o.Progress.Advance(j.c.raw-rawBase, j.out.Messages)
			rawBase = j.c.raw
		}
		if now := o.Now(); now.Sub(lastCheckpoint) >= o.CheckpointEvery {
			lastCheckpoint = now
			record(store.ImportRunning, "")
		}
	}
	if failure == nil && ctx.Err() != nil {
		failure = ctx.Err() // the reader stopped early
	}
	cancel()
	for range order { // let the reader end
	}
	if failure != nil {
		res.Err = failure
		state := store.ImportFailed
		if ctx.Err() != nil {
			state = store.ImportInterrupted
		}
		record(state, failure.Error())
		return res
	}
	if o.Progress != nil {
		o.Progress.Advance(f.raw.Load()-rawBase, 0)
	}
	if f.hasher != nil {
		res.SHA256, cp.SHA256 = f.hasher.Sum(), f.hasher.Sum()
	}
	record(store.ImportDone, "")
	return res
}

// checkpointFormat is the format a file's checkpoints are keyed by: the
// format, and the Tencent options when given (--chat-type, --group change
// what the same bytes decode to, so a file read without them is not one
// read with them).
func checkpointFormat(o Options) string {
	f := o.Format
	if o.Tencent.ChatType != "" {
		f += " chat-type=" + o.Tencent.ChatType
	}
	if o.Tencent.GroupID != "" {
		f += " group=" + o.Tencent.GroupID
	}
	return f
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// peekFirstLine returns the chunker's first non-blank line without
// consuming it.
func peekFirstLine(ch *chunker) ([]byte, error) {
	for len(ch.buf) < 64<<10 && !ch.eof {
		if i := bytes.IndexByte(ch.buf, '\n'); i >= 0 && len(bytes.TrimSpace(ch.buf[:i])) > 0 {
			break
		}
		tmp := make([]byte, 64<<10)
		n, err := ch.f.stream.Read(tmp)
		ch.buf = append(ch.buf, tmp[:n]...)
		if errors.Is(err, io.EOF) {
			ch.eof = true
		} else if err != nil {
			return nil, err
		}
	}
	for rest := ch.buf; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			return bytes.Clone(line), nil
		}
	}
	return nil, nil
}

// firstLineOf is the first non-blank line of a file.
func firstLineOf(name string) ([]byte, error) {
	f, err := openFile(name, nil)
	if err != nil {
		return nil, err
	}
	defer f.close()
	return peekFirstLine(&chunker{f: f})
}

// processChunk decodes a chunk's lines and makes their messages durable.
func processChunk(ctx context.Context, file string, c chunk, decode recordDecoder, o Options, held *heldCounter) chunkResult {
	var out chunkResult
	out.Lines = c.lines + int64(len(c.tooLong))
	reject := func(line int64, reason, msg string, rec []byte) {
		if out.Rejected == nil {
			out.Rejected = map[string]int64{}
		}
		out.Rejected[reason]++
		if len(rec) > 4096 {
			rec = rec[:4096]
		}
		out.rejected = append(out.rejected, rejection{File: file, Line: line, Reason: reason, Error: msg, Record: strings.ToValidUTF8(string(rec), "\uFFFD")})
	}
	for _, n := range c.tooLong {
		reject(n, ReasonTooLong, fmt.Sprintf("longer than %d bytes", o.MaxLine), nil)
	}
	msgs := make([]message.Message, 0, c.lines) // most lines are one message
	var recalls []message.Recall
	lineNo := c.firstLine - 1
	for rest := c.data; len(rest) > 0; {
		lineNo++
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		// A byte order mark starts a file, or each file of a zip.
		line = bytes.TrimSpace(bytes.TrimPrefix(line, []byte("\ufeff")))
		if len(line) == 0 {
			continue
		}
		if !utf8.Valid(line) {
			out.Records++
			reject(lineNo, ReasonNotUTF8, "the line is not valid UTF-8", line)
			continue
		}
		b, skip, err := decode(line)
		if skip {
			continue
		}
		out.Records++
		if err != nil {
			reject(lineNo, ReasonMalformed, errorText(err), line)
			continue
		}
		if err := validate(&b, o.Source); err != nil {
			reject(lineNo, ReasonInvalid, err.Error(), line)
			continue
		}
		for _, n := range b.Ignored {
			out.Ignored += int64(n)
		}
		out.Messages += int64(len(b.Messages))
		msgs = append(msgs, b.Messages...)
		recalls = append(recalls, b.Recalls...)
	}
	if len(msgs)+len(recalls) == 0 {
		return out
	}
	res, err := ingestWithRetry(ctx, o, msgs, recalls)
	if err != nil {
		out.err = err
		return out
	}
	out.Stored, out.Duplicates, out.Recalls = int64(res.Accepted), int64(res.Duplicates), int64(res.Recalls)
	n, err := held.count(ctx, msgs, res.Dropped)
	if err != nil {
		o.Logger.Warn("held messages not counted", "err", err)
	}
	out.Held = n
	return out
}

// validate checks what ingest will check, line by line, so that one bad
// record is rejected alone rather than failing its whole batch.
func validate(b *source.Batch, src string) error {
	for i := range b.Messages {
		m := &b.Messages[i]
		if m.Source == "" {
			m.Source = src
		}
		if m.Source != src {
			return fmt.Errorf("message of source %q in a %s import", m.Source, src)
		}
		if err := m.Validate(); err != nil {
			return err
		}
	}
	for i := range b.Recalls {
		r := &b.Recalls[i]
		if r.Source == "" {
			r.Source = src
		}
		if err := r.Validate(); err != nil {
			return fmt.Errorf("recall: %w", err)
		}
	}
	return nil
}

func errorText(err error) string {
	var se *source.Error
	if errors.As(err, &se) {
		return se.Msg
	}
	return err.Error()
}

// ingestWithRetry sends a batch, again while the sink says ErrRetry, for at
// most o.RetryFor. A retried batch is safe: what was stored the first time
// is a duplicate the second.
func ingestWithRetry(ctx context.Context, o Options, msgs []message.Message, recalls []message.Recall) (ingest.Result, error) {
	deadline := o.Now().Add(o.RetryFor)
	wait := 50 * time.Millisecond
	for {
		res, err := o.Sink.Ingest(ctx, msgs, recalls)
		if err == nil || !errors.Is(err, ErrRetry) {
			return res, err
		}
		if o.Now().After(deadline) {
			return res, fmt.Errorf("gave up after %s: %w", o.RetryFor, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// heldCounter counts new team messages of groups without a team mapping,
// remembering (for a while, a bounded number of) answers.
type heldCounter struct {
	mapped func(ctx context.Context, groups []string) (map[string]bool, error)
	mu     sync.Mutex
	known  map[string]bool
	since  time.Time
}

const heldCacheSize = 100_000

func newHeldCounter(mapped func(context.Context, []string) (map[string]bool, error)) *heldCounter {
	return &heldCounter{mapped: mapped, known: map[string]bool{}, since: time.Now()}
}

func (h *heldCounter) count(ctx context.Context, msgs []message.Message, dropped []int) (int64, error) {
	if h.mapped == nil {
		return 0, nil
	}
	dup := make(map[int]bool, len(dropped))
	for _, i := range dropped {
		dup[i] = true
	}
	h.mu.Lock()
	if len(h.known) > heldCacheSize || time.Since(h.since) > 30*time.Second {
		h.known, h.since = map[string]bool{}, time.Now()
	}
	var ask []string
	asked := map[string]bool{}
	for i := range msgs {
		m := &msgs[i]
		if dup[i] || m.GroupID == "" || m.TID != 0 {
			continue
		}
		if _, ok := h.known[m.GroupID]; !ok && !asked[m.GroupID] {
			asked[m.GroupID] = true
			ask = append(ask, m.GroupID)
		}
	}
	h.mu.Unlock()
	if len(ask) > 0 {
		sort.Strings(ask)
		got, err := h.mapped(ctx, ask)
		if err != nil {
			return 0, err
		}
		h.mu.Lock()
		for _, g := range ask {
			h.known[strings.Clone(g)] = got[g] // a copy: g may point into a chunk's buffer (DecodeLineShared)
		}
		h.mu.Unlock()
	}
	var n int64
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range msgs {
		m := &msgs[i]
		if !dup[i] && m.GroupID != "" && m.TID == 0 && !h.known[m.GroupID] {
			n++
		}
	}
	return n, nil
}

// MappedIn answers Options.Mapped from the team map in st, for groups of
// source src.
func MappedIn(st *store.Store, src string) func(context.Context, []string) (map[string]bool, error) {
	return func(ctx context.Context, groups []string) (map[string]bool, error) {
		v, err := st.MapVersion(ctx)
		if err != nil {
			return nil, err
		}
		tids, err := st.TeamMappings(ctx, v, groups)
		if err != nil {
			return nil, err
		}
		out := make(map[string]bool, len(groups))
		for _, g := range groups {
			_, out[g] = tids[store.GroupKey(src, g)]
		}
		return out, nil
	}
}

// rejects writes rejected lines as JSON lines, opening the file on the
// first one.
type rejects struct {
	open func() (io.Writer, error)
	w    io.Writer
	err  error
}

func (r *rejects) write(rec rejection) {
	if r.err != nil || r.open == nil {
		return
	}
	if r.w == nil {
		if r.w, r.err = r.open(); r.err != nil {
			return
		}
	}
	b, _ := json.Marshal(rec)
	_, r.err = r.w.Write(append(b, '\n'))
}
