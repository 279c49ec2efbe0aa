//go:build !linux || !cgo

package main

// Without cgo pebble allocates from the Go heap, under the soft memory
// limit: there is no C allocator to cap. Elsewhere than on Linux the C
// library's allocator is left as it is.
func mallocArenaCap() (ok, known bool) { return false, false }

func mallocArenasAfterThreads(int) int { return -1 }
