package deploy

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// clusterDDL is every statement of the README's Deployment section that
// creates a replicated table.
func clusterDDL(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Deployment\n")
	if !ok {
		t.Fatal("README.md has no ## Deployment section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var out []string
	for _, block := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(section, -1) {
		for _, st := range strings.Split(block[1], ";") {
			if strings.Contains(st, "ReplicatedMergeTree") {
				out = append(out, strings.TrimSpace(st))
			}
		}
	}
	return out
}

// onOneServer is a cluster statement as one server without ZooKeeper runs
// it: no ON CLUSTER, MergeTree for ReplicatedMergeTree, database db.
func onOneServer(st, db string) string {
	st = strings.ReplaceAll(st, " ON CLUSTER imbridge", "")
	st = regexp.MustCompile(`ReplicatedMergeTree\('[^']*', '\{replica\}'\)`).ReplaceAllString(st, "MergeTree()")
	return strings.ReplaceAll(st, "imbridge.", db+".")
}

type column struct{ Name, Type, DefaultKind, DefaultExpression string }

func columns(t *testing.T, st *store.Store, db, table string) []column {
	t.Helper()
	rows, err := st.Conn().Query(context.Background(),
		"SELECT name, type, default_kind, default_expression FROM system.columns WHERE database = ? AND table = ?", db, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []column
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.Name, &c.Type, &c.DefaultKind, &c.DefaultExpression); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// engineClauses is a table's PARTITION BY / ORDER BY, from its CREATE
// statement.
func engineClauses(t *testing.T, st *store.Store, db, table string) string {
	t.Helper()
	var q string
	if err := st.Conn().QueryRow(context.Background(),
		"SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?", db, table).Scan(&q); err != nil {
		t.Fatal(err)
	}
	if i := strings.Index(q, "PARTITION BY"); i >= 0 {
		return q[i:]
	}
	if i := strings.Index(q, "ORDER BY"); i >= 0 {
		return q[i:]
	}
	return q
}

// The README's replicated DDL makes the same tables as imbridge's
// migrations: the same columns in the same order, with the same types and
// defaults, and the same PARTITION BY / ORDER BY.
func TestREADMEClusterDDLMatchesTheMigrations(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t) // imbridge's own schema, migrated
	stmts := clusterDDL(t)
	if len(stmts) < 2 {
		t.Fatalf("found %d replicated CREATE statements in the README's Deployment section, want messages and reissues", len(stmts))
	}
	db := st.Database() + "_cluster"
	if err := st.Conn().Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Conn().Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) })
	name := regexp.MustCompile(`(?:TABLE|VIEW) IF NOT EXISTS imbridge\.(\w+)`)
	for _, stmt := range stmts {
		m := name.FindStringSubmatch(stmt)
		if m == nil {
			t.Fatalf("cannot tell which table this creates:\n%s", stmt)
		}
		table := m[1]
		if err := st.Conn().Exec(ctx, onOneServer(stmt, db)); err != nil {
			t.Fatalf("%s: %v\n%s", table, err, onOneServer(stmt, db))
		}
		got, want := columns(t, st, db, table), columns(t, st, st.Database(), table)
		if len(want) == 0 {
			t.Fatalf("imbridge's schema has no table %s", table)
		}
		if len(got) != len(want) {
			t.Errorf("%s: the README's DDL has %d columns, the migrations %d:\nREADME     %v\nmigrations %v", table, len(got), len(want), got, want)
			continue
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s column %d: README %+v, migrations %+v", table, i+1, got[i], want[i])
			}
		}
		g := strings.ReplaceAll(engineClauses(t, st, db, table), db+".", "imbridge.")
		w := strings.ReplaceAll(engineClauses(t, st, st.Database(), table), st.Database()+".", "imbridge.")
		if g != w {
			t.Errorf("%s: README %q, migrations %q", table, g, w)
		}
	}
}
