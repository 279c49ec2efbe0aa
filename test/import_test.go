package test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
)

const importAdminToken = "test-import-admin-token"

// importCmd is `imbridge import` with serve's configuration.
func importCmd(s *server, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, append([]string{"import", "--quiet"}, args...)...)
	cmd.Env = s.env
	return cmd
}

// runImport runs an import to its end and returns its output and exit code.
func runImport(t *testing.T, s *server, args ...string) (string, int) {
	t.Helper()
	cmd := importCmd(s, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

// writeLines writes native lines with msgids first..last, one per line.
func writeLines(t *testing.T, path string, first, last int64, extra ...string) {
	t.Helper()
	var b strings.Builder
	for id := first; id <= last; id++ {
		b.WriteString(textLine(id))
		b.WriteByte('\n')
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rowsPerMsgID counts the stored rows of each msgid.
func rowsPerMsgID(t *testing.T, s *server) map[int64]int {
	t.Helper()
	st, err := store.Open(context.Background(), managedDSN(t, s), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows, err := st.Conn().Query(context.Background(), "SELECT msgid, toUInt64(count()) FROM messages GROUP BY msgid")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]int{}
	for rows.Next() {
		var id int64
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = int(n)
	}
	return out
}

// expectOneRowEach checks that msgids first..last are stored once each.
func expectOneRowEach(t *testing.T, rows map[int64]int, first, last int64) {
	t.Helper()
	bad := 0
	for id := first; id <= last; id++ {
		if rows[id] != 1 {
			if bad++; bad <= 5 {
				t.Errorf("msgid %d: %d rows, want 1", id, rows[id])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d msgids not stored exactly once", bad, last-first+1)
	}
}

// Import beside a running serve goes through its admin API: a message that
// came by callback and is imported again is stored once; a second run of
// the same file is recognised and reads nothing; a bad line is rejected with
// its line number and exit status 4; what was imported is pulled.
func TestImportThroughServe(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "", "IMBRIDGE_ADMIN_TOKEN="+importAdminToken)
	if code, body, err := postNative(s.base, textLine(3)); err != nil || code != 200 {
		t.Fatalf("callback: %d %s %v", code, body, err)
	}
	file := filepath.Join(dir, "history.ndjson")
	writeLines(t, file, 1, 500, `{"data":{"msgid":"x"},"type":0}`)

	out, code := runImport(t, s, "--source", "native", "--rejects", filepath.Join(dir, "rejects.jsonl"), file)
	if code != 4 || !strings.Contains(out, "through serve") || !strings.Contains(out, "499 stored, 1 duplicates") || !strings.Contains(out, "1 lines rejected") {
		t.Fatalf("first import: exit %d, want 4 (one line rejected), 499 stored and 1 duplicate:\n%s", code, out)
	}
	rej, err := os.ReadFile(filepath.Join(dir, "rejects.jsonl"))
	if err != nil || !strings.Contains(string(rej), `"line":501`) || !strings.Contains(string(rej), `"reason":"malformed"`) {
		t.Fatalf("reject file: %s %v", rej, err)
	}

	m := scrapeMetrics(t, s.base)
	for series, want := range map[string]float64{
		`imbridge_import_messages_total{outcome="accepted",source="native"}`:  499,
		`imbridge_import_messages_total{outcome="duplicate",source="native"}`: 1,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}

	started := time.Now()
	out, code = runImport(t, s, "--source", "native", file)
	if code != 0 || !strings.Contains(out, "already imported whole") {
		t.Fatalf("second import: exit %d, want 0 and the file skipped:\n%s", code, out)
	}
	t.Logf("second run of the same file: %s", time.Since(started).Round(time.Millisecond))

	served := pullAllFrom(t, s.base, idsBetween(1, 500), 60*time.Second)
	for id := int64(1); id <= 500; id++ {
		if served[id] == 0 {
			t.Fatalf("msgid %d was imported but never pulled", id)
		}
	}
	expectOneRowEach(t, rowsPerMsgID(t, s), 1, 500)
}

// An import killed midway resumes where its checkpoint says on the next
// run, and in the end every line of the file is stored exactly once; with
// no serve running, import opens the spool itself and waits for ClickHouse.
func TestImportKilledResumesAndRunsWithoutServe(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "", "IMBRIDGE_ADMIN_TOKEN="+importAdminToken)
	const n = 60000
	file := filepath.Join(dir, "big.ndjson")
	writeLines(t, file, 1, n)

	cmd := importCmd(s, "--source", "native", "--checkpoint-every", "20ms", file)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	st, err := store.Open(context.Background(), managedDSN(t, s), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var lines uint64
	waitFor(t, 60*time.Second, "a checkpoint mid-file", func() bool {
		select {
		case <-exited:
			t.Fatalf("the import ended before it could be killed:\n%s", out.String())
		default:
		}
		_ = st.Conn().QueryRow(context.Background(), "SELECT max(lines) FROM imports WHERE state = 'running'").Scan(&lines)
		return lines > 0
	})
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited

	res, code := runImport(t, s, "--source", "native", file)
	if code != 0 || !strings.Contains(res, "resumed after line") {
		t.Fatalf("second run: exit %d, want 0 and a resume:\n%s", code, res)
	}
	if strings.Contains(res, "resumed after line 0)") {
		t.Fatalf("resumed from the top:\n%s", res)
	}
	waitFor(t, 60*time.Second, "every imported message in ClickHouse", func() bool { return storedCount(t, s) >= n })
	expectOneRowEach(t, rowsPerMsgID(t, s), 1, n)

	// No serve: the command opens the spool, and leaves it loaded.
	if code := s.terminate(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	alone := filepath.Join(dir, "alone.ndjson")
	writeLines(t, alone, n+1, n+1000)
	res, code = runImport(t, s, "--source", "native", alone)
	if code != 0 || !strings.Contains(res, "no serve answers") || !strings.Contains(res, "1000 stored") {
		t.Fatalf("import without serve: exit %d:\n%s", code, res)
	}
	s.start()
	pullAllFrom(t, s.base, idsBetween(n+1, n+1000), 60*time.Second)
	expectOneRowEach(t, rowsPerMsgID(t, s), 1, n+1000)
}

func idsBetween(first, last int64) map[int64]bool {
	m := make(map[int64]bool, last-first+1)
	for id := first; id <= last; id++ {
		m[id] = true
	}
	return m
}
