package store_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/imbridge/imbridge/store/storetest"
)

// Review check: every audit query in the README's sql block runs on the
// server the tests start (18.16 here).
func TestReviewREADMEQueriesRun(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	st := storetest.Open(t)
	storetest.InsertLines(t, st, 3)
	n := 0
	for _, block := range strings.Split(string(raw), "```sql\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		for _, line := range strings.Split(block, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "--") {
				continue
			}
			n++
			rows, err := st.Conn().Query(context.Background(), strings.TrimSuffix(line, ";"))
			if err != nil {
				t.Errorf("%s\n  %v", line, err)
				continue
			}
			for rows.Next() {
			}
			if err := rows.Err(); err != nil {
				t.Errorf("%s\n  %v", line, err)
			}
			rows.Close()
		}
	}
	if n == 0 {
		t.Fatal("no queries found")
	}
	t.Logf("%d queries", n)
}
