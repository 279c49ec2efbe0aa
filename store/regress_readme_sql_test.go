package store_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

var update = flag.Bool("update", false, "rewrite testdata/readme_queries.golden with the results of the README's queries")

const (
	readmePath  = "../README.md"
	fixturePath = "testdata/audit_fixture.sql"
	goldenPath  = "testdata/readme_queries.golden"
)

// Every query of the README's SQL blocks runs on ClickHouse 18.16 (what the
// tests start) against the audit fixture, finds rows, and finds exactly the
// rows in testdata/readme_queries.golden (go test ./store -run
// TestREADMEAuditQueries -update rewrites it; read the diff).
func TestREADMEAuditQueries(t *testing.T) {
	queries := readmeQueries(t)
	if len(queries) < 10 {
		t.Fatalf("the README has %d audit queries, want at least 10", len(queries))
	}
	st := storetest.Open(t)
	loadFixture(t, st)
	var got strings.Builder
	for _, q := range queries {
		cols, rows, err := runQuery(context.Background(), st.Conn(), q.SQL)
		if err != nil {
			t.Errorf("README.md:%d (%s): %v\n  %s", q.Line, q.Title, err, q.SQL)
			continue
		}
		if len(rows) == 0 {
			t.Errorf("README.md:%d (%s): no rows on the audit fixture; the query does no real work there (extend %s)", q.Line, q.Title, fixturePath)
		}
		fmt.Fprintf(&got, "-- %s\n%s\n", q.Title, strings.Join(cols, "\t"))
		for _, r := range rows {
			fmt.Fprintf(&got, "%s\n", strings.Join(r, "\t"))
		}
		got.WriteString("\n")
	}
	if *update {
		if err := os.WriteFile(goldenPath, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got.String() != string(want) {
		t.Errorf("the README's queries answer differently from %s (-update rewrites it):\n%s", goldenPath, lineDiff(string(want), got.String()))
	}
}

// auditQuery is one query of the README.
type auditQuery struct {
	Title string // the comment line above it
	SQL   string // without the final ';'
	Line  int    // in README.md
}

// ddlBlock matches the first statement of a ```sql block that shows DDL
// (the deployment section's cluster schema) rather than queries to run.
var ddlBlock = regexp.MustCompile(`(?i)^(CREATE|ALTER|DROP|RENAME|ATTACH|DETACH|TRUNCATE)\b`)

// readmeQueries extracts the README's queries. The rule (test/chdb/check.js
// follows the same one): inside every block fenced with exactly ```sql, a
// line starting with "--" is the title of the query below it, blank lines are
// skipped, and every other line is one whole query that ends with ";". A
// block whose first statement is DDL (CREATE, ALTER, DROP…) is an example of
// schema, not queries, and is left out (the deploy tests check it).
func readmeQueries(tb testing.TB) []auditQuery {
	tb.Helper()
	f, err := os.Open(readmePath)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []auditQuery
	in, first, ddl, title := false, false, false, ""
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if in && first && line != "" && !strings.HasPrefix(line, "--") {
			first, ddl = false, ddlBlock.MatchString(line)
		}
		switch {
		case !in:
			in, first, ddl, title = line == "```sql", true, false, ""
		case strings.HasPrefix(line, "```"):
			in = false
		case ddl, line == "":
		case strings.HasPrefix(line, "--"):
			title = strings.TrimSpace(strings.TrimPrefix(line, "--"))
		case !strings.HasSuffix(line, ";"):
			tb.Errorf("README.md:%d: a query in a sql block must be one line ending with ';': %s", n, line)
		default:
			if title == "" {
				tb.Errorf("README.md:%d: a query without a -- comment line above it saying what it answers", n)
			}
			out = append(out, auditQuery{Title: title, SQL: strings.TrimSuffix(line, ";"), Line: n})
			title = ""
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// loadFixture runs testdata/audit_fixture.sql: statements end with a line
// ending in ";", lines starting with "--" are comments.
func loadFixture(tb testing.TB, st *store.Store) {
	tb.Helper()
	raw, err := os.ReadFile(fixturePath)
	if err != nil {
		tb.Fatal(err)
	}
	var cur strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		cur.WriteString(line + "\n")
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			stmt := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			cur.Reset()
			if err := st.Conn().Exec(context.Background(), stmt); err != nil {
				tb.Fatalf("%s: %v\n  %.200s", fixturePath, err, stmt)
			}
		}
	}
	if rest := strings.TrimSpace(cur.String()); rest != "" {
		tb.Fatalf("%s: statement without a final ';': %.200s", fixturePath, rest)
	}
}

// runQuery returns the column names and every row, each value formatted as
// text (DateTime in UTC).
func runQuery(ctx context.Context, conn driver.Conn, sql string) ([]string, [][]string, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	cols := make([]string, len(types))
	for i, ct := range types {
		cols[i] = ct.Name()
	}
	var out [][]string
	for rows.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, err
		}
		row := make([]string, len(dest))
		for i, d := range dest {
			row[i] = formatValue(types[i].DatabaseTypeName(), reflect.ValueOf(d).Elem().Interface())
		}
		out = append(out, row)
	}
	return cols, out, rows.Err()
}

func formatValue(dbType string, v any) string {
	if t, ok := v.(time.Time); ok {
		if dbType == "Date" {
			return t.Format("2006-01-02")
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	}
	return fmt.Sprint(v)
}

// lineDiff shows the lines of want and got that differ, by position.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}
