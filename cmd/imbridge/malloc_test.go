package main

import "testing"

// The arena cap is set when the program is loaded, before the Go runtime
// starts its threads, so threads allocating at once share at most
// mallocArenas arenas. Set from Go it would come after glibc fixed its
// limit, and each thread would get an arena of its own (up to 16 here).
func TestMallocArenasAreCapped(t *testing.T) {
	ok, known := mallocArenaCap()
	if !known {
		t.Skip("no M_ARENA_MAX in this C library, no cgo, or MALLOC_ARENA_MAX set")
	}
	if !ok {
		t.Fatalf("mallopt(M_ARENA_MAX, %d) was refused", mallocArenas)
	}
	if n := mallocArenasAfterThreads(32); n < 1 || n > mallocArenas {
		t.Fatalf("32 threads allocating at once left %d arenas, want 1..%d", n, mallocArenas)
	}
}
