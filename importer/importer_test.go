package importer_test

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imbridge/imbridge/importer"
	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/spool"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// rig is what `imbridge import` runs against without a serve: a spool with
// de-duplication (the sink) and a real ClickHouse (checkpoints, team map).
type rig struct {
	sp      *spool.Spool
	in      *ingest.Ingester
	st      *store.Store
	rejects bytes.Buffer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), DedupWindow: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return &rig{sp: sp, in: ingest.New(sp), st: storetest.Open(t)}
}

type spoolSink struct {
	in     *ingest.Ingester
	source string
}

func (s spoolSink) Ingest(ctx context.Context, msgs []message.Message, recalls []message.Recall) (ingest.Result, error) {
	return s.in.IngestBatch(ctx, s.source, msgs, recalls)
}

func (r *rig) options(src, format string) importer.Options {
	return importer.Options{
		Source: src, Format: format,
		Sink:        spoolSink{r.in, src},
		Checkpoints: r.st,
		Mapped:      importer.MappedIn(r.st, src),
		Rejects:     func() (io.Writer, error) { return &r.rejects, nil },
		RunID:       "test",
	}
}

func (r *rig) run(t *testing.T, o importer.Options, files ...string) importer.Summary {
	t.Helper()
	sum, err := importer.Run(context.Background(), files, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range sum.Files {
		if f.Err != nil {
			t.Fatalf("%s: %v", f.Name, f.Err)
		}
	}
	return sum
}

// rejected lists the reject file's lines as "line reason".
func (r *rig) rejected(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(r.rejects.String()), "\n") {
		if l == "" {
			continue
		}
		var rec struct {
			Line   int64
			Reason string
			Error  string
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("reject line %q: %v", l, err)
		}
		if rec.Error == "" {
			t.Errorf("reject line %q names no error", l)
		}
		out = append(out, strings.Join([]string{strconv.FormatInt(rec.Line, 10), rec.Reason}, " "))
	}
	return out
}

// Every format's mixed file: what is stored, ignored and rejected (with the
// line and reason); a second run of the same file is recognised by its hash
// and reads nothing.
func TestImportFormats(t *testing.T) {
	for _, test := range []struct {
		file, source, format string
		tencent              importer.TencentOptions
		want                 importer.Counts
		rejected             []string
	}{
		{file: "native.ndjson", source: "native", format: "lines",
			want:     importer.Counts{Lines: 7, Records: 6, Messages: 5, Stored: 4, Duplicates: 1},
			rejected: []string{"4 malformed"}},
		{file: "easemob.history.jsonl", source: "easemob", format: "history",
			want:     importer.Counts{Lines: 5, Records: 5, Messages: 3, Stored: 3, Held: 1, Ignored: 1},
			rejected: []string{"5 malformed"}},
		{file: "tencent.group.history", source: "tencent", format: "history",
			want:     importer.Counts{Lines: 6, Records: 4, Messages: 4, Stored: 4, Held: 4},
			rejected: []string{"4 malformed"}},
		{file: "tencent.c2c.ndjson", source: "tencent", format: "history",
			want: importer.Counts{Lines: 2, Records: 2, Messages: 3, Stored: 3}},
		{file: "rongcloud.history.log", source: "rongcloud", format: "history",
			want:     importer.Counts{Lines: 4, Records: 4, Messages: 2, Stored: 2, Held: 1, Ignored: 1},
			rejected: []string{"4 malformed"}},
		{file: "yunxin.callbacks.jsonl", source: "yunxin", format: "callback",
			want:     importer.Counts{Lines: 3, Records: 3, Messages: 2, Stored: 2},
			rejected: []string{"3 malformed"}},
	} {
		t.Run(strings.ReplaceAll(test.file, ".", "_"), func(t *testing.T) {
			r := newRig(t)
			o := r.options(test.source, test.format)
			o.Tencent = test.tencent
			path := filepath.Join("testdata", test.file)
			sum := r.run(t, o, path)
			got := sum.Files[0].Counts
			wantRejected := int64(len(test.rejected))
			if got.RejectedTotal() != wantRejected {
				t.Errorf("rejected %v, want %d lines", got.Rejected, wantRejected)
			}
			got.Rejected, test.want.Rejected = nil, nil
			if !reflect.DeepEqual(got, test.want) {
				t.Errorf("counts\n got %+v\nwant %+v", got, test.want)
			}
			if rej := r.rejected(t); strings.Join(rej, ",") != strings.Join(test.rejected, ",") {
				t.Errorf("reject file: %q, want %q", rej, test.rejected)
			}
			if n := r.sp.LastSeq(); n != uint64(test.want.Stored) {
				t.Errorf("the spool holds %d records, want %d", n, test.want.Stored)
			}

			again := r.run(t, o, path)
			if f := again.Files[0]; !f.Skipped || f.Previous.Stored != uint64(test.want.Stored) || f.Lines != 0 {
				t.Errorf("second run: %+v, want it skipped as imported whole", f)
			}
		})
	}
}

// The same content compressed (gzip, zip) or piped is another file but the
// same messages: all duplicates. --force reads a file imported whole again.
func TestImportCompressedAndStdin(t *testing.T) {
	r := newRig(t)
	o := r.options("native", "lines")
	plain := filepath.Join("testdata", "native.ndjson")
	content, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gz := filepath.Join(dir, "native.gz")
	writeGzip(t, gz, content)
	zipped := filepath.Join(dir, "native.zip")
	writeZip(t, zipped, map[string][]byte{"a.ndjson": content[:bytes.IndexByte(content, '\n')], "b.ndjson": content})

	first := r.run(t, o, plain)
	if first.Total.Stored != 4 {
		t.Fatalf("plain: %+v", first.Total)
	}
	for _, c := range []struct {
		name  string
		files []string
		stdin io.Reader
	}{
		{"gzip", []string{gz}, nil},
		{"zip of two entries", []string{zipped}, nil},
		{"stdin", []string{"-"}, bytes.NewReader(content)},
		{"gzip on stdin", []string{"-"}, bytes.NewReader(gzipped(t, content))},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := o
			o.Stdin = c.stdin
			sum := r.run(t, o, c.files...)
			if sum.Total.Stored != 0 || sum.Total.Duplicates < 5 || sum.Total.RejectedTotal() != 1 {
				t.Fatalf("%+v: want 0 stored, every message a duplicate, line 4 rejected", sum.Total)
			}
		})
	}
	o.Force = true
	if sum := r.run(t, o, plain); sum.Files[0].Skipped || sum.Total.Duplicates != 5 {
		t.Fatalf("--force: %+v", sum.Files[0])
	}
}

// cancelAfter is a sink that stops the run (as a kill would) once it has
// stored n batches.
type cancelAfter struct {
	importer.Sink
	n      int64
	calls  atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Ingest(ctx context.Context, msgs []message.Message, recalls []message.Recall) (ingest.Result, error) {
	res, err := c.Sink.Ingest(ctx, msgs, recalls)
	if c.calls.Add(1) == c.n {
		c.cancel()
	}
	return res, err
}

// An import stopped midway records where it got to; the next run resumes
// after that line (and does not read the file from the top), and every
// message of the file ends up stored exactly once.
func TestImportResumes(t *testing.T) {
	r := newRig(t)
	const n = 20000
	path := filepath.Join(t.TempDir(), "big.ndjson")
	var b bytes.Buffer
	for i := 1; i <= n; i++ {
		b.WriteString(`{"data":{"ext":"","clientType":"2","createTime":` + strconv.FormatInt(1700000000000+int64(i), 10) + `,"msgid":` + strconv.FormatInt(int64(i), 10) + `,"from":"u","to":"v","body":"消息"},"type":0}` + "\n")
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, compressed := range []bool{false, true} {
		name := "plain"
		if compressed {
			name = "gzip"
			path = filepath.Join(t.TempDir(), "big.gz")
			writeGzip(t, path, b.Bytes())
			r = newRig(t)
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			o := r.options("native", "lines")
			o.ChunkBytes = 64 << 10 // about 40 batches
			o.Sink = &cancelAfter{Sink: o.Sink, n: 5, cancel: cancel}
			first, err := importer.Run(ctx, []string{path}, o)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("first run: %v, want it cancelled", err)
			}
			cp, ok, err := r.st.LastImport(context.Background(), first.Files[0].SHA256, "native", "lines")
			if err != nil || !ok || cp.State != store.ImportInterrupted || cp.Lines == 0 || cp.Lines >= n {
				t.Fatalf("checkpoint after the interruption: %+v %v %v", cp, ok, err)
			}
			o = r.options("native", "lines")
			o.ChunkBytes = 64 << 10
			second := r.run(t, o, path)
			f := second.Files[0]
			if f.ResumedAt != int64(cp.Lines) || f.Lines != n-int64(cp.Lines) {
				t.Errorf("second run resumed after line %d and read %d lines; the checkpoint said %d", f.ResumedAt, f.Lines, cp.Lines)
			}
			if got := r.sp.LastSeq(); got != n {
				t.Errorf("the spool holds %d messages, want %d, each once", got, n)
			}
			if first.Total.Stored+f.Stored != n-f.Duplicates {
				t.Errorf("stored %d then %d (+%d duplicates): want %d in all", first.Total.Stored, f.Stored, f.Duplicates, n)
			}
			done, _, _ := r.st.LastImport(context.Background(), f.SHA256, "native", "lines")
			// Batches stored after the checkpoint count as duplicates when
			// the resume sends them again: each line is counted once.
			if done.State != store.ImportDone || done.Lines != n || done.Stored+done.Duplicates != n {
				t.Errorf("final checkpoint %+v: want done, %d lines, %d stored or duplicate over both runs", done, n, n)
			}
		})
	}
}

// A line longer than MaxLine is rejected alone; the lines around it are
// read.
func TestImportTooLongLine(t *testing.T) {
	r := newRig(t)
	path := filepath.Join(t.TempDir(), "long.ndjson")
	long := `{"data":{"ext":"","clientType":"2","createTime":1700000000002,"msgid":2,"from":"u","to":"v","body":"` + strings.Repeat("x", 200<<10) + `"},"type":0}`
	content := `{"data":{"ext":"","clientType":"2","createTime":1700000000001,"msgid":1,"from":"u","to":"v","body":"a"},"type":0}` + "\n" + long + "\n" +
		`{"data":{"ext":"","clientType":"2","createTime":1700000000003,"msgid":3,"from":"u","to":"v","body":"c"},"type":0}` + "\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	o := r.options("native", "lines")
	o.ChunkBytes, o.MaxLine = 16<<10, 64<<10
	sum := r.run(t, o, path)
	if sum.Total.Stored != 2 || sum.Total.Rejected[importer.ReasonTooLong] != 1 || sum.Total.Lines != 3 {
		t.Fatalf("%+v: want lines 1 and 3 stored, line 2 too long", sum.Total)
	}
	if rej := r.rejected(t); len(rej) != 1 || rej[0] != "2 too_long" {
		t.Fatalf("reject file: %q", rej)
	}
}

func gzipped(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeGzip(t *testing.T, path string, b []byte) {
	if err := os.WriteFile(path, gzipped(t, b), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeZip(t *testing.T, path string, entries map[string][]byte) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, name := range []string{"a.ndjson", "b.ndjson"} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(entries[name])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}
