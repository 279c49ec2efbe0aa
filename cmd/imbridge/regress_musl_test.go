package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Review finding: malloc_cgo.go is meant to degrade on musl ("-1 no such
// setting (musl)"), but its test helper arenas_after_threads, compiled into
// the production binary, calls glibc-only malloc_info outside the
// #ifdef M_ARENA_MAX: a cgo build against musl (Alpine) no longer links.
// The commit before (aec1f45) builds with CC=musl-gcc.
func TestRegressMuslCgoBuildLinks(t *testing.T) {
	cc, err := exec.LookPath("musl-gcc")
	if err != nil {
		t.Skip("musl-gcc not installed (apt-get install musl-tools)")
	}
	goBin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Skip("no go tool")
		}
	}
	cmd := exec.Command(goBin, "build", "-o", filepath.Join(t.TempDir(), "imbridge"), ".")
	cmd.Env = append(os.Environ(), "CC="+cc, "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cgo build with musl fails: %v\n%s", err, errorLines(string(out)))
	}
}

// errorLines keeps the linker's diagnosis, not its command line.
func errorLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "undefined") || strings.Contains(l, "error") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
