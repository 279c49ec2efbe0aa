package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The team and URL maps live in ClickHouse (team_map, url_map). A load writes
// its entries under a new version and then commits the version in
// map_versions; entries of a version that was never committed are ignored,
// so a reader never sees half a load. Lines rendered with map version v
// include every committed entry up to v.

// TeamMapping maps a provider's group to a Yunxin tid.
type TeamMapping struct {
	Source  string
	GroupID string
	TID     int64
}

// URLMapping maps an old media URL to the URL uploaded to Yunxin.
type URLMapping struct {
	Old string
	New string
}

// ErrMappingConflict is returned when a team mapping would change the tid
// of a group that is already mapped: messages may have been rendered (and
// delivered, or be on their way) under the old tid, and Yunxin's identity
// includes tid, so they would be duplicated.
var ErrMappingConflict = errors.New("team mapping conflict")

// ErrBadMapping is returned for a load with an empty or invalid entry, or a
// key mapped twice; nothing of it is written.
var ErrBadMapping = errors.New("bad mapping")

// ValidateTeamMappings checks a team map load: required fields, positive
// tids, no group mapped twice.
func ValidateTeamMappings(entries []TeamMapping) error {
	seen := map[string]int64{}
	for i, e := range entries {
		switch {
		case e.Source == "" || e.GroupID == "":
			return fmt.Errorf("%w: entry %d: source and group id are required", ErrBadMapping, i+1)
		case e.TID <= 0:
			return fmt.Errorf("%w: entry %d (%s %s): tid %d is not a positive Yunxin tid", ErrBadMapping, i+1, e.Source, e.GroupID, e.TID)
		}
		k := GroupKey(e.Source, e.GroupID)
		if t, ok := seen[k]; ok && t != e.TID {
			return fmt.Errorf("%w: entry %d: %s group %s is mapped twice (tid %d and %d)", ErrBadMapping, i+1, e.Source, e.GroupID, t, e.TID)
		}
		seen[k] = e.TID
	}
	return nil
}

// ValidateURLMappings checks a URL map load: both URLs given, no URL mapped
// twice.
func ValidateURLMappings(entries []URLMapping) error {
	seen := map[string]string{}
	for i, e := range entries {
		if e.Old == "" || e.New == "" {
			return fmt.Errorf("%w: entry %d: old and new URL are required", ErrBadMapping, i+1)
		}
		if n, ok := seen[e.Old]; ok && n != e.New {
			return fmt.Errorf("%w: entry %d: %s is mapped twice (%s and %s)", ErrBadMapping, i+1, e.Old, n, e.New)
		}
		seen[e.Old] = e.New
	}
	return nil
}

const committed = "version IN (SELECT version FROM map_versions)"

// MapVersion is the latest committed map version, 0 when nothing was mapped.
func (s *Store) MapVersion(ctx context.Context) (_ uint64, err error) {
	defer wrap(&err, "store.MapVersion")
	var v uint64
	err = retryRead(ctx, func() error {
		return s.conn.QueryRow(ctx, "SELECT toUInt64(max(version)) FROM map_versions").Scan(&v)
	})
	return v, err
}

// TeamMappings returns the tids of the given groups as of map version upTo,
// keyed by source + "\x00" + group id (see GroupKey).
func (s *Store) TeamMappings(ctx context.Context, upTo uint64, groupIDs []string) (_ map[string]int64, err error) {
	defer wrap(&err, "store.TeamMappings(%d groups)", len(groupIDs))
	out := map[string]int64{}
	if len(groupIDs) == 0 || upTo == 0 {
		return out, nil
	}
	err = retryRead(ctx, func() error {
		rows, err := s.conn.Query(ctx, `SELECT source, group_id, argMax(tid, version) FROM team_map
 WHERE version <= ? AND `+committed+` AND group_id IN (SELECT arrayJoin(?)) GROUP BY source, group_id`, upTo, groupIDs)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var source, group string
			var tid int64
			if err := rows.Scan(&source, &group, &tid); err != nil {
				return err
			}
			out[GroupKey(source, group)] = tid
		}
		return rows.Err()
	})
	return out, err
}

// GroupKey is the key of a provider group in TeamMappings' result.
func GroupKey(source, groupID string) string { return source + "\x00" + groupID }

// URLMappings returns the new URLs of the given old URLs as of map version
// upTo.
func (s *Store) URLMappings(ctx context.Context, upTo uint64, urls []string) (_ map[string]string, err error) {
	defer wrap(&err, "store.URLMappings(%d urls)", len(urls))
	out := map[string]string{}
	if len(urls) == 0 || upTo == 0 {
		return out, nil
	}
	err = retryRead(ctx, func() error {
		rows, err := s.conn.Query(ctx, `SELECT old_url, argMax(new_url, version) FROM url_map
 WHERE version <= ? AND `+committed+` AND old_url IN (SELECT arrayJoin(?)) GROUP BY old_url`, upTo, urls)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var old, repl string
			if err := rows.Scan(&old, &repl); err != nil {
				return err
			}
			out[old] = repl
		}
		return rows.Err()
	})
	return out, err
}

// nextMapVersion is one more than any version written so far, committed or
// not, so an abandoned load's version is never reused.
func (s *Store) nextMapVersion(ctx context.Context) (uint64, error) {
	var v uint64
	err := retryRead(ctx, func() error {
		return s.conn.QueryRow(ctx, `SELECT toUInt64(greatest(greatest(
 (SELECT max(version) FROM map_versions), (SELECT max(version) FROM team_map)), (SELECT max(version) FROM url_map)))`).Scan(&v)
	})
	return v + 1, err
}

// PutTeamMappings writes entries as one new map version and returns it: a
// streamed load (BeginTeamLoad) of entries already in memory, numbered from
// 1 in error messages. Entries equal to the current mapping are skipped (no
// version at all when nothing changes: the current one is returned). A
// group already mapped to another tid is refused with ErrMappingConflict,
// nothing is written.
func (s *Store) PutTeamMappings(ctx context.Context, entries []TeamMapping) (_ uint64, err error) {
	defer wrap(&err, "store.PutTeamMappings(%d)", len(entries))
	if err := ValidateTeamMappings(entries); err != nil {
		return 0, err
	}
	l, err := s.BeginTeamLoad(ctx)
	if err != nil {
		return 0, err
	}
	return putAll(ctx, l, &l.load, entries)
}

// PutURLMappings writes entries as one new map version and returns it, as
// PutTeamMappings does.
func (s *Store) PutURLMappings(ctx context.Context, entries []URLMapping) (_ uint64, err error) {
	defer wrap(&err, "store.PutURLMappings(%d)", len(entries))
	if err := ValidateURLMappings(entries); err != nil {
		return 0, err
	}
	l, err := s.BeginURLLoad(ctx)
	if err != nil {
		return 0, err
	}
	return putAll(ctx, l, &l.load, entries)
}

func putAll[E any](ctx context.Context, l interface {
	Add(context.Context, uint64, E) error
	Commit(context.Context) (LoadResult, error)
}, core *load, entries []E) (uint64, error) {
	defer core.Close()
	core.Unit = "entry"
	for i, e := range entries {
		if err := l.Add(ctx, uint64(i+1), e); err != nil {
			return 0, err
		}
	}
	r, err := l.Commit(ctx)
	return r.Version, err
}

// A streamed load (TeamLoad, URLLoad) writes its entries, batch by batch as
// they arrive, into a staging table of its own (map_load_<unix time>_<random>),
// so a map of any size is loaded in constant memory. Commit then checks the
// whole load in ClickHouse — a key mapped twice to different values, a team
// mapping that would change a group's tid — and writes the entries that
// change the maps (not those equal to the current mapping) under one new
// version, which it commits. The staging table is dropped either way; one
// left behind by a process that died is dropped by a load a day later.

// LoadResult is what a committed load did.
type LoadResult struct {
	Version uint64 // the version committed; the current one when nothing changed
	Entries uint64 // entries read (exact repeats included)
	Changed uint64 // keys the load mapped anew or differently; 0: no new version
}

// BadLinesError refuses a load for the lines it lists: the first
// MaxBadLines of Total. It wraps Err, ErrBadMapping or ErrMappingConflict.
type BadLinesError struct {
	Err   error
	Unit  string // what a number counts: "line" (of a file) or "entry"
	Lines []BadLine
	Total int
}

// BadLine is one refused line and why.
type BadLine struct {
	Line uint64
	Msg  string
}

// MaxBadLines is how many bad lines a BadLinesError lists.
const MaxBadLines = 10

// Add records a bad line: listed when it is among the first MaxBadLines.
func (e *BadLinesError) Add(line uint64, msg string) {
	e.Total++
	if len(e.Lines) < MaxBadLines {
		e.Lines = append(e.Lines, BadLine{Line: line, Msg: msg})
	}
}

func (e *BadLinesError) Error() string {
	unit := e.Unit
	if unit == "" {
		unit = "line"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%v in %d %s", e.Err, e.Total, unit)
	if e.Total != 1 {
		b.WriteString("s")
	}
	b.WriteString(", nothing was loaded:")
	for _, l := range e.Lines {
		fmt.Fprintf(&b, "\n  %s %d: %s", unit, l.Line, l.Msg)
	}
	if more := e.Total - len(e.Lines); more > 0 {
		fmt.Fprintf(&b, "\n  … and %d more", more)
	}
	return b.String()
}

func (e *BadLinesError) Unwrap() error { return e.Err }

// A streamed load sends its entries to ClickHouse in batches of at most
// loadBatch entries and loadBatchBytes bytes of keys and values: few enough
// INSERTs (parts) for a map of millions, little memory for long URLs.
const (
	loadBatch      = 20000
	loadBatchBytes = 2 << 20
)

const stagingPrefix = "map_load_"

// mapSpec is what differs between the team and the URL map.
type mapSpec struct {
	kind    string // map_versions.kind
	table   string // the map table
	keys    string // its key columns
	nkeys   int
	value   string // its value column
	columns string // the staging table's columns after line
	key     func(k []string) string
	val     func(v string) string
}

var teamSpec = &mapSpec{
	kind: "team", table: "team_map", keys: "source, group_id", nkeys: 2, value: "tid",
	columns: "source String, group_id String, tid Int64",
	key:     func(k []string) string { return k[0] + " group " + k[1] },
	val:     func(v string) string { return "tid " + v },
}

var urlSpec = &mapSpec{
	kind: "url", table: "url_map", keys: "old_url", nkeys: 1, value: "new_url",
	columns: "old_url String, new_url String",
	key:     func(k []string) string { return k[0] },
	val:     func(v string) string { return v },
}

// load is what both streamed loads share.
type load struct {
	s       *Store
	spec    *mapSpec
	table   string
	lines   []uint64 // the batch not yet sent
	bytes   int      // of its keys and values
	entries uint64
	closed  bool
	// Unit names what the numbers passed to Add count in error messages:
	// "line" (the default) or "entry".
	Unit string
}

// TeamLoad is a streamed team map load.
type TeamLoad struct {
	load
	src, grp []string
	tid      []int64
}

// URLLoad is a streamed URL map load.
type URLLoad struct {
	load
	old, repl []string
}

// BeginTeamLoad starts a streamed team map load. Close it (after Commit, or
// to abandon it).
func (s *Store) BeginTeamLoad(ctx context.Context) (*TeamLoad, error) {
	l := &TeamLoad{}
	return l, s.beginLoad(ctx, &l.load, teamSpec)
}

// BeginURLLoad starts a streamed URL map load. Close it (after Commit, or
// to abandon it).
func (s *Store) BeginURLLoad(ctx context.Context) (*URLLoad, error) {
	l := &URLLoad{}
	return l, s.beginLoad(ctx, &l.load, urlSpec)
}

// Add stages e, read at line (reported in error messages).
func (l *TeamLoad) Add(ctx context.Context, line uint64, e TeamMapping) error {
	l.lines, l.src, l.grp, l.tid = append(l.lines, line), append(l.src, e.Source), append(l.grp, e.GroupID), append(l.tid, e.TID)
	if !l.full(len(e.Source) + len(e.GroupID) + 8) {
		return nil
	}
	return l.flush(ctx)
}

func (l *TeamLoad) flush(ctx context.Context) error {
	err := l.send(ctx, l.src, l.grp, l.tid)
	l.src, l.grp, l.tid = l.src[:0], l.grp[:0], l.tid[:0]
	return err
}

// Commit checks the whole load and commits what it changes as one map
// version (see LoadResult). A key mapped twice to different values is a
// *BadLinesError wrapping ErrBadMapping; a group already mapped to another
// tid one wrapping ErrMappingConflict, naming the group and how many
// messages were rendered under its tid. Nothing is written then.
func (l *TeamLoad) Commit(ctx context.Context) (LoadResult, error) {
	if err := l.flush(ctx); err != nil {
		l.Close()
		return LoadResult{}, err
	}
	return l.commit(ctx)
}

// Add stages e, read at line (reported in error messages).
func (l *URLLoad) Add(ctx context.Context, line uint64, e URLMapping) error {
	l.lines, l.old, l.repl = append(l.lines, line), append(l.old, e.Old), append(l.repl, e.New)
	if !l.full(len(e.Old) + len(e.New)) {
		return nil
	}
	return l.flush(ctx)
}

func (l *URLLoad) flush(ctx context.Context) error {
	err := l.send(ctx, l.old, l.repl)
	l.old, l.repl = l.old[:0], l.repl[:0]
	return err
}

// Commit checks the whole load and commits what it changes as one map
// version (see LoadResult). A URL mapped twice to different URLs is a
// *BadLinesError wrapping ErrBadMapping; nothing is written then.
func (l *URLLoad) Commit(ctx context.Context) (LoadResult, error) {
	if err := l.flush(ctx); err != nil {
		l.Close()
		return LoadResult{}, err
	}
	return l.commit(ctx)
}

func (s *Store) beginLoad(ctx context.Context, l *load, spec *mapSpec) (err error) {
	defer wrap(&err, "store: begin %s map load", spec.kind)
	s.dropStaleLoads(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	*l = load{s: s, spec: spec, Unit: "line", table: fmt.Sprintf("%s%d_%s", stagingPrefix, time.Now().Unix(), hex.EncodeToString(b[:]))}
	err = s.conn.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (line UInt64, %s) ENGINE = MergeTree() ORDER BY (%s, line)", l.table, spec.columns, spec.keys))
	if err != nil {
		l.closed = true
	}
	return err
}

// full counts an entry of n bytes into the batch and reports whether the
// batch is to be sent.
func (l *load) full(n int) bool {
	l.bytes += n
	return len(l.lines) >= loadBatch || l.bytes >= loadBatchBytes
}

// send inserts the batch: l.lines and the columns after it.
func (l *load) send(ctx context.Context, cols ...any) (err error) {
	n := len(l.lines)
	if n == 0 {
		return nil
	}
	defer func() { l.lines, l.bytes = l.lines[:0], 0 }()
	defer wrap(&err, "store: staging %d %s map entries", n, l.spec.kind)
	batch, err := l.s.conn.PrepareBatch(ctx, "INSERT INTO "+l.table+" (line, "+l.spec.keys+", "+l.spec.value+")")
	if err != nil {
		return err
	}
	defer batch.Close()
	for i, col := range append([]any{l.lines}, cols...) {
		if err := batch.Column(i).Append(col); err != nil {
			return err
		}
	}
	if err := batch.Send(); err != nil {
		return err
	}
	l.entries += uint64(n)
	return nil
}

// Close drops the staging table; a load not committed is abandoned.
func (l *load) Close() {
	if l.closed {
		return
	}
	l.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.s.conn.Exec(ctx, "DROP TABLE IF EXISTS "+l.table); err != nil {
		l.s.logger.Warn("dropping a map load's staging table failed; a later load drops it", "table", l.table, "err", err)
	}
}

// dropStaleLoads drops staging tables older than a day: left behind by a
// process that died during a load.
func (s *Store) dropStaleLoads(ctx context.Context) {
	var names []string
	err := retryRead(ctx, func() error {
		names = names[:0]
		rows, err := s.conn.Query(ctx, "SELECT name FROM system.tables WHERE database = currentDatabase() AND name LIKE 'map\\_load\\_%'")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return err
			}
			names = append(names, n)
		}
		return rows.Err()
	})
	if err != nil {
		s.logger.Warn("listing stale map load tables failed", "err", err)
		return
	}
	for _, n := range names {
		unix, _, _ := strings.Cut(strings.TrimPrefix(n, stagingPrefix), "_")
		sec, err := strconv.ParseInt(unix, 10, 64)
		if err != nil || time.Since(time.Unix(sec, 0)) < 24*time.Hour {
			continue
		}
		if err := s.conn.Exec(ctx, "DROP TABLE IF EXISTS "+n); err != nil {
			s.logger.Warn("dropping a stale map load table failed", "table", n, "err", err)
		}
	}
}

// commit checks the staged load and commits what it changes.
func (l *load) commit(ctx context.Context) (_ LoadResult, err error) {
	defer l.Close()
	defer wrap(&err, "store: %s map load of %d entries", l.spec.kind, l.entries)
	res := LoadResult{Entries: l.entries}
	if err := l.checkTwice(ctx); err != nil {
		return res, err
	}
	s, spec := l.s, l.spec
	s.mapMu.Lock()
	defer s.mapMu.Unlock()
	if res.Version, err = s.MapVersion(ctx); err != nil {
		return res, err
	}
	if spec == teamSpec {
		if err := l.checkTeamChanges(ctx, res.Version); err != nil {
			return res, err
		}
	}
	v, err := s.nextMapVersion(ctx)
	if err != nil {
		return res, err
	}
	// The staged entries not equal to the current mapping, under version v.
	err = s.conn.Exec(ctx, fmt.Sprintf(`INSERT INTO %[1]s (%[2]s, %[3]s, version, added_at)
 SELECT %[2]s, any(%[3]s), toUInt64(%[4]d), now() FROM %[5]s
 WHERE (%[2]s, %[3]s) NOT IN (SELECT %[2]s, argMax(%[3]s, version) FROM %[1]s
  WHERE %[6]s AND (%[2]s) IN (SELECT %[2]s FROM %[5]s) GROUP BY %[2]s)
 GROUP BY %[2]s`, spec.table, spec.keys, spec.value, v, l.table, committed))
	if err != nil {
		return res, err
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s WHERE version = %d", spec.table, v)).Scan(&n); err != nil {
		return res, err
	}
	if n == 0 {
		return res, nil
	}
	if err := s.insertRow(ctx, "INSERT INTO map_versions (version, kind, entries, committed_at)", v, spec.kind, n, time.Now().UTC().Truncate(time.Second)); err != nil {
		return res, fmt.Errorf("commit map version %d: %w", v, err)
	}
	res.Version, res.Changed = v, n
	return res, nil
}

// checkTwice refuses a load that maps a key to two different values: each
// such key is reported at the line of its second value.
func (l *load) checkTwice(ctx context.Context) error {
	spec := l.spec
	bad := &BadLinesError{Err: ErrBadMapping, Unit: l.Unit}
	var total uint64
	if err := l.s.conn.QueryRow(ctx, fmt.Sprintf(`SELECT toUInt64(count()) FROM
 (SELECT %[1]s FROM (SELECT DISTINCT %[1]s, %[2]s FROM %[3]s) GROUP BY %[1]s HAVING count() > 1)`,
		spec.keys, spec.value, l.table)).Scan(&total); err != nil {
		return err
	}
	if total == 0 {
		return nil
	}
	rows, err := l.s.conn.Query(ctx, fmt.Sprintf(`SELECT %[1]s, argMin(v, l) AS v1, min(l) AS l1,
 arrayElement(arraySort(groupArray(l)), 2) AS l2, arrayElement(groupArray(v), indexOf(groupArray(l), l2)) AS v2
 FROM (SELECT %[1]s, toString(%[2]s) AS v, min(line) AS l FROM %[3]s GROUP BY %[1]s, %[2]s)
 GROUP BY %[1]s HAVING count() > 1 ORDER BY l2 LIMIT %[4]d`, spec.keys, spec.value, l.table, MaxBadLines))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		key := make([]string, spec.nkeys)
		var v1, v2 string
		var l1, l2 uint64
		dest := []any{}
		for i := range key {
			dest = append(dest, &key[i])
		}
		if err := rows.Scan(append(dest, &v1, &l1, &l2, &v2)...); err != nil {
			return err
		}
		bad.Add(l2, fmt.Sprintf("%s is mapped twice: to %s here and to %s on %s %d", spec.key(key), spec.val(v2), spec.val(v1), bad.Unit, l1))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	bad.Total = int(total)
	return bad
}

// checkTeamChanges refuses a team load that changes the tid of a group
// already mapped at version current. Yunxin's identity includes tid:
// messages rendered — and delivered, or on their way — under the old tid
// would be duplicated.
func (l *load) checkTeamChanges(ctx context.Context, current uint64) error {
	if current == 0 {
		return nil
	}
	inner := fmt.Sprintf(`SELECT source, group_id, any(tid) AS t, min(line) AS l FROM %[1]s
 WHERE (source, group_id) IN (SELECT source, group_id FROM team_map WHERE %[2]s)
 AND (source, group_id, tid) NOT IN (SELECT source, group_id, argMax(tid, version) FROM team_map
  WHERE %[2]s AND (source, group_id) IN (SELECT source, group_id FROM %[1]s) GROUP BY source, group_id)
 GROUP BY source, group_id`, l.table, committed)
	var total uint64
	if err := l.s.conn.QueryRow(ctx, "SELECT toUInt64(count()) FROM ("+inner+")").Scan(&total); err != nil {
		return err
	}
	if total == 0 {
		return nil
	}
	type change struct {
		line        uint64
		source, grp string
		tid         int64
	}
	var changes []change
	rows, err := l.s.conn.Query(ctx, inner+fmt.Sprintf(" ORDER BY l LIMIT %d", MaxBadLines))
	if err != nil {
		return err
	}
	for rows.Next() {
		var c change
		if err := rows.Scan(&c.source, &c.grp, &c.tid, &c.line); err != nil {
			rows.Close()
			return err
		}
		changes = append(changes, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	bad := &BadLinesError{Err: ErrMappingConflict, Unit: l.Unit}
	for _, c := range changes {
		have, err := l.s.TeamMappings(ctx, current, []string{c.grp})
		if err != nil {
			return err
		}
		var n uint64
		if err := l.s.conn.QueryRow(ctx, `SELECT toUInt64(uniqExact(origin)) FROM messages WHERE source = ? AND group_id = ? AND held = 0`,
			c.source, c.grp).Scan(&n); err != nil {
			return err
		}
		bad.Add(c.line, fmt.Sprintf("%s group %s is already mapped to tid %d (%d messages rendered under it so far, more may be on their way); it cannot become %d",
			c.source, c.grp, have[GroupKey(c.source, c.grp)], n, c.tid))
	}
	bad.Total = int(total)
	return bad
}

// UnmappedURLs calls fn with every media URL of stored messages that no
// committed URL mapping covers and how many messages carry it (a re-issued
// copy counts with its original; recalled messages are left out), the most
// used first; limit 0 means all. Rows stream from the server.
func (s *Store) UnmappedURLs(ctx context.Context, limit int, fn func(url string, messages uint64) error) (err error) {
	defer wrap(&err, "store.UnmappedURLs")
	return s.streamRows(ctx, `SELECT attach_url, toUInt64(uniqExact(origin)) AS n FROM messages
 WHERE attach_url != '' AND `+NotRecalled+` AND attach_url NOT IN (SELECT old_url FROM url_map WHERE `+committed+`)
 GROUP BY attach_url ORDER BY n DESC, attach_url`+limitClause(limit), func(r driver.Rows) error {
		var u string
		var n uint64
		if err := r.Scan(&u, &n); err != nil {
			return err
		}
		return fn(u, n)
	})
}

// UnmappedGroups calls fn with every provider group whose messages are held
// for want of a committed team mapping and how many are (recalled ones left
// out), the most held first; limit 0 means all.
func (s *Store) UnmappedGroups(ctx context.Context, limit int, fn func(source, groupID string, held uint64) error) (err error) {
	defer wrap(&err, "store.UnmappedGroups")
	return s.streamRows(ctx, `SELECT source, group_id, count() AS n FROM messages
 WHERE held = 1 AND `+NotRecalled+` AND (source, group_id) NOT IN (SELECT source, group_id FROM team_map WHERE `+committed+`)
 GROUP BY source, group_id ORDER BY n DESC, source, group_id`+limitClause(limit), func(r driver.Rows) error {
		var src, grp string
		var n uint64
		if err := r.Scan(&src, &grp, &n); err != nil {
			return err
		}
		return fn(src, grp, n)
	})
}

func limitClause(limit int) string {
	if limit <= 0 {
		return ""
	}
	return " LIMIT " + strconv.Itoa(limit)
}

// streamRows runs q and calls row for each row (no retry: rows already handed
// on cannot be taken back).
func (s *Store) streamRows(ctx context.Context, q string, row func(driver.Rows) error) error {
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// PendingReissues lists, in ascending order, the committed map versions
// whose re-issue has not finished.
func (s *Store) PendingReissues(ctx context.Context) (_ []uint64, err error) {
	defer wrap(&err, "store.PendingReissues")
	return s.uint64s(ctx, `SELECT DISTINCT version FROM map_versions
 WHERE version NOT IN (SELECT version FROM map_reissues) ORDER BY version`)
}

// uint64s runs a read returning one UInt64 column.
func (s *Store) uint64s(ctx context.Context, q string, args ...any) ([]uint64, error) {
	var out []uint64
	err := retryRead(ctx, func() error {
		out = out[:0]
		rows, err := s.conn.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v uint64
			if err := rows.Scan(&v); err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	return out, err
}

// RecordReissue records that the re-issue for map version v finished: its
// copies are in ClickHouse.
func (s *Store) RecordReissue(ctx context.Context, v, messages uint64) (err error) {
	defer wrap(&err, "store.RecordReissue(%d)", v)
	return s.insertRow(ctx, "INSERT INTO map_reissues (version, messages, done_at)", v, messages, time.Now().UTC())
}

// ReissueCandidates returns, in ascending order, up to limit seqs above
// after and at most upTo: the latest stored copy of every message that the
// committed map entries with versions in (from, to] change (callers pass one
// version at a time, so the render_version test is exact) —
//   - team messages of a newly mapped group that were held (no copy of them
//     was ever rendered), and
//   - rendered messages whose media URL got a mapping after their latest
//     copy was rendered.
func (s *Store) ReissueCandidates(ctx context.Context, from, to, upTo, after uint64, limit int) (_ []uint64, err error) {
	defer wrap(&err, "store.ReissueCandidates(%d, %d]", from, to)
	q := `SELECT s FROM (
 SELECT max(seq) AS s FROM messages
 WHERE seq <= ? AND group_id != '' AND (source, group_id) IN
  (SELECT source, group_id FROM team_map WHERE version > ? AND version <= ? AND ` + committed + `)
 GROUP BY origin HAVING min(held) = 1
 UNION ALL
 SELECT max(seq) AS s FROM messages
 WHERE seq <= ? AND held = 0 AND attach_url != '' AND attach_url IN
  (SELECT old_url FROM url_map WHERE version > ? AND version <= ? AND ` + committed + `)
 GROUP BY origin HAVING max(render_version) < ?
) WHERE s > ? ORDER BY s LIMIT ?`
	return s.uint64s(ctx, q, upTo, from, to, upTo, from, to, to, after, limit)
}
