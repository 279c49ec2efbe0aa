package listener

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary a tiny serve: it takes its socket through
// Open, answers /pid (and /slow after 300 ms) and shuts down on SIGTERM.
const helperEnv = "LISTENER_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperServe())
	}
	os.Exit(m.Run())
}

func helperServe() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ln, err := Open("127.0.0.1:0", "listen", logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d inherited=%v", os.Getpid(), ln.Inherited())
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		// The header tells the test the request is in flight; the body
		// comes after SIGTERM.
		fmt.Fprint(w, "slow ")
		w.(http.Flusher).Flush()
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(w, "done")
	})
	srv := &http.Server{Handler: mux}
	served := make(chan error, 1)
	go func() { served <- ln.Serve(srv) }()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ln.Shutdown(sctx, srv); err != nil {
		fmt.Fprintln(os.Stderr, "shutdown:", err)
		return 1
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	return 0
}

// holder is a test acting as systemd: it binds once and starts each
// process with the socket as fd 3.
type holder struct {
	t  *testing.T
	ln net.Listener
	f  *os.File
}

func newHolder(t *testing.T) *holder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); ln.Close() })
	return &holder{t: t, ln: ln, f: f}
}

// start runs the helper serve through sh, which sets LISTEN_PID to its own
// pid and execs: the pid the helper then has.
func (h *holder) start() (*exec.Cmd, *bytes.Buffer) {
	h.t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0"`, os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=http")
	cmd.ExtraFiles = []*os.File{h.f}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, &log
}

func (h *holder) url(path string) string { return "http://" + h.ln.Addr().String() + path }

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), err
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Three restarts through a held socket under keep-alive load: every request
// is answered, none meets a refused or reset connection, the request in
// flight at SIGTERM finishes, and the holder's socket outlives each process.
func TestRestartsThroughAHeldSocketLoseNoRequest(t *testing.T) {
	h := newHolder(t)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	cmd, log := h.start()
	waitFor(t, 10*time.Second, "the first process", func() bool {
		body, err := get(client, h.url("/pid"))
		return err == nil && strings.HasSuffix(body, "inherited=true")
	})

	var sent, failed atomic.Int64
	var firstErr atomic.Value
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				sent.Add(1)
				// POST: a client does not retry it on a connection the
				// server closed, so a close at the wrong time shows.
				resp, err := client.Post(h.url("/pid"), "text/plain", strings.NewReader("x"))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	for restart := 0; restart < 3; restart++ {
		before := sent.Load()
		waitFor(t, 10*time.Second, "requests under load", func() bool { return sent.Load() > before+200 })
		slow, err := client.Get(h.url("/slow"))
		if err != nil {
			t.Fatal(err)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		body, err := io.ReadAll(slow.Body)
		slow.Body.Close()
		if err != nil || string(body) != "slow done" {
			t.Errorf("restart %d: the request in flight at SIGTERM got %q, %v", restart, body, err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("restart %d: the process exited with %v:\n%s", restart, err, log)
		}
		// Nothing accepts now, yet a connection is not refused: it waits in
		// the holder's queue.
		c, err := net.DialTimeout("tcp", h.ln.Addr().String(), time.Second)
		if err != nil {
			t.Fatalf("restart %d: with no process serving, connect: %v", restart, err)
		}
		c.Close()
		cmd, log = h.start()
	}
	before := sent.Load()
	waitFor(t, 10*time.Second, "requests to the last process", func() bool { return sent.Load() > before+200 })
	stop()
	wg.Wait()
	t.Logf("%d requests across 3 restarts, %d failed", sent.Load(), failed.Load())
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed; the first: %v", n, sent.Load(), firstErr.Load())
	}
}

func TestOpenWithoutInheritedSocketBindsListen(t *testing.T) {
	t.Setenv("LISTEN_FDS", "")
	ln, err := Open("127.0.0.1:0", "listen", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if ln.Inherited() {
		t.Error("Inherited() with no LISTEN_FDS")
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ln.Close(); err != nil {
		t.Errorf("second Close: %v, want nil (http.Server closes it again)", err)
	}
}

func TestOpenTakenPortSaysWhoMayHoldIt(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = Open(taken.Addr().String(), "IMBRIDGE_LISTEN", slog.New(slog.DiscardHandler))
	if err == nil || !strings.HasPrefix(err.Error(), "IMBRIDGE_LISTEN: ") || !strings.Contains(err.Error(), "imbridge.socket") {
		t.Fatalf("err %v, want it to name IMBRIDGE_LISTEN and the socket unit", err)
	}
}

func TestOpenActivationEnvironment(t *testing.T) {
	for _, test := range []struct {
		name      string
		fds, pid  string
		wantErr   string
		wantLog   string
		inherited bool
	}{
		{name: "not a number", fds: "one", pid: strconv.Itoa(os.Getpid()), wantErr: `LISTEN_FDS="one" is not a number`},
		{name: "meant for another process", fds: "1", pid: "1", wantLog: "LISTEN_PID is not this process"},
		{name: "no LISTEN_PID", fds: "1", pid: "", wantLog: "LISTEN_PID is not this process"},
		{name: "zero sockets", fds: "0", pid: strconv.Itoa(os.Getpid())},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Setenv("LISTEN_FDS", test.fds)
			t.Setenv("LISTEN_PID", test.pid)
			var log bytes.Buffer
			ln, err := Open("127.0.0.1:0", "listen", slog.New(slog.NewTextHandler(&log, nil)))
			if test.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), test.wantErr) {
					t.Fatalf("err %v, want %q", err, test.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				if ln.Inherited() {
					t.Error("took an inherited socket")
				}
			}
			if !strings.Contains(log.String(), test.wantLog) {
				t.Errorf("log %q, want %q", log.String(), test.wantLog)
			}
			if os.Getenv("LISTEN_FDS") != "" || os.Getenv("LISTEN_PID") != "" {
				t.Error("LISTEN_FDS / LISTEN_PID left for serve's children")
			}
		})
	}
}

func TestPickAmongSeveralSocketsByName(t *testing.T) {
	named := func(name string) *os.File {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		w.Close()
		fd, err := syscall.Dup(int(r.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), name)
		t.Cleanup(func() { f.Close() })
		return f
	}
	if _, err := pick([]*os.File{named("metrics"), named("admin")}); err == nil || !strings.Contains(err.Error(), "FileDescriptorName=http") {
		t.Errorf("two sockets, neither named http: err %v, want a hint at FileDescriptorName=http", err)
	}
	f, err := pick([]*os.File{named("metrics"), named("http")})
	if err != nil || f.Name() != "http" {
		t.Errorf("picked %v, %v; want the socket named http", f, err)
	}
	f, err = pick([]*os.File{named("imbridge.socket")})
	if err != nil || f.Name() != "imbridge.socket" {
		t.Errorf("one socket: picked %v, %v; want it whatever its name", f, err)
	}
}

func TestFileListenerRefusesWhatIsNotAListeningSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	connected, err := conn.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	regular, err := os.Create(filepath.Join(t.TempDir(), "file"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*os.File{connected, regular} {
		if _, err := fileListener(f); err == nil || !strings.Contains(err.Error(), "not a listening socket") {
			t.Errorf("%s: err %v, want not a listening socket", f.Name(), err)
		}
	}
	listening, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	dup, err := fileListener(listening)
	if err != nil {
		t.Fatal(err)
	}
	// Closing the duplicate leaves the original socket listening.
	dup.Close()
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err != nil {
		t.Errorf("after closing the duplicate, connect: %v", err)
	} else {
		c.Close()
	}
}

func TestReadyAndStoppingAreSentToSystemd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	ln, err := Open("127.0.0.1:0", "listen", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if v := os.Getenv("NOTIFY_SOCKET"); v != "" {
		t.Errorf("NOTIFY_SOCKET=%q left for serve's children", v)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	served := make(chan error, 1)
	go func() { served <- ln.Serve(srv) }()
	buf := make([]byte, 64)
	_ = sock.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := sock.Read(buf); err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("first notification %q, %v; want READY=1", buf[:n], err)
	}
	if err := ln.Shutdown(context.Background(), srv); err != nil {
		t.Fatal(err)
	}
	if n, err := sock.Read(buf); err != nil || string(buf[:n]) != "STOPPING=1" {
		t.Fatalf("second notification %q, %v; want STOPPING=1", buf[:n], err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
	}
}
