package exporter_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imbridge/imbridge/exporter"
	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/loader"
	"github.com/imbridge/imbridge/mapping"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/render"
	"github.com/imbridge/imbridge/spool"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// cutoff is the migration cutoff of these tests: messages created before it
// are stock.
var cutoff = time.UnixMilli(1700000100000)

// rig is the ingest path of one serve (spool without de-duplication, so a
// message can be stored twice as after a long gap, loader, re-issuer) on a
// real ClickHouse.
type rig struct {
	st *store.Store
	in *ingest.Ingester
	ld *loader.Loader
	sp *spool.Spool
	ri *mapping.Reissuer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	st := storetest.Open(t)
	sp, err := spool.Open(spool.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{st: st, in: ingest.New(sp), sp: sp}
	r.ld = loader.New(sp, st, mapping.NewSnapshots(st), loader.Options{Linger: time.Millisecond})
	r.ri = mapping.NewReissuer(st, r.in, r.ld.Rendered, nil, 20*time.Millisecond, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { r.ld.Run(ctx, 5*time.Second); done <- struct{}{} }()
	go func() { r.ri.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done; sp.Close() })
	return r
}

// ingest stores msgs and recalls and waits until ClickHouse has them.
func (r *rig) ingest(t *testing.T, msgs []message.Message, recalls ...message.Recall) {
	t.Helper()
	if _, err := r.in.IngestBatch(context.Background(), "easemob", msgs, recalls); err != nil {
		t.Fatal(err)
	}
	r.settle(t)
}

func (r *rig) settle(t *testing.T) {
	t.Helper()
	last := r.sp.LastSeq()
	waitFor(t, "the loader", func() bool { return r.ld.Watermark() >= last })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func text(id string, at int64) message.Message {
	return message.Message{SourceID: id, Scene: message.P2P, Type: message.TypeText, MsgID: message.MsgID("easemob", id),
		From: "alice", To: "bob", CreateTime: at, ClientType: message.REST, Body: "你好 " + id}
}

func image(id, url string) message.Message {
	return message.Message{SourceID: id, Scene: message.P2P, Type: message.TypeImage, MsgID: message.MsgID("easemob", id),
		From: "alice", To: "bob", CreateTime: 1700000000000, ClientType: message.REST,
		Attach: &message.Image{Name: "a.jpg", URL: url, Ext: "jpg", W: 10, H: 20, Size: 300}}
}

func group(id, groupID string) message.Message {
	return message.Message{SourceID: id, GroupID: groupID, Scene: message.Team, Type: message.TypeText,
		MsgID: message.MsgID("easemob", id), From: "carol", CreateTime: 1700000000500, ClientType: message.REST, Body: "群 " + id}
}

func joined(id, groupID string) message.Message {
	return message.Message{SourceID: id, GroupID: groupID, Scene: message.Team, Type: message.TypeTeamInvite,
		MsgID: message.MsgID("easemob", id), From: "dave", Accid2: "carol", CreateTime: 1700000000600, ClientType: message.REST}
}

// expectedLines renders msgs with the store's current maps: what an export
// must write.
func expectedLines(t *testing.T, st *store.Store, msgs ...message.Message) (p2p, team []string) {
	t.Helper()
	ptrs := make([]*message.Message, len(msgs))
	for i := range msgs {
		msgs[i].Source = "easemob"
		ptrs[i] = &msgs[i]
	}
	snap, err := mapping.NewSnapshots(st).Take(context.Background(), ptrs)
	if err != nil {
		t.Fatal(err)
	}
	var enc message.Encoder
	for _, m := range ptrs {
		line, out := render.Line(nil, &enc, m, snap)
		if out.Held {
			t.Fatalf("expected line of a held message %s", m.SourceID)
		}
		if m.Scene == message.P2P {
			p2p = append(p2p, string(line))
		} else {
			team = append(team, string(line))
		}
	}
	return p2p, team
}

func run(t *testing.T, st *store.Store, opts exporter.Options, req exporter.Request) *exporter.Manifest {
	t.Helper()
	if req.Trigger == "" {
		req.Trigger = "command"
	}
	req.Before = cutoff
	m, err := exporter.New(st, opts).Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readRun reads a run's folder: every file's lines (gunzipped) by name, and
// checks the manifest against the files on disk.
func readRun(t *testing.T, dir string, m *exporter.Manifest) map[string][]string {
	t.Helper()
	runDir := filepath.Join(dir, m.RunID)
	var onDisk []string
	entries, err := os.ReadDir(runDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		onDisk = append(onDisk, e.Name())
	}
	want := []string{"manifest.json"}
	for _, f := range m.Files {
		want = append(want, f.Name)
	}
	sort.Strings(want)
	if !reflect.DeepEqual(onDisk, want) {
		t.Fatalf("run folder holds %v, want exactly %v (no temporary file)", onDisk, want)
	}
	var fromDisk exporter.Manifest
	raw, err := os.ReadFile(filepath.Join(runDir, "manifest.json"))
	if err != nil || json.Unmarshal(raw, &fromDisk) != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if fromDisk.RunID != m.RunID || fromDisk.Lines != m.Lines || len(fromDisk.Files) != len(m.Files) {
		t.Fatalf("manifest.json %+v differs from the run's manifest %+v", fromDisk, m)
	}
	out := map[string][]string{}
	for _, f := range fromDisk.Files {
		b, err := os.ReadFile(filepath.Join(runDir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != f.SHA256 || int64(len(b)) != f.Bytes {
			t.Errorf("%s: sha256/bytes in the manifest do not match the file", f.Name)
		}
		var r io.Reader = strings.NewReader(string(b))
		if strings.HasSuffix(f.Name, ".gz") {
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		types := map[string]uint64{}
		for sc.Scan() {
			out[f.Name] = append(out[f.Name], sc.Text())
			var l struct{ Type int }
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("%s: line %q: %v", f.Name, sc.Text(), err)
			}
			types[strconv.Itoa(l.Type)]++
		}
		if uint64(len(out[f.Name])) != f.Lines || !reflect.DeepEqual(types, f.Types) {
			t.Errorf("%s: %d lines with types %v on disk, manifest says %d and %v", f.Name, len(out[f.Name]), types, f.Lines, f.Types)
		}
	}
	return out
}

func TestExportWritesEveryStockLineOnceAndTheManifestSaysWhatItLeftOut(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.st.PutTeamMappings(ctx, []store.TeamMapping{{Source: "easemob", GroupID: "g-mapped", TID: 4100}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.PutURLMappings(ctx, []store.URLMapping{{Old: "https://old/mapped.jpg", New: "https://nim/mapped.jpg"}}); err != nil {
		t.Fatal(err)
	}
	stock := []message.Message{
		text("t-1", 1700000000000),
		image("i-mapped", "https://old/mapped.jpg"),
		image("i-unmapped", "https://old/unmapped.jpg"),
		group("g-1", "g-mapped"),
		joined("n-1", "g-mapped"),
	}
	recalledLater, recalledFirst := text("r-later", 1700000000100), text("r-first", 1700000000200)
	r.ingest(t, []message.Message{recalledFirst}[:0], message.Recall{Key: "r-first", Time: 1700000000300})
	r.ingest(t, append(append([]message.Message{}, stock...), group("held-1", "g-unmapped"), recalledLater, recalledFirst, text("after-cutoff", cutoff.UnixMilli())))
	r.ingest(t, nil, message.Recall{Key: "r-later", Time: 1700000000400})
	r.ingest(t, []message.Message{text("t-1", 1700000000000)}) // stored again (as by an import after the de-duplication window)

	dir := t.TempDir()
	m := run(t, r.st, exporter.Options{Dir: dir}, exporter.Request{})
	files := readRun(t, dir, m)
	// t-1 was stored twice: written once, where it came first.
	p2p, team := expectedLines(t, r.st, stock...)
	if !reflect.DeepEqual(files["p2p.txt"], p2p) || !reflect.DeepEqual(files["team.txt"], team) {
		t.Fatalf("export wrote\n p2p %q\n team %q\nwant\n p2p %q\n team %q", files["p2p.txt"], files["team.txt"], p2p, team)
	}
	if !strings.Contains(files["p2p.txt"][1], `https://nim/mapped.jpg`) || !strings.Contains(files["team.txt"][0], `"tid":4100`) {
		t.Fatalf("maps not applied: %q %q", files["p2p.txt"][1], files["team.txt"][0])
	}
	if m.Mode != "full" || m.Held.Messages != 1 || m.Held.GroupsTotal != 1 || m.Held.Groups[0].GroupID != "g-unmapped" ||
		m.Recalled != 2 || m.Duplicates != 1 || m.UnmappedURLs != 1 || m.P2P != 3 || m.Team != 2 {
		t.Errorf("manifest %+v: want full, 1 held in g-unmapped, 2 recalled, 1 duplicate, 1 unmapped URL, 3 p2p and 2 team lines", m)
	}
	if m.Cutoff == nil || !m.Cutoff.Equal(cutoff) || m.SeqTo != r.sp.LastSeq() {
		t.Errorf("manifest cutoff %v seq_to %d, want %v and %d", m.Cutoff, m.SeqTo, cutoff, r.sp.LastSeq())
	}
	if status := runStatus(t, r.st, m.RunID); status != "ok" {
		t.Errorf("export_runs says %q", status)
	}

	// Incremental: the held group gets its mapping (re-issued by serve's
	// re-issuer) and new stock arrives; the next run writes only those.
	if _, err := r.st.PutTeamMappings(ctx, []store.TeamMapping{{Source: "easemob", GroupID: "g-unmapped", TID: 4200}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the held message re-issued", func() bool { return r.sp.LastSeq() > m.SeqTo })
	r.settle(t)
	r.ingest(t, []message.Message{text("late-stock", 1700000000900)})
	// A trial run into another folder is a full run there and does not
	// move this folder's baseline.
	if trial := run(t, r.st, exporter.Options{Dir: dir}, exporter.Request{Out: t.TempDir()}); trial.Mode != "full" {
		t.Fatalf("first run into another folder: %+v, want a full run", trial)
	}
	m2 := run(t, r.st, exporter.Options{Dir: dir}, exporter.Request{Trigger: "schedule"})
	files = readRun(t, dir, m2)
	p2p, team = expectedLines(t, r.st, text("late-stock", 1700000000900), group("held-1", "g-unmapped"))
	if m2.Mode != "incremental" || m2.PreviousRun != m.RunID || m2.SeqFrom != m.SeqTo ||
		!reflect.DeepEqual(files["p2p.txt"], p2p) || !reflect.DeepEqual(files["team.txt"], team) || m2.Held.Messages != 0 {
		t.Fatalf("incremental run %+v wrote %v; want p2p %q team %q after run %s", m2, files, p2p, team, m.RunID)
	}

	// A full run is one flag away. A URL mapped meanwhile re-issued its
	// image: only the copy, with the new URL, is written.
	last := r.sp.LastSeq()
	if _, err := r.st.PutURLMappings(ctx, []store.URLMapping{{Old: "https://old/unmapped.jpg", New: "https://nim/late.jpg"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the image re-issued", func() bool { return r.sp.LastSeq() > last })
	r.settle(t)
	m3 := run(t, r.st, exporter.Options{Dir: dir}, exporter.Request{Full: true})
	p2pAll := strings.Join(readRun(t, dir, m3)["p2p.txt"], "\n")
	if m3.Mode != "full" || m3.SeqFrom != 0 || m3.Lines != 7 || m3.UnmappedURLs != 0 ||
		strings.Contains(p2pAll, "old/unmapped.jpg") || strings.Count(p2pAll, "nim/late.jpg") != 1 {
		t.Errorf("full run: %+v\n%s\nwant all 7 stock lines, the re-issued image once with its new URL", m3, p2pAll)
	}
}

func TestSplitAndGzippedFilesHoldTheSameLines(t *testing.T) {
	r := newRig(t)
	var msgs []message.Message
	for i := range 50 {
		msgs = append(msgs, text("s-"+strconv.Itoa(i), 1700000000000+int64(i)))
	}
	r.ingest(t, msgs)
	dir := t.TempDir()
	whole := readRun(t, dir, run(t, r.st, exporter.Options{Dir: dir}, exporter.Request{}))["p2p.txt"]
	m := run(t, r.st, exporter.Options{Dir: dir, MaxFileBytes: 1000, Gzip: true}, exporter.Request{Full: true})
	files := readRun(t, dir, m)
	var joined []string
	for i, f := range m.Files {
		if want := "p2p-" + strconv.Itoa(10001 + i)[1:] + ".txt.gz"; f.Name != want {
			t.Errorf("file %d is %s, want %s", i, f.Name, want)
		}
		n := 0
		for _, l := range files[f.Name] {
			n += len(l) + 1
		}
		if n > 1000 {
			t.Errorf("%s holds %d bytes, more than export.max_file_bytes", f.Name, n)
		}
		joined = append(joined, files[f.Name]...)
	}
	if len(m.Files) < 3 || !reflect.DeepEqual(joined, whole) {
		t.Fatalf("%d split files hold %d lines; want several files with the %d lines of the whole file, in order", len(m.Files), len(joined), len(whole))
	}
}

// failingStore breaks the stream after a few lines, as a ClickHouse that
// goes away mid-run.
type failingStore struct {
	*store.Store
	after int
}

func (f *failingStore) StreamExport(ctx context.Context, flt store.ExportFilter, fn func(string, uint16, string) error) (uint64, error) {
	n := 0
	return f.Store.StreamExport(ctx, flt, func(scene string, typ uint16, line string) error {
		if n++; n > f.after {
			return errors.New("connection reset by peer")
		}
		return fn(scene, typ, line)
	})
}

// exportFiles lists every file under dir whose name starts with p2p or team.
func exportFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasPrefix(d.Name(), "p2p") || strings.HasPrefix(d.Name(), "team")) {
			out = append(out, path)
		}
		return nil
	})
	return out
}

func TestFailedRunLeavesNoFilesAndSaysWhy(t *testing.T) {
	r := newRig(t)
	var msgs []message.Message
	for i := range 20 {
		msgs = append(msgs, text("f-"+strconv.Itoa(i), 1700000000000+int64(i)))
	}
	r.ingest(t, msgs)
	dir := t.TempDir()
	_, err := exporter.New(&failingStore{Store: r.st, after: 10}, exporter.Options{Dir: dir}).Run(context.Background(), exporter.Request{Trigger: "command"})
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("run error %v, want the stream's failure", err)
	}
	if files := exportFiles(t, dir); len(files) != 0 {
		t.Errorf("a failed run left %v", files)
	}
	var status, why string
	if err := r.st.Conn().QueryRow(context.Background(),
		"SELECT argMax(status, final), argMax(error, final) FROM export_runs").Scan(&status, &why); err != nil {
		t.Fatal(err)
	}
	if status != "failed" || !strings.Contains(why, "connection reset") {
		t.Errorf("export_runs: %q %q, want failed with the reason", status, why)
	}
	// The failed run is no base for an incremental one.
	if m := run(t, r.st, exporter.Options{Dir: dir}, exporter.Request{}); m.Mode != "full" || m.Lines != 20 {
		t.Errorf("run after the failure: %+v, want a full run of 20 lines", m)
	}
}

func TestKilledRunIsRecordedAndCleanedByTheNext(t *testing.T) {
	r := newRig(t)
	r.ingest(t, []message.Message{text("k-1", 1700000000000)})
	dir := t.TempDir()
	// What kill -9 leaves: a run recorded as running and its hidden folder.
	killed := store.ExportRun{RunID: "20260101T000000Z-dead00", Status: "running", Trigger: "schedule", Mode: "full",
		Dir: dir, StartedAt: time.Now(), RecordedAt: time.Now(), PID: 1, Host: "old-host"}
	if err := r.st.RecordExportRun(context.Background(), killed); err != nil {
		t.Fatal(err)
	}
	partial := filepath.Join(dir, ".20260101T000000Z-dead00.partial")
	if err := os.MkdirAll(partial, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(partial, ".p2p-0001.tmp"), []byte("half a line"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, r.st, exporter.Options{Dir: dir}, exporter.Request{})
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Errorf("the killed run's folder is still there: %v", err)
	}
	if status := runStatus(t, r.st, killed.RunID); status != "killed" {
		t.Errorf("killed run recorded as %q", status)
	}
}

func TestASecondRunInTheSameFolderIsRefused(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	fh, err := os.OpenFile(filepath.Join(dir, ".export.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	_, err = exporter.New(r.st, exporter.Options{Dir: dir}).Run(context.Background(), exporter.Request{Trigger: "schedule"})
	if !errors.Is(err, exporter.ErrBusy) {
		t.Fatalf("run beside a running one: %v, want ErrBusy", err)
	}
}

func runStatus(t *testing.T, st *store.Store, runID string) string {
	t.Helper()
	var status string
	if err := st.Conn().QueryRow(context.Background(),
		"SELECT argMax(status, final) FROM export_runs WHERE run_id = ?", runID).Scan(&status); err != nil {
		t.Fatal(err)
	}
	return status
}
