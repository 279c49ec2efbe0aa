package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/imbridge/imbridge/store/storetest"
)

// An export into a folder another export is writing to exits 3 (README
// "Commands"), with one line saying to wait, and writes nothing.
func TestExportIntoABusyFolderExits3(t *testing.T) {
	out := t.TempDir()
	lock, err := os.OpenFile(filepath.Join(out, ".export.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	// The lock a running export holds on its folder.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "export", "--full", "--out", out)
	cmd.Env = append(os.Environ(), "IMBRIDGE_DATA_DIR="+t.TempDir(), "IMBRIDGE_CLICKHOUSE_DSN="+storetest.NewDSN(t))
	output, err := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(output)), "\n")
	last := lines[len(lines)-1]
	if cmd.ProcessState.ExitCode() != 3 || !strings.HasPrefix(last, "imbridge: ") || !strings.Contains(last, "wait for it to finish") {
		t.Fatalf("exit status %d (%v), last line %q; want 3 and a line saying to wait:\n%s", cmd.ProcessState.ExitCode(), err, last, output)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("the busy folder holds %d entries, want only the lock: %v", len(entries), entries)
	}
}
