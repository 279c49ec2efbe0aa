package tcpack

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Tracker follows one TCP connection on behalf of the handler that owns it.
// It is not safe for concurrent use, and must not be used after the handler
// returns (net/http may then reuse the connection for another request). A nil
// *Tracker, as returned with New's error, confirms nothing: Sample and Wait
// return ErrNotTCP.
type Tracker struct {
	rc     syscall.RawConn
	maxWnd uint32
}

// New returns a Tracker for c, which must be a *net.TCPConn or wrap one
// through a NetConn() net.Conn method, as *tls.Conn does. Anything else,
// including nil (what FromContext gives for a request that did not come
// through a server with ConnContext, such as one made for an
// httptest.ResponseRecorder), yields an error wrapping ErrNotTCP.
// New takes a first sample.
func New(c net.Conn) (*Tracker, error) {
	orig := c
	for range 8 {
		if tc, ok := c.(*net.TCPConn); ok && tc != nil {
			rc, err := tc.SyscallConn()
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrConnectionLost, err)
			}
			t := &Tracker{rc: rc}
			if _, err := t.sample(false); err != nil {
				return nil, err
			}
			return t, nil
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	return nil, fmt.Errorf("%w: %T", ErrNotTCP, orig)
}

// Sample reads the connection's TCP_INFO (one getsockopt) and remembers the
// peer's advertised receive window if it is the largest seen so far. Call it
// after each flush while streaming; its error can be ignored, as Wait will
// report the same problem.
func (t *Tracker) Sample() error {
	if t == nil {
		return ErrNotTCP
	}
	_, err := t.sample(false)
	return err
}

// MaxWindow returns the largest receive window, in bytes, that the peer
// advertised in any sample so far.
func (t *Tracker) MaxWindow() uint32 {
	if t == nil {
		return 0
	}
	return t.maxWnd
}

// Wait returns nil once every byte written to the connection has been
// acknowledged by the peer, the connection is still established, and the
// peer's receive window is back to within Slack of the largest it
// advertised. Call it after the handler's last Write and Flush.
//
// Wait gives up when ctx is done or timeout has passed (a timeout of 0 or
// less makes it look once), returning an error
// that wraps ErrUnacknowledged or ErrUnread, and ctx's error; it returns an
// error wrapping ErrConnectionLost as soon as the connection is not
// established. Each error says what was missing.
//
// While everything is acknowledged but the window is short, Wait has the
// kernel send a TCP keepalive probe every second, which the peer answers
// with its current window; the connection's keepalive settings are
// restored before Wait returns. A peer that read everything but withheld
// its last window update is thus confirmed after a little over a second:
// give Wait a timeout of a few seconds.
func (t *Tracker) Wait(ctx context.Context, timeout time.Duration) error {
	if t == nil {
		return ErrNotTCP
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	start := time.Now()
	probing := false
	for {
		s, err := t.sample(true)
		if err != nil {
			return err
		}
		if !s.established() {
			return fmt.Errorf("%w: state %s, %d bytes unacknowledged", ErrConnectionLost, stateName(s.state), s.outq)
		}
		if s.outq == 0 {
			if t.maxWnd == 0 {
				return fmt.Errorf("%w: the kernel does not report the peer's window (tcpi_snd_wnd needs Linux 5.4)", ErrUnread)
			}
			if s.wnd+Slack(t.maxWnd) >= t.maxWnd {
				return nil
			}
			if !probing {
				probing = true
				restore, err := t.probeEverySecond()
				if err != nil {
					return err
				}
				defer restore()
			}
		}
		if ctx.Err() != nil {
			after := time.Since(start).Round(time.Millisecond)
			if s.outq > 0 {
				return fmt.Errorf("%w: %d bytes still unacknowledged after %v: %w", ErrUnacknowledged, s.outq, after, ctx.Err())
			}
			return fmt.Errorf("%w: all acknowledged, but after %v the peer's window is %d bytes, %d short of the largest it advertised (%d; slack %d): %w",
				ErrUnread, after, s.wnd, t.maxWnd-s.wnd, t.maxWnd, Slack(t.maxWnd), ctx.Err())
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// status is one look at the socket.
type status struct {
	state uint8  // tcpi_state
	wnd   uint32 // tcpi_snd_wnd: the peer's advertised receive window, in bytes
	outq  int    // SIOCOUTQ: bytes written but not acknowledged by the peer
}

func (s status) established() bool {
	// The peer may have half-closed (CLOSE_WAIT) after reading everything.
	return s.state == unix.BPF_TCP_ESTABLISHED || s.state == unix.BPF_TCP_CLOSE_WAIT
}

// sample reads TCP_INFO and, if withOutq, SIOCOUTQ, and updates maxWnd.
func (t *Tracker) sample(withOutq bool) (status, error) {
	var s status
	var serr error
	cerr := t.rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			serr = fmt.Errorf("tcpack: getsockopt TCP_INFO: %w", err)
			return
		}
		s.state, s.wnd = info.State, info.Snd_wnd
		if withOutq {
			if s.outq, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err != nil {
				serr = fmt.Errorf("tcpack: ioctl SIOCOUTQ: %w", err)
			}
		}
	})
	if cerr != nil { // closed on our side
		return s, fmt.Errorf("%w: %w", ErrConnectionLost, cerr)
	}
	if serr != nil {
		return s, serr
	}
	if s.established() && s.wnd > t.maxWnd {
		t.maxWnd = s.wnd
	}
	return s, nil
}

// probeEverySecond turns on TCP keepalive with one second of idle time and
// one second between probes, so that the kernel probes the connection once
// nothing is outstanding and the peer answers with its current window. The
// returned function restores the previous settings, as far as it can: they
// only time keepalive, so failing to restore them (which would take the
// connection being closed under us) changes nothing about the delivery.
func (t *Tracker) probeEverySecond() (restore func(), err error) {
	opts := []struct{ level, name, old int }{
		// Set in this order: turning SO_KEEPALIVE on, or changing
		// TCP_KEEPIDLE while it is on, (re)starts the timer with the idle
		// time then in force.
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 0},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 0},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0},
	}
	restore = func() {
		t.rc.Control(func(fd uintptr) {
			for _, o := range opts {
				unix.SetsockoptInt(int(fd), o.level, o.name, o.old)
			}
		})
	}
	var read, set bool
	var serr error
	cerr := t.rc.Control(func(fd uintptr) {
		for i, o := range opts {
			if opts[i].old, serr = unix.GetsockoptInt(int(fd), o.level, o.name); serr != nil {
				return
			}
		}
		read = true
		for _, o := range opts {
			if serr = unix.SetsockoptInt(int(fd), o.level, o.name, 1); serr != nil {
				return
			}
		}
		set = true
	})
	switch {
	case cerr != nil:
		return nil, fmt.Errorf("%w: %w", ErrConnectionLost, cerr)
	case !set:
		if read {
			restore()
		}
		return nil, fmt.Errorf("tcpack: enabling keepalive probes: %w", serr)
	}
	return restore, nil
}

// stateName names a tcpi_state (the kernel's TCP_* state numbers, which
// x/sys/unix exports as BPF_TCP_*).
func stateName(s uint8) string {
	switch s {
	case unix.BPF_TCP_ESTABLISHED:
		return "ESTABLISHED"
	case unix.BPF_TCP_SYN_SENT:
		return "SYN_SENT"
	case unix.BPF_TCP_SYN_RECV:
		return "SYN_RECV"
	case unix.BPF_TCP_FIN_WAIT1:
		return "FIN_WAIT1"
	case unix.BPF_TCP_FIN_WAIT2:
		return "FIN_WAIT2"
	case unix.BPF_TCP_TIME_WAIT:
		return "TIME_WAIT"
	case unix.BPF_TCP_CLOSE:
		return "CLOSE (reset or timed out)"
	case unix.BPF_TCP_CLOSE_WAIT:
		return "CLOSE_WAIT"
	case unix.BPF_TCP_LAST_ACK:
		return "LAST_ACK"
	case unix.BPF_TCP_LISTEN:
		return "LISTEN"
	case unix.BPF_TCP_CLOSING:
		return "CLOSING"
	}
	return fmt.Sprintf("%d", s)
}
