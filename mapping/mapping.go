// Package mapping applies the team map (provider group id → Yunxin tid) and
// the URL map (old media URL → uploaded Yunxin URL) that live in ClickHouse:
// it gives the loader a snapshot of the maps for each batch it renders, and
// re-issues stored messages that a new mapping changes — held team messages
// of a newly mapped group, delivered messages whose media URL got mapped —
// as copies under new seqs (same msgid), so every puller receives them again
// with the mapped values. Nothing here holds a whole map in memory: a
// snapshot covers the groups and URLs of one batch.
package mapping

import (
	"context"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/render"
	"github.com/imbridge/imbridge/store"
)

// mapStore is what snapshots read.
type mapStore interface {
	MapVersion(ctx context.Context) (uint64, error)
	TeamMappings(ctx context.Context, upTo uint64, groupIDs []string) (map[string]int64, error)
	URLMappings(ctx context.Context, upTo uint64, urls []string) (map[string]string, error)
}

// Snapshots reads map snapshots from the store.
type Snapshots struct{ st mapStore }

// NewSnapshots returns snapshots read from st.
func NewSnapshots(st mapStore) *Snapshots { return &Snapshots{st: st} }

// Snapshot is the maps as of one committed version, restricted to the groups
// and URLs of the messages it was taken for.
type Snapshot struct {
	version uint64
	teams   map[string]int64
	urls    map[string]string
}

// Version is the committed map version the snapshot reflects.
func (s *Snapshot) Version() uint64 { return s.version }

// TID implements render.Maps.
func (s *Snapshot) TID(source, groupID string) (int64, bool) {
	tid, ok := s.teams[store.GroupKey(source, groupID)]
	return tid, ok
}

// URL implements render.Maps.
func (s *Snapshot) URL(old string) (string, bool) {
	u, ok := s.urls[old]
	return u, ok
}

var _ render.Maps = (*Snapshot)(nil)

// Take returns the maps at the latest committed version for msgs.
func (s *Snapshots) Take(ctx context.Context, msgs []*message.Message) (*Snapshot, error) {
	v, err := s.Version(ctx)
	if err != nil {
		return nil, err
	}
	return s.TakeAt(ctx, v, msgs)
}

// Version is the latest committed map version.
func (s *Snapshots) Version(ctx context.Context) (uint64, error) { return s.st.MapVersion(ctx) }

// TakeAt returns the maps at version v (a committed one, from Version) for
// msgs: a loader rendering one INSERT in several blocks renders them all at
// the same version. With no maps yet (v = 0) it reads nothing.
func (s *Snapshots) TakeAt(ctx context.Context, v uint64, msgs []*message.Message) (*Snapshot, error) {
	snap := &Snapshot{version: v}
	if v == 0 {
		return snap, nil
	}
	groups := map[string]struct{}{}
	urls := map[string]struct{}{}
	for _, m := range msgs {
		if m.GroupID != "" {
			groups[m.GroupID] = struct{}{}
		}
		if u, ok := message.MediaURL(m.Attach); ok {
			urls[u] = struct{}{}
		}
	}
	var err error
	if snap.teams, err = s.st.TeamMappings(ctx, v, keys(groups)); err != nil {
		return nil, err
	}
	if snap.urls, err = s.st.URLMappings(ctx, v, keys(urls)); err != nil {
		return nil, err
	}
	return snap, nil
}

func keys(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	return out
}
