package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
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

// PutTeamMappings writes entries as one new map version and returns it.
// Entries equal to the current mapping are skipped (no version at all when
// nothing changes: the current one is returned). A group already mapped to
// another tid is refused with ErrMappingConflict, nothing is written.
func (s *Store) PutTeamMappings(ctx context.Context, entries []TeamMapping) (_ uint64, err error) {
	defer wrap(&err, "store.PutTeamMappings(%d)", len(entries))
	if err := ValidateTeamMappings(entries); err != nil {
		return 0, err
	}
	s.mapMu.Lock()
	defer s.mapMu.Unlock()
	current, err := s.MapVersion(ctx)
	if err != nil {
		return 0, err
	}
	groups := make([]string, 0, len(entries))
	for _, e := range entries {
		groups = append(groups, e.GroupID)
	}
	have, err := s.TeamMappings(ctx, current, groups)
	if err != nil {
		return 0, err
	}
	var conflicts []string
	var changed []TeamMapping
	for _, e := range entries {
		old, ok := have[GroupKey(e.Source, e.GroupID)]
		switch {
		case ok && old == e.TID:
			continue
		case ok:
			var n uint64
			if err := s.conn.QueryRow(ctx, `SELECT count() FROM messages WHERE source = ? AND group_id = ? AND held = 0`,
				e.Source, e.GroupID).Scan(&n); err != nil {
				return 0, err
			}
			conflicts = append(conflicts, fmt.Sprintf("%s group %s is already mapped to tid %d (%d messages rendered under it so far, more may be on their way); it cannot become %d",
				e.Source, e.GroupID, old, n, e.TID))
		default:
			changed = append(changed, e)
			have[GroupKey(e.Source, e.GroupID)] = e.TID // a duplicate entry in the load is skipped
		}
	}
	if len(conflicts) > 0 {
		return 0, fmt.Errorf("%w: %s", ErrMappingConflict, strings.Join(conflicts, "; "))
	}
	if len(changed) == 0 {
		return current, nil
	}
	return s.putMappings(ctx, "team", len(changed), "INSERT INTO team_map (source, group_id, tid, version, added_at)",
		func(v uint64, now time.Time, cols []any) []any {
			n := len(changed)
			src, grp, tid := make([]string, n), make([]string, n), make([]int64, n)
			vs, at := make([]uint64, n), make([]time.Time, n)
			for i, e := range changed {
				src[i], grp[i], tid[i], vs[i], at[i] = e.Source, e.GroupID, e.TID, v, now
			}
			return append(cols, src, grp, tid, vs, at)
		})
}

// PutURLMappings writes entries as one new map version and returns it.
// Entries equal to the current mapping are skipped (no version at all when
// nothing changes: the current one is returned).
func (s *Store) PutURLMappings(ctx context.Context, entries []URLMapping) (_ uint64, err error) {
	defer wrap(&err, "store.PutURLMappings(%d)", len(entries))
	if err := ValidateURLMappings(entries); err != nil {
		return 0, err
	}
	s.mapMu.Lock()
	defer s.mapMu.Unlock()
	current, err := s.MapVersion(ctx)
	if err != nil {
		return 0, err
	}
	changed := make([]URLMapping, 0, len(entries))
	for lo := 0; lo < len(entries); lo += 10000 {
		part := entries[lo:min(lo+10000, len(entries))]
		urls := make([]string, len(part))
		for i, e := range part {
			urls[i] = e.Old
		}
		have, err := s.URLMappings(ctx, current, urls)
		if err != nil {
			return 0, err
		}
		for _, e := range part {
			if have[e.Old] != e.New {
				changed = append(changed, e)
				have[e.Old] = e.New
			}
		}
	}
	if len(changed) == 0 {
		return current, nil
	}
	return s.putMappings(ctx, "url", len(changed), "INSERT INTO url_map (old_url, new_url, version, added_at)",
		func(v uint64, now time.Time, cols []any) []any {
			n := len(changed)
			old, repl := make([]string, n), make([]string, n)
			vs, at := make([]uint64, n), make([]time.Time, n)
			for i, e := range changed {
				old[i], repl[i], vs[i], at[i] = e.Old, e.New, v, now
			}
			return append(cols, old, repl, vs, at)
		})
}

// putMappings inserts one load's columns under a new version, then commits
// the version. Callers hold mapMu: loads through one process (serve's admin
// API) get increasing versions committed in order, which rendering and the
// re-issue rely on.
func (s *Store) putMappings(ctx context.Context, kind string, n int, insert string, columns func(v uint64, now time.Time, cols []any) []any) (uint64, error) {
	v, err := s.nextMapVersion(ctx)
	if err != nil {
		return 0, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	batch, err := s.conn.PrepareBatch(ctx, insert)
	if err != nil {
		return 0, err
	}
	defer batch.Close()
	for i, col := range columns(v, now, nil) {
		if err := batch.Column(i).Append(col); err != nil {
			return 0, err
		}
	}
	if err := batch.Send(); err != nil {
		return 0, err
	}
	if err := s.insertRow(ctx, "INSERT INTO map_versions (version, kind, entries, committed_at)", v, kind, uint64(n), now); err != nil {
		return 0, fmt.Errorf("commit map version %d: %w", v, err)
	}
	return v, nil
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
