package spool

import (
	"os"
	"testing"
)

func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(es)
}

// A reopen closes the files of the log it replaces: the process's open
// files do not grow with the number of reopens.
func TestRegressReopenKeepsNoFiles(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{reopenEvery: 1})
	defer s.Close()
	appendN(t, s, 0, 10)
	before := openFDs(t)
	for i := 10; i < 510; i++ {
		appendN(t, s, i, i+1)
	}
	after := openFDs(t)
	t.Logf("open files %d -> %d over %d reopens", before, after, s.Stats().Reopens)
	if after > before+5 {
		t.Errorf("open files grew from %d to %d over 500 reopens", before, after)
	}
}
