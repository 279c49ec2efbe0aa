package store_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
)

// A test binary started with ownerEnv set to a directory is not a test run:
// it is another imbridge process that opens that directory's managed server
// (owning or attaching), prints "opened <port> <pid> <owned>", and stops it
// when its stdin closes. init runs before TestMain, so it starts no server
// of storetest's.
const (
	ownerEnv    = "IMBRIDGE_TEST_MANAGED_PROCESS"
	noPdeathEnv = "IMBRIDGE_TEST_MANAGED_NO_PDEATHSIG"
)

func init() {
	dir := os.Getenv(ownerEnv)
	if dir == "" {
		return
	}
	if os.Getenv(noPdeathEnv) != "" {
		store.SetParentDeathSignal(0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	m, err := store.OpenManaged(ctx, store.ManagedOptions{Dir: dir})
	cancel()
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("opened %d %d %v\n", m.Port(), m.Pid(), m.Owned())
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = m.Stop(context.Background())
	os.Exit(0)
}

// otherProcess is an imbridge-like process using dir's managed server.
type otherProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	port  int
	pid   int // the server's
	owned bool
	done  chan struct{}
}

// startOther starts another process on dir; call opened to wait for its
// OpenManaged.
func startOther(t *testing.T, dir string, pdeathsig bool) (*otherProcess, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), ownerEnv+"="+dir)
	if !pdeathsig {
		cmd.Env = append(cmd.Env, noPdeathEnv+"=1")
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &otherProcess{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p, bufio.NewReader(stdout)
}

func (p *otherProcess) opened(t *testing.T, out *bufio.Reader) {
	t.Helper()
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("other process: %v (read %q)", err, line)
	}
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "opened" {
		t.Fatalf("other process: %q", line)
	}
	p.port, _ = strconv.Atoi(f[1])
	p.pid, _ = strconv.Atoi(f[2])
	p.owned = f[3] == "true"
}

// stop makes the other process call Stop and exit.
func (p *otherProcess) stop(t *testing.T) {
	t.Helper()
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatal("other process did not exit within a minute of being told to stop")
	}
}

// kill is kill -9.
func (p *otherProcess) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func openManaged(t *testing.T, dir string) *store.Managed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m, err := store.OpenManaged(ctx, store.ManagedOptions{Dir: dir, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	return m
}

// managedDir is a fresh data directory whose servers are killed when the
// test ends, whatever happened to their owners.
func managedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		for _, pid := range serversOf(dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		waitFor(t, 30*time.Second, "left-over servers to die", func() bool { return len(serversOf(dir)) == 0 })
	})
	return dir
}

// serversOf lists the live clickhouse-server processes running dir's
// config, from /proc (zombies excluded: nothing may reap an orphan here).
func serversOf(dir string) []int {
	want := "--config-file=" + filepath.Join(dir, "config.xml")
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !slices.Contains(strings.Split(string(cmdline), "\x00"), want) {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ping proves a ClickHouse answers queries at addr.
func ping(t *testing.T, addr string) {
	t.Helper()
	st, err := store.New("clickhouse://"+addr+"/default", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("clickhouse at %s: %v", addr, err)
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", within, what)
		}
		<-tick.C
	}
}

// owner is the first user of a directory: this process, or another one.
type owner struct {
	port, pid int
	stop      func(t *testing.T) // Stop
	kill      func(t *testing.T) // kill -9; nil when the owner is this process
}

func startOwner(t *testing.T, dir string, elsewhere, pdeathsig bool) owner {
	t.Helper()
	if !elsewhere {
		m := openManaged(t, dir)
		if !m.Owned() {
			t.Fatal("first OpenManaged on a fresh directory does not own the server")
		}
		return owner{port: m.Port(), pid: m.Pid(), stop: func(t *testing.T) {
			if err := m.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
		}}
	}
	p, out := startOther(t, dir, pdeathsig)
	p.opened(t, out)
	if !p.owned {
		t.Fatal("the other process does not own the server of a fresh directory")
	}
	return owner{port: p.port, pid: p.pid, stop: p.stop, kill: p.kill}
}

func TestManagedSecondOpenAttaches(t *testing.T) {
	for _, tc := range []struct {
		name      string
		elsewhere bool
	}{
		{"owner in this process", false},
		{"owner in another process", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := managedDir(t)
			o := startOwner(t, dir, tc.elsewhere, true)

			a := openManaged(t, dir)
			if a.Owned() || a.Port() != o.port || a.Pid() != o.pid {
				t.Fatalf("second open: owned %v port %d pid %d; want attached to port %d pid %d", a.Owned(), a.Port(), a.Pid(), o.port, o.pid)
			}
			ping(t, a.Addr())
			if err := a.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-a.Exited():
			default:
				t.Error("Exited of an attached Managed is not closed by Stop")
			}
			if got := serversOf(dir); !slices.Equal(got, []int{o.pid}) {
				t.Fatalf("after the attached Stop, servers = %v; want the owner's %d still running", got, o.pid)
			}
			ping(t, a.Addr())

			o.stop(t)
			if got := serversOf(dir); len(got) != 0 {
				t.Errorf("after the owner's Stop, servers = %v; want none", got)
			}
			// serversOf leaves out a server whose main thread is already a
			// zombie while its other threads still close their sockets
			// (seen once in CI), so the port is given a moment to close.
			waitFor(t, 10*time.Second, a.Addr()+" to stop answering after the owner's Stop", func() bool { return !answers(a.Addr()) })
			for _, f := range []string{"server.port", "server.pid"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					t.Errorf("%s left after the owner's Stop", f)
				}
			}
		})
	}
}

func TestManagedAttachedSuperviseTakesOver(t *testing.T) {
	for _, tc := range []struct {
		name      string
		elsewhere bool
		kill      bool
	}{
		{"owner stops", false, false},
		{"owner in another process stops", true, false},
		{"owner is killed", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := managedDir(t)
			o := startOwner(t, dir, tc.elsewhere, true)
			a := openManaged(t, dir)
			if a.Owned() {
				t.Fatal("second open owns the server")
			}
			ctx, cancel := context.WithCancel(context.Background())
			supervised := make(chan struct{})
			go func() { defer close(supervised); a.Supervise(ctx) }()
			defer func() { cancel(); <-supervised }()

			if tc.kill {
				o.kill(t)
			} else {
				o.stop(t)
			}
			waitFor(t, 2*time.Minute, "the attached process to take over", func() bool {
				return a.Owned() && a.Pid() != 0 && a.Pid() != o.pid && answers(a.Addr())
			})
			if a.Port() != o.port {
				t.Errorf("port after take-over = %d; want %d", a.Port(), o.port)
			}
			ping(t, a.Addr())
			if got := serversOf(dir); !slices.Equal(got, []int{a.Pid()}) {
				t.Errorf("servers after take-over = %v; want only %d", got, a.Pid())
			}

			// The new owner is a real one: a later open attaches to it, and
			// its Stop stops the server.
			b := openManaged(t, dir)
			if b.Owned() || b.Pid() != a.Pid() || b.Port() != a.Port() {
				t.Errorf("open after take-over: owned %v pid %d port %d; want attached to %d on %d", b.Owned(), b.Pid(), b.Port(), a.Pid(), a.Port())
			}
			_ = b.Stop(context.Background())
			cancel()
			<-supervised
			pid := a.Pid()
			if err := a.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := serversOf(dir); len(got) != 0 {
				t.Errorf("servers after the new owner's Stop = %v (was %d); want none", got, pid)
			}
		})
	}
}

func TestManagedLeftoverOfKilledOwnerIsReplaced(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pdeathsig bool
	}{
		{"server got the parent-death signal", true},
		{"server outlived its owner", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := managedDir(t)
			o := startOwner(t, dir, true, tc.pdeathsig)
			o.kill(t)
			if !tc.pdeathsig && !answers(net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port))) {
				t.Fatal("the orphaned server does not answer: the test proves nothing")
			}

			m := openManaged(t, dir)
			if !m.Owned() {
				t.Fatal("OpenManaged after the owner was killed does not own the server")
			}
			if m.Pid() == o.pid {
				t.Fatal("OpenManaged adopted the orphaned server")
			}
			if got := serversOf(dir); !slices.Equal(got, []int{m.Pid()}) {
				t.Fatalf("servers = %v; want only the new %d (old %d)", got, m.Pid(), o.pid)
			}
			ping(t, m.Addr())
			if m.Port() != o.port {
				t.Errorf("port = %d; want the old owner's %d again (it was free)", m.Port(), o.port)
			}
		})
	}
}

func TestManagedConcurrentOpensShareOneServer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		elsewhere bool
	}{
		{"both in this process", false},
		{"this process and another", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := managedDir(t)
			type result struct {
				port, pid int
				owned     bool
				stop      func()
			}
			results := make(chan result, 2)
			var other *otherProcess
			var out *bufio.Reader
			if tc.elsewhere {
				other, out = startOther(t, dir, true)
			}
			for i := 0; i < 2; i++ {
				if i == 1 && tc.elsewhere {
					break
				}
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
					defer cancel()
					m, err := store.OpenManaged(ctx, store.ManagedOptions{Dir: dir})
					if err != nil {
						t.Error(err)
						results <- result{}
						return
					}
					results <- result{m.Port(), m.Pid(), m.Owned(), func() { _ = m.Stop(context.Background()) }}
				}()
			}
			var got []result
			if tc.elsewhere {
				other.opened(t, out)
				got = append(got, result{other.port, other.pid, other.owned, func() { other.stop(t) }})
			}
			for len(got) < 2 {
				got = append(got, <-results)
			}
			for _, r := range got {
				if r.stop == nil {
					t.FailNow()
				}
			}
			if got[0].owned == got[1].owned {
				t.Errorf("owned = %v and %v; want exactly one owner", got[0].owned, got[1].owned)
			}
			if got[0].port != got[1].port || got[0].pid != got[1].pid {
				t.Errorf("servers differ: port %d pid %d vs port %d pid %d", got[0].port, got[0].pid, got[1].port, got[1].pid)
			}
			if servers := serversOf(dir); !slices.Equal(servers, []int{got[0].pid}) {
				t.Errorf("servers = %v; want exactly one, %d", servers, got[0].pid)
			}
			ping(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(got[0].port)))
			// The attached one first, so the owner's Stop is what ends it.
			slices.SortFunc(got, func(a, b result) int {
				if a.owned == b.owned {
					return 0
				} else if a.owned {
					return 1
				}
				return -1
			})
			for _, r := range got {
				r.stop()
			}
			if servers := serversOf(dir); len(servers) != 0 {
				t.Errorf("servers after both stopped = %v", servers)
			}
		})
	}
}
