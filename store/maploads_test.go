package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// loadURLs stages entries (line i+1 for entries[i]) and commits them.
func loadURLs(t *testing.T, st *store.Store, entries ...store.URLMapping) (store.LoadResult, error) {
	t.Helper()
	l, err := st.BeginURLLoad(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return stageAll(t, l, entries)
}

func loadTeams(t *testing.T, st *store.Store, entries ...store.TeamMapping) (store.LoadResult, error) {
	t.Helper()
	l, err := st.BeginTeamLoad(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return stageAll(t, l, entries)
}

func stageAll[E any](t *testing.T, l interface {
	Add(context.Context, uint64, E) error
	Commit(context.Context) (store.LoadResult, error)
	Close()
}, entries []E) (store.LoadResult, error) {
	t.Helper()
	ctx := context.Background()
	defer l.Close()
	for i, e := range entries {
		if err := l.Add(ctx, uint64(i+1), e); err != nil {
			t.Fatal(err)
		}
	}
	return l.Commit(ctx)
}

// count runs a SELECT count() … query.
func count(t *testing.T, st *store.Store, q string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := st.Conn().QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func stagingTables(t *testing.T, st *store.Store) uint64 {
	return count(t, st, "SELECT count() FROM system.tables WHERE database = ? AND name LIKE 'map\\_load\\_%'", st.Database())
}

func u(old, repl string) store.URLMapping { return store.URLMapping{Old: old, New: repl} }

func TestStreamedURLLoadCommitsWhatChanges(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	steps := []struct {
		name    string
		entries []store.URLMapping
		want    store.LoadResult // Version relative: 0 = unchanged
		newVer  bool
	}{
		{"first load", []store.URLMapping{u("https://o/1", "https://n/1"), u("https://o/2", "https://n/2")},
			store.LoadResult{Entries: 2, Changed: 2}, true},
		{"same load again: nothing changes, no version", []store.URLMapping{u("https://o/1", "https://n/1"), u("https://o/2", "https://n/2")},
			store.LoadResult{Entries: 2}, false},
		{"cumulative load with one new and one changed URL", []store.URLMapping{u("https://o/1", "https://n/1"), u("https://o/2", "https://n/2b"), u("https://o/3", "https://n/3")},
			store.LoadResult{Entries: 3, Changed: 2}, true},
		{"an exact repeat in one load is one entry", []store.URLMapping{u("https://o/4", "https://n/4"), u("https://o/4", "https://n/4")},
			store.LoadResult{Entries: 2, Changed: 1}, true},
	}
	var last uint64
	for _, s := range steps {
		got, err := loadURLs(t, st, s.entries...)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.newVer != (got.Version > last) || (!s.newVer && got.Version != last) {
			t.Errorf("%s: version %d after %d, want a new one: %v", s.name, got.Version, last, s.newVer)
		}
		last = got.Version
		s.want.Version = got.Version
		if got != s.want {
			t.Errorf("%s: %+v, want %+v", s.name, got, s.want)
		}
		if v, _ := st.MapVersion(ctx); v != last {
			t.Errorf("%s: committed version %d, want %d", s.name, v, last)
		}
	}
	m, err := st.URLMappings(ctx, last, []string{"https://o/1", "https://o/2", "https://o/3", "https://o/4"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"https://o/1": "https://n/1", "https://o/2": "https://n/2b", "https://o/3": "https://n/3", "https://o/4": "https://n/4"}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("mappings %v, want %v", m, want)
	}
	if n := count(t, st, "SELECT count() FROM url_map"); n != 5 {
		t.Errorf("url_map holds %d rows, want 5 (unchanged entries are not written again)", n)
	}
	if n := stagingTables(t, st); n != 0 {
		t.Errorf("%d staging tables left", n)
	}
}

// A key mapped to two values is refused at the line of its second value,
// the first lines listed in line order, nothing written.
func TestStreamedLoadRefusesAKeyMappedTwice(t *testing.T) {
	st := storetest.Open(t)
	var entries []store.URLMapping
	for i := 1; i <= 30; i++ {
		entries = append(entries, u(fmt.Sprintf("https://o/%d", i), fmt.Sprintf("https://n/%d", i)))
	}
	entries = append(entries, u("https://o/1", "https://n/1"))   // line 31: an exact repeat, fine
	entries = append(entries, u("https://o/2", "https://n/two")) // line 32
	for i := 3; i <= 14; i++ {                                   // lines 33..44
		entries = append(entries, u(fmt.Sprintf("https://o/%d", i), "https://n/other"))
	}
	_, err := loadURLs(t, st, entries...)
	var bad *store.BadLinesError
	if !errors.As(err, &bad) || !errors.Is(err, store.ErrBadMapping) {
		t.Fatalf("load: %v, want a BadLinesError wrapping ErrBadMapping", err)
	}
	if bad.Total != 13 || len(bad.Lines) != store.MaxBadLines {
		t.Errorf("total %d, listed %d: want 13 and %d", bad.Total, len(bad.Lines), store.MaxBadLines)
	}
	want := "line 32: https://o/2 is mapped twice: to https://n/two here and to https://n/2 on line 2"
	if bad.Lines[0].Line != 32 || bad.Lines[0].Msg != strings.TrimPrefix(want, "line 32: ") {
		t.Errorf("first bad line %+v, want %q", bad.Lines[0], want)
	}
	if !strings.Contains(err.Error(), "\n  "+want+"\n") || !strings.Contains(err.Error(), "… and 3 more") {
		t.Errorf("message:\n%s", err)
	}
	if n := count(t, st, "SELECT count() FROM url_map") + count(t, st, "SELECT count() FROM map_versions"); n != 0 {
		t.Errorf("a refused load wrote %d rows", n)
	}
	if n := stagingTables(t, st); n != 0 {
		t.Errorf("%d staging tables left", n)
	}
}

// Changing a mapped group's tid is refused, naming the line, the group and
// how many messages were rendered under it; nothing of the load is written.
func TestStreamedTeamLoadRefusesChangingAMappedGroup(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	if _, err := loadTeams(t, st, store.TeamMapping{Source: "tencent", GroupID: "@TGS#A", TID: 5}); err != nil {
		t.Fatal(err)
	}
	rendered := []store.Message{row(1), row(2), row(3)}
	for i := range rendered {
		rendered[i].Source, rendered[i].Scene, rendered[i].GroupID, rendered[i].TID = "tencent", "team", "@TGS#A", 5
	}
	rendered[2].Held, rendered[2].Line, rendered[2].TID = true, "", 0 // held: not rendered under tid 5
	if err := st.InsertMessages(ctx, rendered); err != nil {
		t.Fatal(err)
	}
	before := count(t, st, "SELECT count() FROM team_map")
	_, err := loadTeams(t, st,
		store.TeamMapping{Source: "tencent", GroupID: "@TGS#new", TID: 7},
		store.TeamMapping{Source: "tencent", GroupID: "@TGS#A", TID: 5}, // unchanged: skipped
		store.TeamMapping{Source: "tencent", GroupID: "@TGS#B", TID: 8},
		store.TeamMapping{Source: "tencent", GroupID: "@TGS#A", TID: 6},
	)
	if !errors.Is(err, store.ErrBadMapping) || !strings.Contains(err.Error(), "line 4: tencent group @TGS#A is mapped twice: to tid 6 here and to tid 5 on line 2") {
		t.Fatalf("a group mapped twice in the load (once as it is, once changed): %v, want it refused as mapped twice", err)
	}
	_, err = loadTeams(t, st,
		store.TeamMapping{Source: "tencent", GroupID: "@TGS#new", TID: 7},
		store.TeamMapping{Source: "tencent", GroupID: "@TGS#A", TID: 6},
	)
	want := "team mapping conflict in 1 line, nothing was loaded:\n  line 2: tencent group @TGS#A is already mapped to tid 5 (2 messages rendered under it so far, more may be on their way); it cannot become 6"
	if !errors.Is(err, store.ErrMappingConflict) || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("load: %v\nwant a conflict ending:\n%s", err, want)
	}
	if n := count(t, st, "SELECT count() FROM team_map"); n != before {
		t.Errorf("team_map grew from %d to %d rows", before, n)
	}
	if m, _ := st.TeamMappings(ctx, 100, []string{"@TGS#new"}); len(m) != 0 {
		t.Errorf("the refused load's other group was mapped: %v", m)
	}
}

func TestStreamedLoadInBatches(t *testing.T) {
	st := storetest.Open(t)
	const n = 45000 // more than two batches
	entries := make([]store.URLMapping, n)
	for i := range entries {
		entries[i] = u(fmt.Sprintf("https://o/%d", i), fmt.Sprintf("https://n/%d", i))
	}
	got, err := loadURLs(t, st, entries...)
	if err != nil {
		t.Fatal(err)
	}
	if got.Entries != n || got.Changed != n {
		t.Fatalf("%+v, want %d entries, all changed", got, n)
	}
	if c := count(t, st, "SELECT count() FROM url_map WHERE version = ?", got.Version); c != n {
		t.Errorf("%d rows under version %d, want %d", c, got.Version, n)
	}
}

// An abandoned load leaves nothing: its staging table is dropped and no
// version is committed.
func TestAbandonedLoadLeavesNothing(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	l, err := st.BeginURLLoad(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Add(ctx, 1, u("https://o/x", "https://n/x")); err != nil {
		t.Fatal(err)
	}
	if n := stagingTables(t, st); n != 1 {
		t.Fatalf("%d staging tables during the load, want 1", n)
	}
	l.Close()
	if n := stagingTables(t, st) + count(t, st, "SELECT count() FROM map_versions"); n != 0 {
		t.Errorf("an abandoned load left %d tables or versions", n)
	}
}

// A staging table left by a process that died is dropped by a load a day
// later.
func TestStaleStagingTablesAreDropped(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	old := fmt.Sprintf("map_load_%d_dead", time.Now().Add(-25*time.Hour).Unix())
	recent := fmt.Sprintf("map_load_%d_busy", time.Now().Unix())
	for _, name := range []string{old, recent} {
		if err := st.Conn().Exec(ctx, "CREATE TABLE "+name+" (line UInt64) ENGINE = MergeTree() ORDER BY line"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := loadURLs(t, st, u("https://o/1", "https://n/1")); err != nil {
		t.Fatal(err)
	}
	if n := count(t, st, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", st.Database(), old); n != 0 {
		t.Errorf("%s was not dropped", old)
	}
	if n := count(t, st, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", st.Database(), recent); n != 1 {
		t.Errorf("%s (a load under way elsewhere) was dropped", recent)
	}
}

func TestUnmappedURLsAndGroups(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	media := func(seq uint64, url string) store.Message {
		r := row(seq)
		r.Type, r.AttachURL = 1, url
		return r
	}
	held := func(seq uint64, source, group string) store.Message {
		r := row(seq)
		r.Source, r.Scene, r.GroupID, r.Held, r.Line = source, "team", group, true, ""
		return r
	}
	copyOf := media(4, "https://o/a.jpg")
	copyOf.Origin = 1
	rows := []store.Message{
		media(1, "https://o/a.jpg"), media(2, "https://o/a.jpg"), media(3, "https://o/b.jpg"), copyOf,
		media(5, "https://o/mapped.jpg"),
		held(6, "tencent", "@TGS#1"), held(7, "tencent", "@TGS#1"), held(8, "easemob", "g2"), held(9, "easemob", "g-mapped"),
	}
	for i := range rows {
		if rows[i].Origin == 0 {
			rows[i].Origin = rows[i].Seq
		}
	}
	if err := st.InsertMessages(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutURLMappings(ctx, []store.URLMapping{u("https://o/mapped.jpg", "https://n/m.jpg")}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutTeamMappings(ctx, []store.TeamMapping{{Source: "easemob", GroupID: "g-mapped", TID: 9}}); err != nil {
		t.Fatal(err)
	}
	// An uncommitted entry (a load that died) maps nothing.
	if err := st.Conn().Exec(ctx, "INSERT INTO url_map (old_url, new_url, version, added_at) SELECT 'https://o/b.jpg', 'x', toUInt64(999), now()"); err != nil {
		t.Fatal(err)
	}
	var urls []string
	if err := st.UnmappedURLs(ctx, 0, func(url string, n uint64) error {
		urls = append(urls, fmt.Sprintf("%s %d", url, n))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://o/a.jpg 2", "https://o/b.jpg 1"}; fmt.Sprint(urls) != fmt.Sprint(want) {
		t.Errorf("unmapped URLs %q, want %q (a copy counts with its original)", urls, want)
	}
	urls = nil
	_ = st.UnmappedURLs(ctx, 1, func(url string, n uint64) error { urls = append(urls, url); return nil })
	if len(urls) != 1 {
		t.Errorf("limit 1: %v", urls)
	}
	var groups []string
	if err := st.UnmappedGroups(ctx, 0, func(source, group string, n uint64) error {
		groups = append(groups, fmt.Sprintf("%s %s %d", source, group, n))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"tencent @TGS#1 2", "easemob g2 1"}; fmt.Sprint(groups) != fmt.Sprint(want) {
		t.Errorf("unmapped groups %q, want %q", groups, want)
	}
}
