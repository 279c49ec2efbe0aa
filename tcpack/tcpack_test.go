//go:build linux

package tcpack_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imbridge/imbridge/tcpack"
)

const (
	bodySize = 8 << 20   // what the server writes in TestWait
	unread   = 600 << 10 // what a puller that gives up early leaves unread
)

// A puller is the client side of a test connection: what it does with the
// bodySize bytes the server writes. written is closed once the server has
// handed all of them to its kernel.
type puller func(t *testing.T, c *net.TCPConn, written <-chan struct{})

// Unless a puller closes or resets its connection itself, the connection
// stays open until the server has its verdict.
var (
	readsAll = func(t *testing.T, c *net.TCPConn, _ <-chan struct{}) {
		readN(t, c, bodySize)
	}
	readsAllThenCloses = func(t *testing.T, c *net.TCPConn, _ <-chan struct{}) {
		readN(t, c, bodySize)
		c.Close()
	}
	readsAllSlowly = func(t *testing.T, c *net.TCPConn, _ <-chan struct{}) {
		pace := time.NewTicker(time.Millisecond)
		defer pace.Stop()
		buf := make([]byte, 4<<10)
		for n, burst := 0, 0; n < bodySize; {
			if burst >= 64<<10 {
				<-pace.C // pause between bursts of small reads
				burst = 0
			}
			k, err := c.Read(buf[:min(len(buf), bodySize-n)])
			n += k
			burst += k
			if err != nil {
				t.Errorf("puller: read %d bytes: %v", n, err)
				return
			}
		}
	}
	readsAllButTheLast600KiB = func(t *testing.T, c *net.TCPConn, _ <-chan struct{}) {
		readN(t, c, bodySize-unread)
	}
	readsAllButTheLast600KiBThenResets = func(t *testing.T, c *net.TCPConn, written <-chan struct{}) {
		readN(t, c, bodySize-unread)
		<-written // so that the server's writes succeed and it gets to Wait
		reset(c)
	}
	readsAllThenResets = func(t *testing.T, c *net.TCPConn, _ <-chan struct{}) {
		readN(t, c, bodySize)
		reset(c)
	}
)

// When the server calls Wait.
const (
	afterWriting   = iota // as soon as its last Write returned, as a handler does
	afterPeerReset        // once a read on the connection failed because the peer reset it
)

// TestWait writes 8 MiB to a loopback TCP client and asks Wait whether the
// client received it all.
//
// Rows that leave 600 KiB unread give the client a fixed SO_RCVBUF. With an
// autotuned buffer the outcome is not deterministic: usually the 600 KiB do
// not fit and are never acknowledged, but the buffer can also grow so late
// that its free space with 600 KiB unread still matches the largest window
// the server saw, and Wait confirms (4 of 500 runs; see the package
// documentation's limits).
func TestWait(t *testing.T) {
	tests := []struct {
		name    string
		rcvbuf  int // client's SO_RCVBUF, set before connecting (the kernel doubles it); 0: autotuned
		pull    puller
		when    int
		timeout time.Duration
		want    error // nil: confirmed
	}{
		{
			name: "reads everything: confirmed",
			pull: readsAll, timeout: 10 * time.Second,
		},
		{
			name: "reads everything, then closes its side: confirmed",
			pull: readsAllThenCloses, timeout: 10 * time.Second,
		},
		{
			name: "reads everything slowly, in small reads with pauses: confirmed",
			pull: readsAllSlowly, timeout: 10 * time.Second,
		},
		{
			name:   "reads everything through a 32 KiB receive buffer: confirmed",
			rcvbuf: 16 << 10, pull: readsAll, timeout: 10 * time.Second,
		},
		{
			name:   "reads all but 600 KiB, which its 1.25 MiB buffer holds, and keeps the connection: unread",
			rcvbuf: 640 << 10, pull: readsAllButTheLast600KiB, timeout: 2 * time.Second,
			want: tcpack.ErrUnread,
		},
		{
			name:   "reads all but 600 KiB, which its 256 KiB buffer cannot hold, and keeps the connection: unacknowledged",
			rcvbuf: 128 << 10, pull: readsAllButTheLast600KiB, timeout: 2 * time.Second,
			want: tcpack.ErrUnacknowledged,
		},
		{
			name:   "reads all but 600 KiB, then resets while the server waits: lost",
			rcvbuf: 640 << 10, pull: readsAllButTheLast600KiBThenResets, timeout: 10 * time.Second,
			want: tcpack.ErrConnectionLost,
		},
		{
			// Everything is acknowledged and the window is full again: only
			// the connection's state shows the reset.
			name: "reads everything, then resets before the server waits: lost",
			pull: readsAllThenResets, when: afterPeerReset, timeout: 10 * time.Second,
			want: tcpack.ErrConnectionLost,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, client := connect(t, tc.rcvbuf)
			written := make(chan struct{})
			markWritten := sync.OnceFunc(func() { close(written) })
			pulled := make(chan struct{}) // the puller has done what it does
			done := make(chan struct{})   // the server has its verdict
			exited := make(chan struct{})
			go func() {
				defer close(exited)
				defer client.Close()
				client.SetDeadline(time.Now().Add(time.Minute))
				tc.pull(t, client, written)
				close(pulled)
				<-done // keep the connection until the server has its verdict
			}()
			defer func() { // after closing the server's end, which ends any read still blocked
				markWritten()
				close(done)
				<-exited
			}()
			defer c.Close()

			tr, err := tcpack.New(c)
			if err != nil {
				t.Fatal(err)
			}
			write(t, c, tr, bodySize)
			markWritten()
			if tc.when == afterPeerReset {
				<-pulled
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("read after the peer reset: %v, want ECONNRESET", err)
				}
			}
			keepalive := keepaliveSettings(t, c)

			start := time.Now()
			err = tr.Wait(context.Background(), tc.timeout)
			t.Logf("Wait: %v after %v; largest window %d", err, time.Since(start).Round(time.Millisecond), tr.MaxWindow())
			if tc.want == nil && err != nil {
				t.Errorf("Wait: %v, want nil", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Wait: %v, want %v", err, tc.want)
			}
			if got := keepaliveSettings(t, c); got != keepalive {
				t.Errorf("keepalive settings (interval, idle, on) after Wait: %v, before: %v", got, keepalive)
			}
		})
	}
}

// TestWaitProbesForAWithheldWindowUpdate shows why Wait has the kernel send
// keepalive probes. A Linux receiver announces a reopened window only when
// it has at least doubled. Here the client's kernel acknowledges the last
// 600 KiB with a window about 600 KiB short of its 2 MiB buffer; reading them
// does not double that, so the client sends nothing, and neither does the
// server until its handler returns. Only the peer's answer to a probe, one
// idle second later, shows the window whole again.
func TestWaitProbesForAWithheldWindowUpdate(t *testing.T) {
	t.Parallel()
	server, client := connect(t, 1<<20)
	var reads sync.WaitGroup
	defer reads.Wait()
	defer server.Close()
	defer client.Close()
	client.SetDeadline(time.Now().Add(time.Minute))
	tr, err := tcpack.New(server)
	if err != nil {
		t.Fatal(err)
	}

	// The client reads all but the last 600 KiB while the server writes
	// them, so its buffer is empty when they arrive.
	reads.Go(func() { readN(t, client, bodySize-unread) })
	write(t, server, tr, bodySize-unread)
	reads.Wait()
	write(t, server, tr, unread)
	if !poll(time.Minute, func() bool { return outq(t, server) == 0 }) {
		t.Fatal("the client's kernel did not acknowledge the last 600 KiB")
	}
	tr.Sample()
	wnd, max := sndWnd(t, server), tr.MaxWindow()
	if wnd+tcpack.Slack(max) >= max {
		t.Fatalf("with 600 KiB unread the client's window is %d, only %d short of its largest, %d", wnd, max-wnd, max)
	}

	reads.Go(func() { readN(t, client, unread) })
	start := time.Now()
	if err := tr.Wait(context.Background(), 10*time.Second); err != nil {
		t.Fatalf("Wait: %v, want nil", err)
	}
	t.Logf("window %d with 600 KiB unread, largest %d; confirmed after %v", wnd, max, time.Since(start).Round(time.Millisecond))
}

// TestWaitBehindNetHTTP serves a chunked body through net/http, with
// tcpack.ConnContext plugged in, and has the handler Wait after its last
// Flush and report the outcome.
func TestWaitBehindNetHTTP(t *testing.T) {
	const size = 2 << 20 // of JSON lines
	tests := []struct {
		name string
		// pull fetches url; flushed is closed once the handler has flushed
		// its whole body.
		pull func(t *testing.T, url string, flushed <-chan struct{})
		want error // nil: confirmed
	}{
		{
			name: "Go client reads the whole body: confirmed",
			pull: func(t *testing.T, url string, _ <-chan struct{}) {
				client := &http.Client{Transport: &http.Transport{}}
				defer client.CloseIdleConnections()
				resp, err := client.Get(url)
				if err != nil {
					t.Errorf("client: %v", err)
					return
				}
				defer resp.Body.Close()
				n, err := io.Copy(io.Discard, resp.Body)
				if err != nil || n < size {
					t.Errorf("client: read %d bytes, %v", n, err)
				}
			},
		},
		{
			name: "raw client reads the headers and 256 KiB of the body, then resets: not confirmed",
			pull: func(t *testing.T, url string, flushed <-chan struct{}) {
				c, err := dial(url[len("http://"):], 1<<20) // room for the rest of the body
				if err != nil {
					t.Errorf("client: %v", err)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				fmt.Fprintf(c, "GET /v1/pull HTTP/1.1\r\nHost: imbridge\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Errorf("client: %v", err)
					return
				}
				if n, err := io.CopyN(io.Discard, resp.Body, 256<<10); err != nil {
					t.Errorf("client: read %d bytes of the body: %v", n, err)
				}
				<-flushed
				reset(c)
			},
			want: tcpack.ErrConnectionLost,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			flushed := make(chan struct{})
			outcome := make(chan error, 1)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, _ := tcpack.FromContext(r.Context())
				tr, err := tcpack.New(c)
				if err != nil {
					outcome <- err
					return
				}
				w.Header().Set("Content-Type", "application/x-ndjson")
				// Lines go out in batches of about 64 KiB: one Write, one
				// Flush, one Sample each (see the package documentation on
				// small writes).
				var batch []byte
				for n, seq := 0, 0; n < size; seq++ {
					batch = fmt.Appendf(batch, `{"seq":%d,"from":"alice","to":"bob","body":"hello, this is message number %d"}`+"\n", seq, seq)
					if len(batch) >= 64<<10 || n+len(batch) >= size {
						if _, err := w.Write(batch); err != nil {
							outcome <- err
							return
						}
						w.(http.Flusher).Flush()
						tr.Sample()
						n += len(batch)
						batch = batch[:0]
					}
				}
				w.(http.Flusher).Flush()
				close(flushed)
				outcome <- tr.Wait(r.Context(), 5*time.Second)
			}))
			srv.Config.ConnContext = tcpack.ConnContext
			srv.Start()
			defer srv.Close()

			tc.pull(t, srv.URL, flushed)
			select {
			case err := <-outcome:
				t.Logf("handler's Wait: %v", err)
				if tc.want == nil && err != nil {
					t.Errorf("handler: %v, want confirmed", err)
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("handler: %v, want %v", err, tc.want)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the handler reported nothing")
			}
		})
	}
}

func TestNew(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	pipe, _ := net.Pipe()
	defer pipe.Close()

	tests := []struct {
		name    string
		ctx     context.Context // as a handler's request would carry it
		wantErr error
	}{
		{"TCP connection", tcpack.ConnContext(context.Background(), server), nil},
		{"TLS over TCP, unwrapped through NetConn", tcpack.ConnContext(context.Background(), tls.Server(server, &tls.Config{})), nil},
		{"in-memory pipe", tcpack.ConnContext(context.Background(), pipe), tcpack.ErrNotTCP},
		{"server without ConnContext, or httptest.ResponseRecorder", httptest.NewRequest("GET", "/v1/pull", nil).Context(), tcpack.ErrNotTCP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := tcpack.FromContext(tc.ctx)
			tr, err := tcpack.New(c)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("New: %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				// The nil Tracker New returned confirms nothing.
				if err := tr.Sample(); !errors.Is(err, tcpack.ErrNotTCP) {
					t.Errorf("Sample: %v, want %v", err, tcpack.ErrNotTCP)
				}
				if err := tr.Wait(context.Background(), time.Second); !errors.Is(err, tcpack.ErrNotTCP) {
					t.Errorf("Wait: %v, want %v", err, tcpack.ErrNotTCP)
				}
				return
			}
			// Nothing was written, so there is nothing to wait for.
			if err := tr.Wait(context.Background(), time.Second); err != nil {
				t.Errorf("Wait with nothing written: %v", err)
			}
		})
	}
}

// connect returns both ends of a loopback TCP connection; the client's
// SO_RCVBUF is set to rcvbuf before connecting unless that is 0.
func connect(t *testing.T, rcvbuf int) (server, client *net.TCPConn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = dial(ln.Addr().String(), rcvbuf)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	return c.(*net.TCPConn), client
}

// write writes n bytes to c in 32 KiB writes, sampling tr after each, as a
// handler samples after each flush.
func write(t *testing.T, c net.Conn, tr *tcpack.Tracker, n int) {
	buf := make([]byte, 32<<10)
	for done := 0; done < n; {
		k, err := c.Write(buf[:min(len(buf), n-done)])
		done += k
		if err != nil {
			t.Fatalf("write after %d bytes: %v", done, err)
		}
		tr.Sample()
	}
}

// dial connects to addr, setting SO_RCVBUF to rcvbuf first unless it is 0.
func dial(addr string, rcvbuf int) (*net.TCPConn, error) {
	d := net.Dialer{}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var err error
			if cerr := rc.Control(func(fd uintptr) {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
			}); cerr != nil {
				return cerr
			}
			return err
		}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

func readN(t *testing.T, c net.Conn, n int64) {
	if got, err := io.CopyN(io.Discard, c, n); err != nil {
		t.Errorf("puller: read %d of %d bytes: %v", got, n, err)
	}
}

// reset closes c with an RST: SO_LINGER with a zero timeout.
func reset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// poll reports whether cond became true within timeout, checking every
// millisecond.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// sndWnd returns the receive window c's peer last advertised.
func sndWnd(t *testing.T, c net.Conn) uint32 {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	rc.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if err != nil {
		t.Fatal(err)
	}
	return info.Snd_wnd
}

// outq returns how many bytes written to c its peer has not acknowledged.
func outq(t *testing.T, c net.Conn) (n int) {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Error(err)
		return -1
	}
	if err := rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
		return -1 // closed
	}
	if err != nil {
		t.Error(err)
		return -1
	}
	return n
}

func keepaliveSettings(t *testing.T, c net.Conn) (s [3]int) {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		s[0], _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		s[1], _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		s[2], _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	})
	return s
}
