//go:build !cgo

package main

// Without cgo pebble allocates from the Go heap, under the soft memory
// limit: there is no C allocator to cap.
func mallocArenaCap() (ok, known bool) { return false, false }

func mallocArenasAfterThreads(int) int { return -1 }
