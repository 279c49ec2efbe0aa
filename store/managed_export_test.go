package store

import "syscall"

// SetParentDeathSignal sets the signal a server launched from now on gets
// when its owner dies; 0 makes it outlive its owner, as a server whose
// parent-death signal was lost would. For tests.
func SetParentDeathSignal(sig syscall.Signal) { parentDeathSignal = sig }
