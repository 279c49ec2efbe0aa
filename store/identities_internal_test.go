package store

import (
	"math/rand/v2"
	"testing"
)

func TestIdentitiesAddReportsNewKeysOnce(t *testing.T) {
	tests := []struct {
		name string
		keys []uint64
		want []bool
	}{
		{"distinct", []uint64{1, 2, 3}, []bool{true, true, true}},
		{"repeated", []uint64{5, 5, 6, 5}, []bool{true, false, true, false}},
		{"zero is a key", []uint64{0, 0, 1}, []bool{true, false, true}},
		{"keys sharing their low bits", []uint64{1, 1 << 32, 1<<32 | 1, 1 << 32}, []bool{true, true, true, false}},
		{"full to its size, then every key again", []uint64{9, 8, 7, 6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2},
			[]bool{true, true, true, true, true, true, true, true, false, false, false, false, false, false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newIdentities(8) // 16 slots
			for i, k := range tt.keys {
				if got := s.add(k); got != tt.want[i] {
					t.Fatalf("add(%d) #%d = %v; want %v", k, i, got, tt.want[i])
				}
			}
		})
	}
}

// Against a map, across resets and past the size the set was made for
// (it grows instead of filling up).
func TestIdentitiesAgreeWithAMap(t *testing.T) {
	s := newIdentities(64)
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 3 {
		s.reset()
		ref := map[uint64]bool{}
		for i := range 1000 * (round + 1) {
			k := r.Uint64() % 700 // repeats, and 0 now and then
			if i%7 == 0 {
				k = r.Uint64()
			}
			want := !ref[k]
			ref[k] = true
			if got := s.add(k); got != want {
				t.Fatalf("round %d: add(%d) = %v; want %v", round, k, got, want)
			}
		}
	}
}

func TestBindIntegers(t *testing.T) {
	tests := []struct {
		q       string
		args    []any
		want    string
		wantErr bool
	}{
		{"seq > ? AND seq <= ?", []any{uint64(0), uint64(18446744073709551615)}, "seq > 0 AND seq <= 18446744073709551615", false},
		{"t >= ? AND t < ?", []any{int64(-5), int64(1700000000000)}, "t >= -5 AND t < 1700000000000", false},
		{"no placeholders", nil, "no placeholders", false},
		{"a = ?", []any{"x' OR 1"}, "", true},
		{"a = ? AND b = ?", []any{uint64(1)}, "", true},
		{"a = ?", []any{uint64(1), uint64(2)}, "", true},
	}
	for _, tt := range tests {
		got, err := bindIntegers(tt.q, tt.args)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("bindIntegers(%q, %v) = %q, %v; want %q (error %v)", tt.q, tt.args, got, err, tt.want, tt.wantErr)
		}
	}
}
