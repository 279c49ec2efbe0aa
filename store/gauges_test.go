package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// The gauges /metrics takes from ClickHouse, on the audit fixture: the
// held message of the never-mapped group (its uncommitted mapping does not
// count), the one URL without a mapping, and yunxin's position: seqs 6, 8
// and 10 wait (7 is a re-issued copy, 9 was recalled). A puller that never
// advanced (backup) is not listed unless asked for.
func TestGauges(t *testing.T) {
	st := storetest.Open(t)
	loadFixture(t, st)
	for _, test := range []struct {
		name    string
		filter  store.LineFilter
		always  string
		pullers []store.PullerPosition
	}{
		{"everything loaded", store.LineFilter{UpTo: 10}, "yunxin", []store.PullerPosition{
			{Name: "yunxin", Cursor: 5, Waiting: 3, OldestWaiting: time.Unix(1793613600, 0)}}},
		{"loaded up to seq 7", store.LineFilter{UpTo: 7}, "yunxin", []store.PullerPosition{
			{Name: "yunxin", Cursor: 5, Waiting: 1, OldestWaiting: time.Unix(1793613600, 0)}}},
		{"cutoff after seq 6's createTime", store.LineFilter{UpTo: 10, MinCreateTime: 1793613600000}, "yunxin", []store.PullerPosition{
			{Name: "yunxin", Cursor: 5, Waiting: 1, OldestWaiting: time.Unix(1793613660, 0)}}},
		{"a puller that never pulled", store.LineFilter{UpTo: 10}, "backup", []store.PullerPosition{
			{Name: "yunxin", Cursor: 5, Waiting: 3, OldestWaiting: time.Unix(1793613600, 0)},
			{Name: "backup", Cursor: 0, Waiting: 5, OldestWaiting: time.Unix(1793527205, 0)}}},
	} {
		t.Run(test.name, func(t *testing.T) {
			g, err := st.Gauges(context.Background(), test.filter, test.always, 16)
			if err != nil {
				t.Fatal(err)
			}
			if len(g.Held) != 1 || g.Held["tencent"] != 1 {
				t.Errorf("held %v, want tencent: 1", g.Held)
			}
			if g.UnmappedURLs != 1 {
				t.Errorf("unmapped URLs %d, want 1", g.UnmappedURLs)
			}
			if len(g.Pullers) != len(test.pullers) {
				t.Fatalf("pullers %+v, want %+v", g.Pullers, test.pullers)
			}
			for i, want := range test.pullers {
				got := g.Pullers[i]
				if got.Name != want.Name || got.Cursor != want.Cursor || got.Waiting != want.Waiting || !got.OldestWaiting.Equal(want.OldestWaiting) {
					t.Errorf("puller %d: %+v, want %+v", i, got, want)
				}
			}
		})
	}
}
