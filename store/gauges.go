package store

import (
	"context"
	"time"
)

// Gauges are the figures /metrics shows that only ClickHouse knows: what is
// held, what is left to upload, where each puller stands. Each costs a scan
// of one or two columns of messages, so serve computes them at most once per
// metrics.audit_interval.
type Gauges struct {
	// Held counts, per source, held team messages whose group still has no
	// committed team mapping.
	Held map[string]uint64
	// UnmappedURLs counts distinct media URLs with no committed URL mapping.
	UnmappedURLs uint64
	Pullers      []PullerPosition
}

// PullerPosition is one puller's stored cursor and the oldest message
// waiting for it.
type PullerPosition struct {
	Name   string
	Cursor uint64
	// Waiting counts the original messages (not re-issued copies) that pull
	// would serve it in the first window after its cursor; OldestWaiting is
	// when the oldest of them arrived (zero when Waiting is 0).
	Waiting       uint64
	OldestWaiting time.Time
}

// Gauges computes the gauges. Pullers are those with an advanced delivery
// plus always (the default puller), up to maxPullers of them; f is what pull
// serves (UpTo: the loader's watermark; MinCreateTime: migration.cutoff).
// Re-issued copies carry their original's received_at, so they are left
// out of OldestWaiting: they would make a puller look days behind.
func (s *Store) Gauges(ctx context.Context, f LineFilter, always string, maxPullers int) (_ Gauges, err error) {
	defer wrap(&err, "store.Gauges")
	g := Gauges{Held: map[string]uint64{}}
	err = retryRead(ctx, func() error {
		rows, err := s.conn.Query(ctx, `SELECT source, count() FROM messages
 WHERE held = 1 AND (source, group_id) NOT IN (SELECT source, group_id FROM team_map WHERE `+committed+`) GROUP BY source`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var src string
			var n uint64
			if err := rows.Scan(&src, &n); err != nil {
				return err
			}
			g.Held[src] = n
		}
		return rows.Err()
	})
	if err != nil {
		return g, err
	}
	err = retryRead(ctx, func() error {
		return s.conn.QueryRow(ctx, `SELECT toUInt64(uniqExact(attach_url)) FROM messages
 WHERE attach_url != '' AND attach_url NOT IN (SELECT old_url FROM url_map WHERE `+committed+`)`).Scan(&g.UnmappedURLs)
	})
	if err != nil {
		return g, err
	}
	err = retryRead(ctx, func() error {
		rows, err := s.conn.Query(ctx, `SELECT puller, toUInt64(max(cursor_to)) FROM deliveries
 WHERE advanced = 1 GROUP BY puller ORDER BY puller LIMIT ?`, maxPullers)
		if err != nil {
			return err
		}
		defer rows.Close()
		g.Pullers = g.Pullers[:0]
		for rows.Next() {
			var p PullerPosition
			if err := rows.Scan(&p.Name, &p.Cursor); err != nil {
				return err
			}
			g.Pullers = append(g.Pullers, p)
		}
		return rows.Err()
	})
	if err != nil {
		return g, err
	}
	found := false
	for _, p := range g.Pullers {
		found = found || p.Name == always
	}
	if !found && always != "" {
		// Past the LIMIT (more pullers sort before it) or never advanced:
		// its own cursor, not 0.
		c, err := s.PullCursor(ctx, always)
		if err != nil {
			return g, err
		}
		g.Pullers = append(g.Pullers, PullerPosition{Name: always, Cursor: c})
	}
	for i := range g.Pullers {
		p := &g.Pullers[i]
		w := f
		w.After, w.UpTo = p.Cursor, min(f.UpTo, p.Cursor+streamWindow)
		if w.UpTo <= w.After {
			continue
		}
		where, args := w.where()
		var oldest time.Time
		err = retryRead(ctx, func() error {
			return s.conn.QueryRow(ctx, "SELECT count(), min(received_at) FROM messages WHERE origin = seq AND "+where, args...).
				Scan(&p.Waiting, &oldest)
		})
		if err != nil {
			return g, err
		}
		if p.Waiting > 0 {
			p.OldestWaiting = oldest
		}
	}
	return g, nil
}
