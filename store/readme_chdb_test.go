package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

const chdbDir = "../test/chdb"

// The schema and every README query also run on current ClickHouse (chdb's
// embedded engine, through test/chdb/check.js), and each query finds as
// many rows there as on 18.16. Without node or chdb (npm install in test/chdb)
// the test skips, unless IMBRIDGE_REQUIRE_CHDB=1 (CI sets it).
func TestREADMEAuditQueriesOnCurrentClickHouse(t *testing.T) {
	node := requireChdb(t)
	schema, err := store.SchemaSQL()
	if err != nil {
		t.Fatal(err)
	}
	schemaFile := filepath.Join(t.TempDir(), "schema.sql")
	if err := os.WriteFile(schemaFile, []byte(schema), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "check.js", "--json", "--schema", schemaFile,
		"--fixture", filepath.Join("..", "..", "store", fixturePath), "--readme", filepath.Join("..", "..", "README.md"))
	cmd.Dir = chdbDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("check.js on chdb: %v\n%s", err, stderr.String())
	}
	var current []struct {
		Line  int
		Title string
		Rows  int
	}
	if err := json.Unmarshal(stdout.Bytes(), &current); err != nil {
		t.Fatalf("check.js output: %v\n%s", err, stdout.String())
	}

	queries := readmeQueries(t)
	if len(current) != len(queries) {
		t.Fatalf("check.js found %d README queries, the Go rule %d: the two extraction rules differ", len(current), len(queries))
	}
	st := storetest.Open(t)
	loadFixture(t, st)
	for i, q := range queries {
		if current[i].Line != q.Line {
			t.Errorf("query %d: check.js read it at README.md:%d, the Go rule at :%d", i+1, current[i].Line, q.Line)
			continue
		}
		_, rows, err := runQuery(context.Background(), st.Conn(), q.SQL)
		if err != nil {
			t.Errorf("README.md:%d on 18.16: %v", q.Line, err)
			continue
		}
		if current[i].Rows != len(rows) {
			t.Errorf("README.md:%d (%s): %d rows on current ClickHouse, %d on 18.16", q.Line, q.Title, current[i].Rows, len(rows))
		}
	}
}

// requireChdb returns node's path, or skips (fails under
// IMBRIDGE_REQUIRE_CHDB=1) when node or the chdb package is missing.
func requireChdb(t *testing.T) string {
	t.Helper()
	missing := func(what string) {
		msg := what + ": the README queries are not checked on current ClickHouse (install node, then run npm install in test/chdb)"
		if os.Getenv("IMBRIDGE_REQUIRE_CHDB") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not on PATH")
	}
	if _, err := os.Stat(filepath.Join(chdbDir, "node_modules", "chdb", "package.json")); err != nil {
		missing("chdb is not installed in test/chdb/node_modules")
	}
	return node
}
