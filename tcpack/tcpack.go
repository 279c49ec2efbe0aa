package tcpack

import (
	"context"
	"errors"
	"net"
	"time"
)

// ConnContext stores c in ctx. Use it as http.Server.ConnContext so that a
// handler can reach its connection with FromContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// FromContext returns the connection ConnContext stored in ctx, if any.
func FromContext(ctx context.Context) (net.Conn, bool) {
	c, ok := ctx.Value(connKey{}).(net.Conn)
	return c, ok && c != nil
}

type connKey struct{}

var (
	// ErrNotTCP means New was given something that is not, and does not
	// wrap, a *net.TCPConn (or tcpack does not support this OS). Nothing
	// about its delivery can be confirmed.
	ErrNotTCP = errors.New("tcpack: not a TCP connection")
	// ErrConnectionLost means the connection is no longer established
	// (reset, timed out, closed); whatever the peer had not read is lost.
	ErrConnectionLost = errors.New("tcpack: connection no longer established")
	// ErrUnacknowledged means the peer's TCP stack has not acknowledged
	// every byte written.
	ErrUnacknowledged = errors.New("tcpack: peer has not acknowledged every byte")
	// ErrUnread means every byte was acknowledged, but the peer's receive
	// window shows that its application has not read them all.
	ErrUnread = errors.New("tcpack: peer's application has not read every byte")
)

// PollInterval is how often Wait looks at the socket.
const PollInterval = 5 * time.Millisecond

// Slack returns how far below maxWindow, the largest receive window the peer
// has advertised, its current window may be and still count as "its receive
// buffer is empty": 64 KiB plus 1/32 of maxWindow (see the package
// documentation for why). Fewer unread bytes than that go unnoticed.
func Slack(maxWindow uint32) uint32 {
	return 64<<10 + maxWindow/32
}
