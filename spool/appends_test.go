package spool

import (
	"errors"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
)

func TestWritesGoToTheLogInBoundedAppends(t *testing.T) {
	logs := func(sizes ...int) []*raft.Log {
		var out []*raft.Log
		for i, n := range sizes {
			out = append(out, &raft.Log{Index: uint64(i + 1), Data: make([]byte, n-offsetLen), Extensions: make([]byte, offsetLen)})
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		sizes []int
		want  [][]uint64 // indexes per append
	}{
		{"one small write is one append", []int{10, 20, 30}, [][]uint64{{1, 2, 3}}},
		{"exactly the bound", []int{50, 50}, [][]uint64{{1, 2}}},
		{"split where the next record would pass the bound", []int{40, 40, 40, 40, 40}, [][]uint64{{1, 2}, {3, 4}, {5}}},
		{"a record larger than the bound goes alone", []int{10, 300, 10}, [][]uint64{{1}, {2}, {3}}},
		{"nothing to write", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [][]uint64
			err := inAppends(logs(tc.sizes...), 100, func(ps []*raft.Log) error {
				var idx []uint64
				for _, p := range ps {
					idx = append(idx, p.Index)
				}
				got = append(got, idx)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Fatalf("appends %v; want %v", got, tc.want)
			}
		})
	}
	t.Run("an error stops the rest", func(t *testing.T) {
		calls := 0
		boom := errors.New("disk full")
		err := inAppends(logs(80, 80, 80), 100, func([]*raft.Log) error { calls++; return boom })
		if !errors.Is(err, boom) || calls != 1 {
			t.Fatalf("err %v after %d appends; want the error after 1", err, calls)
		}
	})
}
