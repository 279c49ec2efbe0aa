package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/imbridge/imbridge/metrics"
)

// The audit gauges label pullers in the order Fetch lists them; the store
// lists them alphabetically, with the default puller appended when past its
// limit. With metrics.MaxPullers or more other pullers listed before it, a
// scrape before the first pull after a restart folded "yunxin" into
// "other" for the life of the process: its pull counters and its cursor
// gauge lost their series. auditGauges now lists it first.
func TestRegressDefaultPullerKeepsItsLabel(t *testing.T) {
	var others []metrics.PullerState
	for i := 0; i < metrics.MaxPullers+4; i++ {
		others = append(others, metrics.PullerState{Name: fmt.Sprintf("a%02d", i), Cursor: 1})
	}
	yunxin := metrics.PullerState{Name: "yunxin", Cursor: 9}
	for _, test := range []struct {
		name    string
		pullers []metrics.PullerState
		want    string // yunxin's label after one scrape
	}{
		{"as the store lists them", append(append([]metrics.PullerState{}, others...), yunxin), metrics.Other},
		{"reordered by auditGauges", pullerFirst(append(append([]metrics.PullerState{}, others...), yunxin), "yunxin"), "yunxin"},
	} {
		t.Run(test.name, func(t *testing.T) {
			m := metrics.New()
			m.RegisterAudit(metrics.AuditOptions{Fetch: func(context.Context) (metrics.AuditSnapshot, error) {
				return metrics.AuditSnapshot{Pullers: test.pullers}, nil
			}})
			mfs, err := m.Registry.Gather()
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Pullers.Label("yunxin"); got != test.want {
				t.Errorf("yunxin's label after a scrape: %q, want %q", got, test.want)
			}
			cursor := false
			for _, mf := range mfs {
				if mf.GetName() != "imbridge_pull_stored_cursor" {
					continue
				}
				for _, mm := range mf.GetMetric() {
					for _, l := range mm.GetLabel() {
						cursor = cursor || (l.GetName() == "puller" && l.GetValue() == "yunxin")
					}
				}
			}
			if cursor != (test.want == "yunxin") {
				t.Errorf("imbridge_pull_stored_cursor{puller=\"yunxin\"} present: %v, want %v", cursor, test.want == "yunxin")
			}
		})
	}
	if got := pullerFirst([]metrics.PullerState{{Name: "a"}, {Name: "b"}, {Name: "yunxin"}, {Name: "z"}}, "yunxin"); !strings.HasPrefix(fmt.Sprint(got), "[{yunxin") || len(got) != 4 || got[1].Name != "a" || got[3].Name != "z" {
		t.Errorf("pullerFirst: %v", got)
	}
}
