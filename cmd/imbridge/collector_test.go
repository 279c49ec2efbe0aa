package main

import (
	"runtime/debug"
	"testing"
)

// TestCollectLessLeavesASetGOGCAlone: serve's collector percent applies
// only when the operator did not choose one.
func TestCollectLessLeavesASetGOGCAlone(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	for _, tc := range []struct {
		name string
		gogc string
		want int
	}{
		{"unset", "", 400},
		{"set by the operator", "150", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			collectLess(func(k string) string {
				if k == "GOGC" {
					return tc.gogc
				}
				return ""
			}, 400)
			if got := debug.SetGCPercent(100); got != tc.want {
				t.Errorf("GC percent %d, want %d", got, tc.want)
			}
		})
	}
}
