package mapping

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source/easemob"
	"github.com/imbridge/imbridge/source/rongcloud"
	"github.com/imbridge/imbridge/source/tencent"
	"github.com/imbridge/imbridge/source/yunxin"
	"github.com/imbridge/imbridge/store"
)

// The map loaders read CSV (RFC 4180 within a line: fields may be quoted, a
// field cannot span lines; CRLF or LF; a UTF-8 byte order mark is skipped):
//
//	old_url,new_url       the URL map: absolute http(s) URLs
//	source,group_id,tid   the team map: a provider source, its group id, a positive Yunxin tid
//
// The first line may be a header naming those columns. Surrounding spaces
// of a field are ignored. A file is read as a stream; every bad line is
// counted and the first store.MaxBadLines are reported with their numbers.

// MappedSources are the sources whose group ids the team map maps. The
// native source's tids are already Yunxin's.
var MappedSources = []string{easemob.Name, tencent.Name, rongcloud.Name, yunxin.Name}

// MaxLineBytes bounds one line of a map CSV: a longer one is refused, not
// buffered, so a file of any shape is read in constant memory.
const MaxLineBytes = 64 << 10

// ReadURLCSV reads a URL map CSV from r and calls fn with each entry and its
// line number, as long as no bad line was met (after one, the rest is only
// checked). Bad lines make a *store.BadLinesError wrapping
// store.ErrBadMapping; fn's errors and read errors are returned as they
// are. A URL mapped twice is not checked here (see store.URLLoad.Commit).
func ReadURLCSV(r io.Reader, fn func(line uint64, e store.URLMapping) error) error {
	return readCSV(r, urlCSV, fn)
}

// ReadTeamCSV reads a team map CSV as ReadURLCSV reads a URL map.
func ReadTeamCSV(r io.Reader, fn func(line uint64, e store.TeamMapping) error) error {
	return readCSV(r, teamCSV, fn)
}

// urlLoader and teamLoader start streamed loads (*store.Store).
type urlLoader interface {
	BeginURLLoad(ctx context.Context) (*store.URLLoad, error)
}

type teamLoader interface {
	BeginTeamLoad(ctx context.Context) (*store.TeamLoad, error)
}

// LoadURLCSV loads a URL map CSV as one map version, streaming: nothing is
// committed unless every line is good and no URL is mapped twice.
func LoadURLCSV(ctx context.Context, st urlLoader, r io.Reader) (store.LoadResult, error) {
	l, err := st.BeginURLLoad(ctx)
	if err != nil {
		return store.LoadResult{}, err
	}
	return loadCSV(ctx, l, r, urlCSV)
}

// LoadTeamCSV loads a team map CSV as one map version, streaming: nothing is
// committed unless every line is good, no group is mapped twice and no
// mapped group would change its tid.
func LoadTeamCSV(ctx context.Context, st teamLoader, r io.Reader) (store.LoadResult, error) {
	l, err := st.BeginTeamLoad(ctx)
	if err != nil {
		return store.LoadResult{}, err
	}
	return loadCSV(ctx, l, r, teamCSV)
}

// stagedLoad is a store.URLLoad or store.TeamLoad.
type stagedLoad[E any] interface {
	Add(ctx context.Context, line uint64, e E) error
	Commit(ctx context.Context) (store.LoadResult, error)
	Close()
}

func loadCSV[E any](ctx context.Context, l stagedLoad[E], r io.Reader, format csvFormat[E]) (store.LoadResult, error) {
	defer l.Close()
	if err := readCSV(r, format, func(line uint64, e E) error { return l.Add(ctx, line, e) }); err != nil {
		return store.LoadResult{}, err
	}
	return l.Commit(ctx)
}

var (
	urlHeader  = []string{"old_url", "new_url"}
	teamHeader = []string{"source", "group_id", "tid"}
)

// csvFormat is one map's CSV: its header and how a line is read.
type csvFormat[E any] struct {
	header []string
	parse  func(fields []string) (E, string) // the entry, or what is wrong
	// data reports whether a bad first line still reads as data (not as a
	// misspelt header, whose error then says what a header reads).
	data func(fields []string) bool
}

var urlCSV = csvFormat[store.URLMapping]{
	header: urlHeader, parse: parseURLRecord,
	data: func(f []string) bool { return strings.Contains(f[0], "://") },
}

var teamCSV = csvFormat[store.TeamMapping]{
	header: teamHeader, parse: parseTeamRecord,
	data: func(f []string) bool {
		src := strings.ToLower(strings.TrimSpace(f[0]))
		return src == message.SourceNative || mappedSource(src)
	},
}

func readCSV[E any](r io.Reader, format csvFormat[E], fn func(uint64, E) error) error {
	br := bufio.NewReaderSize(r, MaxLineBytes)
	bad := &store.BadLinesError{Err: store.ErrBadMapping, Unit: "line"}
	var fields []string
	var line uint64
	first := true
	for {
		raw, err := br.ReadSlice('\n')
		if len(raw) == 0 && errors.Is(err, io.EOF) {
			break
		}
		line++
		if errors.Is(err, bufio.ErrBufferFull) {
			bad.Add(line, fmt.Sprintf("longer than %d bytes", MaxLineBytes))
			for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of it
				_, err = br.ReadSlice('\n')
			}
			first = false
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("reading the CSV: %w", err)
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading the CSV: %w", err)
		}
		text := strings.TrimRight(string(raw), "\r\n")
		if line == 1 {
			text = strings.TrimPrefix(text, "\ufeff") // a byte order mark
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		wasFirst := first
		first = false
		var problem string
		if fields, problem = splitCSVLine(text, fields); problem != "" {
			bad.Add(line, problem)
			continue
		}
		if wasFirst && isHeader(fields, format.header) {
			continue
		}
		e, problem := format.parse(fields)
		if problem != "" {
			if wasFirst && !format.data(fields) {
				problem += fmt.Sprintf(" (a header line reads %s)", strings.Join(format.header, ","))
			}
			bad.Add(line, problem)
			continue
		}
		if bad.Total == 0 {
			if err := fn(line, e); err != nil {
				return err
			}
		}
	}
	if bad.Total > 0 {
		return bad
	}
	return nil
}

// splitCSVLine splits one line into its fields, reusing dst. A field may be
// quoted (RFC 4180: "" inside is one "; spaces around the quotes are
// ignored); a field cannot span lines.
func splitCSVLine(line string, dst []string) ([]string, string) {
	dst = dst[:0]
	for {
		if rest := strings.TrimLeft(line, " \t"); strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for {
				j := strings.IndexByte(rest[i:], '"')
				if j < 0 {
					return dst, "a quoted field is not closed on its line"
				}
				b.WriteString(rest[i : i+j])
				i += j + 1
				if i < len(rest) && rest[i] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				break
			}
			dst = append(dst, b.String())
			rest = strings.TrimLeft(rest[i:], " \t")
			if rest == "" {
				return dst, ""
			}
			if rest[0] != ',' {
				return dst, `text after a quoted field's closing "`
			}
			line = rest[1:]
			continue
		}
		f, rest, more := strings.Cut(line, ",")
		if strings.Contains(f, `"`) {
			return dst, `a " inside an unquoted field (quote the whole field and double the ")`
		}
		dst = append(dst, f)
		if !more {
			return dst, ""
		}
		line = rest
	}
}

func isHeader(rec, header []string) bool {
	if len(rec) != len(header) {
		return false
	}
	for i, h := range header {
		if !strings.EqualFold(strings.TrimSpace(rec[i]), h) {
			return false
		}
	}
	return true
}

func parseURLRecord(rec []string) (store.URLMapping, string) {
	if len(rec) != 2 {
		return store.URLMapping{}, columns(rec, urlHeader)
	}
	e := store.URLMapping{Old: strings.TrimSpace(rec[0]), New: strings.TrimSpace(rec[1])}
	if p := checkURL("old_url", e.Old); p != "" {
		return e, p
	}
	return e, checkURL("new_url", e.New)
}

func parseTeamRecord(rec []string) (store.TeamMapping, string) {
	if len(rec) != 3 {
		return store.TeamMapping{}, columns(rec, teamHeader)
	}
	src, group, tid := strings.ToLower(strings.TrimSpace(rec[0])), strings.TrimSpace(rec[1]), strings.TrimSpace(rec[2])
	e := store.TeamMapping{Source: src, GroupID: group}
	switch {
	case src == "":
		return e, "source is empty"
	case src == message.SourceNative:
		return e, `source "native" is not mapped: its tids are already Yunxin's`
	case !mappedSource(src):
		return e, fmt.Sprintf("unknown source %s (one of %s)", quote(rec[0]), strings.Join(MappedSources, ", "))
	case group == "":
		return e, "group_id is empty"
	case tid == "":
		return e, "tid is empty"
	}
	n, err := strconv.ParseInt(tid, 10, 64)
	switch {
	case err != nil && errors.Is(err, strconv.ErrRange):
		return e, fmt.Sprintf("tid %s is out of range", quote(tid))
	case err != nil:
		return e, fmt.Sprintf("tid %s is not a number", quote(tid))
	case n <= 0:
		return e, fmt.Sprintf("tid %d is not a positive Yunxin tid", n)
	}
	e.TID = n
	return e, ""
}

func mappedSource(s string) bool {
	for _, m := range MappedSources {
		if s == m {
			return true
		}
	}
	return false
}

func columns(rec, header []string) string {
	unit := "columns"
	if len(rec) == 1 {
		unit = "column"
	}
	return fmt.Sprintf("%d %s, want %d (%s)", len(rec), unit, len(header), strings.Join(header, ","))
}

// checkURL is "" when s is an absolute http or https URL with a host and no
// spaces or control characters.
func checkURL(column, s string) string {
	if s == "" {
		return column + " is empty"
	}
	u, err := url.Parse(s)
	switch {
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Sprintf("%s %s contains a space or control character", column, quote(s))
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		return fmt.Sprintf("%s %s is not an absolute http or https URL", column, quote(s))
	}
	return ""
}

// quote shows a value in a message: quoted, at most 120 bytes of it.
func quote(s string) string {
	if len(s) > 120 {
		return strconv.Quote(s[:120]) + "…"
	}
	return strconv.Quote(s)
}
