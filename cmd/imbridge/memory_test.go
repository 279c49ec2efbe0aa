package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestLimitMemoryLeavesTheOperatorsSettingsAlone: the soft limit applies
// unless the operator set GOMEMLIMIT, and serve's collector percent only
// with it, unless the operator set GOGC.
func TestLimitMemoryLeavesTheOperatorsSettingsAlone(t *testing.T) {
	beforePct := debug.SetGCPercent(100)
	beforeLim := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(beforePct)
		debug.SetMemoryLimit(beforeLim)
	})
	const soft = 100 << 20
	for _, tc := range []struct {
		name      string
		gogc, lim string
		percent   int
		wantPct   int
		wantLim   int64
	}{
		{"neither set", "", "", 400, 400, soft},
		{"GOGC set by the operator", "150", "", 400, 100, soft},
		{"GOMEMLIMIT set by the operator: no soft limit of serve's bounds the heap", "", "off", 400, 100, math.MaxInt64},
		{"no percent (import, export)", "", "", 0, 100, soft},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			limitMemory(func(k string) string {
				switch k {
				case "GOGC":
					return tc.gogc
				case "GOMEMLIMIT":
					return tc.lim
				}
				return ""
			}, soft, tc.percent)
			if got := debug.SetGCPercent(100); got != tc.wantPct {
				t.Errorf("GC percent %d, want %d", got, tc.wantPct)
			}
			if got := debug.SetMemoryLimit(-1); got != tc.wantLim {
				t.Errorf("memory limit %d, want %d", got, tc.wantLim)
			}
		})
	}
}
