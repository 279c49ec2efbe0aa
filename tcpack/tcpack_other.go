//go:build !linux

package tcpack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"
)

// Tracker is only implemented on Linux; elsewhere New always fails.
type Tracker struct{}

// New fails: tcpack reads Linux-specific socket state.
func New(c net.Conn) (*Tracker, error) {
	return nil, fmt.Errorf("%w: %T on %s: %w", ErrNotTCP, c, runtime.GOOS, errors.ErrUnsupported)
}

// Sample returns ErrNotTCP.
func (t *Tracker) Sample() error { return ErrNotTCP }

// MaxWindow returns 0.
func (t *Tracker) MaxWindow() uint32 { return 0 }

// Wait returns ErrNotTCP: nothing can be confirmed.
func (t *Tracker) Wait(ctx context.Context, timeout time.Duration) error { return ErrNotTCP }
