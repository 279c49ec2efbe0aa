// Package listener gives serve its listening socket and stops serving on it
// without refusing a connection.
//
// The socket is either inherited through the LISTEN_FDS protocol (systemd
// socket activation, or any holder that binds once and starts serve with
// the socket as fd 3, LISTEN_FDS=1 and LISTEN_PID set to serve's pid) or, when
// nothing was passed down, bound to the configured listen address.
//
// An inherited socket belongs to its holder and outlives serve: serve only
// closes its own duplicate of the descriptor, so connections that arrive
// while serve restarts wait in the kernel's accept queue until the next
// serve accepts them. A socket bound here dies with the process, and the
// connections queued on it at exit are reset.
package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// Name is the FileDescriptorName= serve looks for when a holder passes
// several sockets; a single socket is taken whatever its name.
const Name = "http"

// DrainIdle bounds how long Shutdown lets keep-alive connections carry one
// more request (answered with Connection: close) before closing the ones
// still idle. Under load every connection turns over within a request; an
// idle one closed at the end is the same race as any idle timeout.
const DrainIdle = time.Second

// Listener is serve's listening socket.
type Listener struct {
	net.Listener
	inherited string // the inherited socket's name; "" when bound here
	notify    string // NOTIFY_SOCKET at start; "" when not under systemd
	logger    *slog.Logger

	closeOnce sync.Once
	closeErr  error
	draining  atomic.Bool
	conns     atomic.Int64 // open HTTP connections (not closed, not hijacked)
}

// Open returns the socket serve accepts on: the one inherited through
// LISTEN_FDS when this process was started with one, else a new one bound
// to addr. addrKey names the configuration key of addr in errors (e.g.
// IMBRIDGE_LISTEN).
//
// It clears LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES and NOTIFY_SOCKET from
// the environment, so the processes serve starts (the managed ClickHouse)
// neither take the socket nor speak to systemd in serve's name.
func Open(addr, addrKey string, logger *slog.Logger) (*Listener, error) {
	l := &Listener{notify: os.Getenv("NOTIFY_SOCKET"), logger: logger}
	_ = os.Unsetenv("NOTIFY_SOCKET")
	files, err := inheritedFiles(logger)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if errors.Is(err, unix.EADDRINUSE) {
				return nil, fmt.Errorf("%s: %w: another process holds the port (a serve still running, or imbridge.socket: then start serve through it, systemctl start imbridge)", addrKey, err)
			}
			return nil, fmt.Errorf("%s: %w", addrKey, err)
		}
		l.Listener = ln
		return l, nil
	}
	f, err := pick(files)
	if err != nil {
		return nil, err
	}
	ln, err := fileListener(f)
	if err != nil {
		return nil, err
	}
	l.Listener, l.inherited = ln, f.Name()
	if !samePort(ln.Addr(), addr) {
		logger.Warn("the inherited socket's address is not listen: commands beside serve (import, urlmap load, teammap load) look for serve at listen; set listen to the socket's address",
			"socket", ln.Addr().String(), addrKey, addr)
	}
	return l, nil
}

// Inherited reports whether the socket was passed down by a holder (and so
// outlives this process).
func (l *Listener) Inherited() bool { return l.inherited != "" }

// Describe is a few log attributes saying where the socket came from.
func (l *Listener) Describe() []any {
	if l.Inherited() {
		return []any{"addr", l.Addr().String(), "socket", "inherited (LISTEN_FDS " + l.inherited + "): connections wait in its queue while serve restarts"}
	}
	return []any{"addr", l.Addr().String(), "socket", "bound by serve: closed on exit (see README Deployment to keep it across restarts)"}
}

// inheritedFiles returns the sockets passed down through LISTEN_FDS, none
// when the variables are absent or meant for another process.
func inheritedFiles(logger *slog.Logger) ([]*os.File, error) {
	fds, pid := os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_PID")
	if fds == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		clearActivationEnv()
		return nil, fmt.Errorf("LISTEN_FDS=%q is not a number of sockets", fds)
	}
	if pid != strconv.Itoa(os.Getpid()) {
		// Not ours to take, but the descriptors are in this process all
		// the same: keep them from the processes serve starts (the
		// managed clickhouse-server would hold the port).
		for fd := listenFDsStart; fd < listenFDsStart+min(n, maxListenFDs); fd++ {
			unix.CloseOnExec(fd)
		}
		logger.Warn("LISTEN_FDS is set but LISTEN_PID is not this process: ignoring the inherited sockets and binding listen; a holder must set LISTEN_PID to serve's own pid, e.g. sh -c 'LISTEN_PID=$$ exec imbridge serve'",
			"LISTEN_FDS", fds, "LISTEN_PID", pid, "pid", os.Getpid())
		clearActivationEnv()
		return nil, nil
	}
	// activation.Files checks LISTEN_PID again, marks the descriptors
	// close-on-exec and names them from LISTEN_FDNAMES.
	return activation.Files(true), nil
}

// listenFDsStart is the first descriptor of the LISTEN_FDS protocol;
// maxListenFDs bounds how many are marked close-on-exec when they are not
// taken.
const (
	listenFDsStart = 3
	maxListenFDs   = 1024
)

func clearActivationEnv() {
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		_ = os.Unsetenv(k)
	}
}

// pick chooses serve's socket among the inherited ones and closes the
// others.
func pick(files []*os.File) (*os.File, error) {
	if len(files) == 1 {
		return files[0], nil
	}
	var chosen *os.File
	var names []string
	for _, f := range files {
		names = append(names, f.Name())
		if f.Name() == Name && chosen == nil {
			chosen = f
			continue
		}
		_ = f.Close()
	}
	if chosen == nil {
		return nil, fmt.Errorf("LISTEN_FDS passed %d sockets %q and none is named %q: give serve's socket FileDescriptorName=%s", len(files), names, Name, Name)
	}
	return chosen, nil
}

// fileListener makes a listener of an inherited descriptor. net.FileListener
// works on a duplicate, so f is closed here and the holder's own descriptor
// is untouched; closing the listener later closes only the duplicate.
func fileListener(f *os.File) (net.Listener, error) {
	defer f.Close()
	listening, err := acceptsConnections(f)
	if err != nil {
		return nil, fmt.Errorf("LISTEN_FDS: socket %s: %w", f.Name(), err)
	}
	if !listening {
		return nil, fmt.Errorf("LISTEN_FDS: socket %s is not a listening socket: the socket unit needs ListenStream= and Accept=no", f.Name())
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("LISTEN_FDS: socket %s: %w", f.Name(), err)
	}
	return ln, nil
}

// acceptsConnections reports whether f is a listening stream socket.
func acceptsConnections(f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN) }); err != nil {
		return false, err
	}
	if errors.Is(serr, unix.ENOTSOCK) {
		return false, nil
	}
	return v == 1, serr
}

func samePort(a net.Addr, addr string) bool {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == strconv.Itoa(tcp.Port)
}

// Close stops accepting. With an inherited socket only this process's
// descriptor is closed: the socket keeps listening and queueing. It may be
// called more than once (Shutdown closes it, and so does http.Server).
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.Listener.Close() })
	return l.closeErr
}

// Serve serves srv on l until Shutdown, which makes it return
// http.ErrServerClosed. It wraps srv's handler and connection-state hook
// (keeping any hook already set) so that Shutdown can drain keep-alive
// connections, and tells systemd (Type=notify) that serve is ready.
func (l *Listener) Serve(srv *http.Server) error {
	next := srv.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.draining.Load() {
			// The client opens its next request on a new connection,
			// which waits in the socket's queue for the next serve.
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			l.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			l.conns.Add(-1)
		}
		if prev != nil {
			prev(c, s)
		}
	}
	l.sdNotify("READY=1")
	err := srv.Serve(l)
	if l.draining.Load() && errors.Is(err, net.ErrClosed) {
		return http.ErrServerClosed
	}
	return err
}

// Shutdown stops srv without refusing a connection the socket can keep:
// it stops accepting (an inherited socket goes on queueing for the next
// serve), lets each open keep-alive connection carry at most one more
// request, answered with Connection: close, for up to DrainIdle, then calls
// srv.Shutdown, which closes the idle connections left and waits until the
// requests in flight are answered or ctx ends.
func (l *Listener) Shutdown(ctx context.Context, srv *http.Server) error {
	l.sdNotify("STOPPING=1")
	l.draining.Store(true)
	_ = l.Close()
	start, open := time.Now(), l.conns.Load()
	l.waitDrained(ctx, DrainIdle)
	l.logger.Info("stopped accepting; keep-alive connections drained",
		"open_at_start", open, "still_open", l.conns.Load(), "took", time.Since(start).Round(time.Millisecond))
	return srv.Shutdown(ctx)
}

// waitDrained waits until no connection is open, for at most within.
func (l *Listener) waitDrained(ctx context.Context, within time.Duration) {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for l.conns.Load() > 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// sdNotify sends state to systemd's notification socket, when serve was
// started by a Type=notify unit.
func (l *Listener) sdNotify(state string) {
	if l.notify == "" {
		return
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: l.notify, Net: "unixgram"})
	if err == nil {
		_, err = c.Write([]byte(state))
		c.Close()
	}
	if err != nil {
		l.logger.Warn("telling systemd "+state, "NOTIFY_SOCKET", l.notify, "err", err)
	}
}
