package store

import (
	"math/rand/v2"
	"testing"

	"github.com/ClickHouse/ch-go/proto"
)

// The set against a map from the smallest tables up (growth from 1 slot),
// with keys that share their low bits (long probe chains, wrapping), the
// zero key, and resets after growth.
func TestReviewIdentitiesAgainstAMap(t *testing.T) {
	for _, size := range []int{0, 1, 2, 3, 64} {
		s := newIdentities(size)
		r := rand.New(rand.NewPCG(uint64(size), 7))
		for round := range 4 {
			s.reset()
			ref := map[uint64]bool{}
			for i := range 3000 {
				var k uint64
				switch i % 4 {
				case 0:
					k = r.Uint64() << 12 // low 12 bits equal: one probe chain
				case 1:
					k = r.Uint64() % 50 // repeats and 0
				case 2:
					k = ^uint64(0) - r.Uint64()%8 // the top of the range
				default:
					k = r.Uint64()
				}
				want := !ref[k]
				ref[k] = true
				if got := s.add(k); got != want {
					t.Fatalf("size %d round %d: add(%#x) = %v; want %v", size, round, k, got, want)
				}
			}
			for k := range ref {
				if s.add(k) {
					t.Fatalf("size %d round %d: %#x forgotten", size, round, k)
				}
			}
		}
	}
}

// detach hands out views that later decodes into the column cannot touch,
// including an empty last string whose view starts at the end of a full
// buffer (run with -race for checkptr).
func TestReviewDetachViews(t *testing.T) {
	var c proto.ColStr
	var kept []string
	var want []string
	for blk := range 5 {
		c.Reset()
		for i := range 100 {
			s := string(rune('a'+blk)) + string(make([]byte, i%7))
			if i == 99 {
				s = ""
			}
			c.Append(s)
		}
		c.Buf = c.Buf[:len(c.Buf):len(c.Buf)] // len == cap: the empty string's view starts past the data
		for i := range 100 {
			want = append(want, c.Row(i))
		}
		b := detach(&c)
		for i := range 100 {
			kept = append(kept, b.at(i))
		}
		// what the next block's decode does to the column's buffer
		c.Buf = c.Buf[:cap(c.Buf)]
		for i := range c.Buf {
			c.Buf[i] = 'X'
		}
	}
	for i := range kept {
		if kept[i] != want[i] {
			t.Fatalf("view %d = %q; want %q", i, kept[i], want[i])
		}
	}
}
