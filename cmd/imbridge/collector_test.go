package main

import (
	"runtime/debug"
	"testing"
)

// TestCollectLessLeavesASetGOGCAlone: serve's collector percent applies
// only when the operator chose neither a percent nor a memory limit.
func TestCollectLessLeavesASetGOGCAlone(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	for _, tc := range []struct {
		name      string
		gogc, lim string
		want      int
	}{
		{"neither set", "", "", 400},
		{"GOGC set by the operator", "150", "", 100},
		{"GOMEMLIMIT set by the operator: no soft limit of serve's bounds the heap", "", "off", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			collectLess(func(k string) string {
				switch k {
				case "GOGC":
					return tc.gogc
				case "GOMEMLIMIT":
					return tc.lim
				}
				return ""
			}, 400)
			if got := debug.SetGCPercent(100); got != tc.want {
				t.Errorf("GC percent %d, want %d", got, tc.want)
			}
		})
	}
}
