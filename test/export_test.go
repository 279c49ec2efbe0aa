package test

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
)

// postStock posts n native lines (msgids from first) in bulk NDJSON bodies.
func postStock(t *testing.T, base string, first, n int64) {
	t.Helper()
	const per = 5000
	for lo := first; lo < first+n; lo += per {
		var b strings.Builder
		for id := lo; id < min(lo+per, first+n); id++ {
			b.WriteString(textLine(id))
			b.WriteByte('\n')
		}
		if code, body, err := postNative(base, b.String()); err != nil || code != 200 {
			t.Fatalf("posting stock: %d %s %v", code, body, err)
		}
	}
}

// storedCount is how many messages serve's managed ClickHouse holds.
func storedCount(t *testing.T, s *server) uint64 {
	t.Helper()
	return countIn(t, s, "SELECT count() FROM messages")
}

func exportCmd(s *server, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, append([]string{"export"}, args...)...)
	cmd.Env = s.env
	return cmd
}

// exportedFiles lists the files under dir whose names start with p2p or team.
func exportedFiles(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasPrefix(d.Name(), "p2p") || strings.HasPrefix(d.Name(), "team")) {
			out = append(out, path)
		}
		return nil
	})
	return out
}

func TestExportBesideABusyServeRefusesNothing(t *testing.T) {
	dataDir := t.TempDir()
	s := startServer(t, dataDir, "")
	pid := managedPid(t, dataDir)
	postStock(t, s.base, 1_000_000, 3000)
	waitFor(t, time.Minute, "the stock loaded", func() bool { return storedCount(t, s) >= 3000 })

	acks, refused := newAckSet(), &sync.Map{}
	var next atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	wg := load(ctx, s.base, 8, func() int64 { return next.Add(1) }, acks, refused)
	out := t.TempDir()
	var manifests []string
	for i := 0; i < 2; i++ {
		cmd := exportCmd(s, "--out", out, "--full")
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("export beside serve: %v\n%s", err, b)
		}
		manifests = append(manifests, string(b))
	}
	cancel()
	wg.Wait()
	expectNoneRefused(t, refused)
	if got := managedPid(t, dataDir); got != pid {
		t.Errorf("serve's clickhouse-server was pid %d, now %d: export replaced it", pid, got)
	}
	runs, _ := filepath.Glob(filepath.Join(out, "*", "manifest.json"))
	if len(runs) != 2 {
		t.Fatalf("%d run folders with a manifest, want 2; export said %q", len(runs), manifests)
	}
	for _, path := range runs {
		var m struct {
			Lines uint64 `json:"lines"`
			Files []struct{ Name string }
		}
		raw, _ := os.ReadFile(path)
		if err := json.Unmarshal(raw, &m); err != nil || m.Lines < 3000 || len(m.Files) != 1 || m.Files[0].Name != "p2p.txt" {
			t.Errorf("%s: %s", path, raw)
		}
	}
	acked := acks.snapshot()
	expectEachOnce(t, pullAllFrom(t, s.base, acked, time.Minute), acked)
}

func TestKilledExportLeavesNoFilesAndTheNextRunSaysSo(t *testing.T) {
	dataDir := t.TempDir()
	s := startServer(t, dataDir, "")
	const n = 200_000
	postStock(t, s.base, 1, n)
	waitFor(t, 2*time.Minute, "the stock loaded", func() bool { return storedCount(t, s) >= n })

	out := t.TempDir()
	killed := false
	for attempt := 0; attempt < 5 && !killed; attempt++ {
		cmd := exportCmd(s, "--out", out, "--full")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		// Kill it once it is writing lines: a partial folder holding a
		// temporary file with data in it.
		deadline := time.Now().Add(time.Minute)
	watch:
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				break watch // finished first: try again
			default:
			}
			tmps, _ := filepath.Glob(filepath.Join(out, ".*.partial", ".p2p-*.tmp"))
			for _, tmp := range tmps {
				if fi, err := os.Stat(tmp); err == nil && fi.Size() > 0 {
					_ = cmd.Process.Kill()
					killed = true
					break watch
				}
			}
		}
		<-exited
	}
	if !killed {
		t.Skip("every export finished before it could be killed mid-write")
	}
	for _, f := range exportedFiles(out) {
		if !strings.Contains(f, ".partial") {
			continue
		}
		t.Errorf("a killed run left %s", f)
	}
	if files := exportedFiles(out); len(files) > 0 {
		// Runs that finished before the kill may have left complete folders;
		// none may be inside a partial folder (checked above).
		t.Logf("complete runs before the kill: %v", files)
	}
	b, err := exportCmd(s, "--out", out, "--full").CombinedOutput()
	if err != nil {
		t.Fatalf("export after the kill: %v\n%s", err, b)
	}
	if left, _ := filepath.Glob(filepath.Join(out, ".*.partial")); len(left) != 0 {
		t.Errorf("the next run left the killed run's folder: %v", left)
	}
	st, err := store.Open(context.Background(), managedDSN(t, s), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var status, why string
	if err := st.Conn().QueryRow(context.Background(), `SELECT argMax(status, final), argMax(error, final) FROM export_runs
 GROUP BY run_id HAVING argMax(status, final) = 'killed'`).Scan(&status, &why); err != nil {
		t.Fatalf("no killed run recorded: %v", err)
	}
	if !strings.Contains(why, "ended before the run finished") {
		t.Errorf("killed run's error %q does not say why", why)
	}
}
