package mapping_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/imbridge/imbridge/mapping"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/csv")

// readAny parses a map CSV, the URL or the team reader by the file name
// (*.url.csv, *.team.csv), and renders what it read: one line per entry, or
// the error.
func readAny(name string, data []byte) string {
	var b strings.Builder
	var err error
	if strings.HasSuffix(name, ".team.csv") {
		err = mapping.ReadTeamCSV(strings.NewReader(string(data)), func(line uint64, e store.TeamMapping) error {
			fmt.Fprintf(&b, "line %d\t%s\t%s\t%d\n", line, e.Source, e.GroupID, e.TID)
			return nil
		})
	} else {
		err = mapping.ReadURLCSV(strings.NewReader(string(data)), func(line uint64, e store.URLMapping) error {
			fmt.Fprintf(&b, "line %d\t%s\t%s\n", line, e.Old, e.New)
			return nil
		})
	}
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	return b.String()
}

// Each testdata/csv/NAME.{url,team}.csv is read; NAME.golden holds what was
// read (line, fields) or the error, with its line numbers (go test -update
// rewrites them).
func TestReadCSVGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/csv/*.csv")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got := readAny(f, data)
			golden := strings.TrimSuffix(f, ".csv") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("read %s:\n%s\nwant (%s):\n%s", f, got, golden, want)
			}
		})
	}
}

// Cases that are clearer inline than in a file.
func TestReadCSVCases(t *testing.T) {
	long := "https://old.example/" + strings.Repeat("x", mapping.MaxLineBytes) + ",https://nim.example/x\n"
	cases := []struct {
		name, kind, in, want string
	}{
		{"empty file", "url", "", ""},
		{"header only", "team", "source,group_id,tid\n", ""},
		{"blank lines are skipped but counted", "url", "\n\n  \nhttps://o.example/a,https://n.example/a",
			"line 4\thttps://o.example/a\thttps://n.example/a\n"},
		{"a header that is not the first line is a bad line", "url", "https://o.example/a,https://n.example/a\nold_url,new_url\n",
			"error: bad mapping in 1 line, nothing was loaded:\n  line 2: old_url \"old_url\" is not an absolute http or https URL\n"},
		{"a line too long is refused, the next one still read", "url", long + "bad\n",
			fmt.Sprintf("error: bad mapping in 2 lines, nothing was loaded:\n  line 1: longer than %d bytes\n  line 2: 1 column, want 2 (old_url,new_url)\n", mapping.MaxLineBytes)},
		{"a quoted field with a doubled quote", "team", `tencent,"@TGS#""1""",5`, "line 1\ttencent\t@TGS#\"1\"\t5\n"},
		{"a trailing comma is a column", "team", "tencent,g,5,", "error: bad mapping in 1 line, nothing was loaded:\n  line 1: 4 columns, want 3 (source,group_id,tid)\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := readAny("x."+c.kind+".csv", []byte(c.in)); got != c.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

// After the first bad line, entries are only checked: nothing more is
// handed on to be loaded.
func TestReadCSVStopsHandingOnAfterABadLine(t *testing.T) {
	var lines []uint64
	err := mapping.ReadURLCSV(strings.NewReader("https://o.example/1,https://n.example/1\nbad\nhttps://o.example/3,https://n.example/3\n"),
		func(line uint64, _ store.URLMapping) error { lines = append(lines, line); return nil })
	var bad *store.BadLinesError
	if !errors.As(err, &bad) || bad.Total != 1 || !slices.Equal(lines, []uint64{1}) {
		t.Fatalf("err %v, handed on lines %v: want one bad line and only line 1 handed on", err, lines)
	}
}

// The loaders against ClickHouse: a good file is one committed version; a
// URL mapped twice is refused at its line numbers, nothing committed.
func TestLoadCSV(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	res, err := mapping.LoadURLCSV(ctx, st, strings.NewReader("old_url,new_url\nhttps://o.example/1,https://n.example/1\nhttps://o.example/2,https://n.example/2\n"))
	if err != nil || res.Changed != 2 || res.Entries != 2 || res.Version == 0 {
		t.Fatalf("url load: %+v %v", res, err)
	}
	_, err = mapping.LoadURLCSV(ctx, st, strings.NewReader("old_url,new_url\nhttps://o.example/3,https://n.example/3\nhttps://o.example/4,https://n.example/4\nhttps://o.example/3,https://n.example/3b\n"))
	want := "bad mapping in 1 line, nothing was loaded:\n  line 4: https://o.example/3 is mapped twice: to https://n.example/3b here and to https://n.example/3 on line 2"
	if !errors.Is(err, store.ErrBadMapping) || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("url load mapping a URL twice: %v\nwant:\n%s", err, want)
	}
	if v, _ := st.MapVersion(ctx); v != res.Version {
		t.Errorf("map version %d after a refused load, want %d", v, res.Version)
	}

	team, err := mapping.LoadTeamCSV(ctx, st, strings.NewReader("tencent,@TGS#1,11\neasemob,g1,12\n"))
	if err != nil || team.Changed != 2 || team.Version <= res.Version {
		t.Fatalf("team load: %+v %v", team, err)
	}
	_, err = mapping.LoadTeamCSV(ctx, st, strings.NewReader("source,group_id,tid\neasemob,g2,13\ntencent,@TGS#1,14\n"))
	if !errors.Is(err, store.ErrMappingConflict) || !strings.Contains(err.Error(), "line 3: tencent group @TGS#1 is already mapped to tid 11 (0 messages rendered") {
		t.Fatalf("team load changing a tid: %v", err)
	}
	_, err = mapping.LoadTeamCSV(ctx, st, strings.NewReader("easemob,g3,15\nnative,1,2\n"))
	if !errors.Is(err, store.ErrBadMapping) || !strings.Contains(err.Error(), "line 2: source \"native\" is not mapped") {
		t.Fatalf("team load with a native line: %v", err)
	}
	if m, _ := st.TeamMappings(ctx, 1000, []string{"g2", "g3"}); len(m) != 0 {
		t.Errorf("refused loads mapped %v", m)
	}
}

func FuzzReadURLCSV(f *testing.F) {
	addSeeds(f, ".url.csv")
	f.Fuzz(func(t *testing.T, data string) {
		for _, e := range readChecked(t, data, mapping.ReadURLCSV) {
			for _, s := range []string{e.Old, e.New} {
				if u, perr := url.Parse(s); perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(s, " \t\r\n") {
					t.Fatalf("accepted %q as an absolute http(s) URL", s)
				}
			}
			// What was read is read the same again once written as CSV.
			if again := readChecked(t, csvField(e.Old)+","+csvField(e.New), mapping.ReadURLCSV); len(again) != 1 || again[0] != e {
				t.Fatalf("%+v written and read again: %+v", e, again)
			}
		}
	})
}

func FuzzReadTeamCSV(f *testing.F) {
	addSeeds(f, ".team.csv")
	f.Fuzz(func(t *testing.T, data string) {
		for _, e := range readChecked(t, data, mapping.ReadTeamCSV) {
			if !slices.Contains(mapping.MappedSources, e.Source) || e.GroupID == "" || e.TID <= 0 {
				t.Fatalf("accepted %+v", e)
			}
			line := e.Source + "," + csvField(e.GroupID) + "," + strconv.FormatInt(e.TID, 10)
			if again := readChecked(t, line, mapping.ReadTeamCSV); len(again) != 1 || again[0] != e {
				t.Fatalf("%+v written and read again: %+v", e, again)
			}
		}
	})
}

// readChecked reads data with read and checks what any reading must hold:
// entries are handed on in line order, only before any bad line; bad lines
// are listed in order, within the input, at most MaxBadLines of them.
func readChecked[E any](t *testing.T, data string, read func(io.Reader, func(uint64, E) error) error) []E {
	t.Helper()
	var entries []E
	var lines []uint64
	err := read(strings.NewReader(data), func(line uint64, e E) error {
		lines, entries = append(lines, line), append(entries, e)
		return nil
	})
	n := uint64(strings.Count(data, "\n") + 1)
	if !slices.IsSorted(lines) || (len(lines) > 0 && (lines[0] == 0 || lines[len(lines)-1] > n)) {
		t.Fatalf("entries handed on at lines %v of %d", lines, n)
	}
	if err == nil {
		return entries
	}
	var bad *store.BadLinesError
	if !errors.As(err, &bad) || !errors.Is(err, store.ErrBadMapping) {
		t.Fatalf("error %v is not a BadLinesError", err)
	}
	if bad.Total < len(bad.Lines) || len(bad.Lines) == 0 || len(bad.Lines) > store.MaxBadLines {
		t.Fatalf("%d bad lines, %d listed", bad.Total, len(bad.Lines))
	}
	for i, l := range bad.Lines {
		if l.Line == 0 || l.Line > n || (i > 0 && l.Line <= bad.Lines[i-1].Line) || l.Msg == "" {
			t.Fatalf("bad lines %+v of %d", bad.Lines, n)
		}
		if len(lines) > 0 && lines[len(lines)-1] > l.Line {
			t.Fatalf("line %d handed on after bad line %d", lines[len(lines)-1], l.Line)
		}
	}
	return nil
}

func addSeeds(f *testing.F, suffix string) {
	files, _ := filepath.Glob("testdata/csv/*" + suffix)
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	f.Add("")
	f.Add("\"\n\"")
}

func csvField(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
