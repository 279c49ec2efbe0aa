package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoServerBinary is returned by OpenManaged when no clickhouse-server can
// be found.
var ErrNoServerBinary = errors.New("no clickhouse-server binary found on PATH: install one (Debian: apt-get install -y clickhouse-server) or set clickhouse.dsn / IMBRIDGE_CLICKHOUSE_DSN to a running server")

// Managed is the private clickhouse-server of one data directory: its data
// lives there, it listens on loopback only, and one process at a time owns
// it.
//
// The owner is the process that launched the server: it holds an exclusive
// flock on <dir>/owner.lock for as long as it owns the server, restarts it
// when it dies (Supervise) and stops it (Stop). Any other process that opens
// the same directory while the owner runs attaches: it uses the owner's
// server and never signals it. See OpenManaged.
type Managed struct {
	dir    string
	binOpt string // ManagedOptions.Binary
	port   int
	logger *slog.Logger

	// life ends when Stop is called; launches made by Supervise use it so
	// that Stop does not wait a minute for a server that starts.
	life    context.Context
	endLife context.CancelFunc

	// op serialises what changes the server or the ownership (a launch by
	// Supervise, a take-over, Stop) so Stop sees a settled state.
	op sync.Mutex

	mu        sync.Mutex
	bin       string   // clickhouse-server path; "" until found
	owned     bool     // this process holds the lock and supervises the server
	lockFD    int      // the locked owner.lock while owned, else -1
	proc      *process // the server this process launched; nil while attached
	seenPid   int      // attached: the server's pid last read from the pid file
	exitWatch *exitWatch
	stopped   bool // Stop was called
}

// process is one run of clickhouse-server.
type process struct {
	pid    int
	cmd    *exec.Cmd // nil for the placeholder of a server not yet launched
	exited chan struct{}
}

// exitWatch polls an attached server's pid for Exited.
type exitWatch struct {
	pid int
	ch  chan struct{}
}

// ManagedOptions configures OpenManaged.
type ManagedOptions struct {
	Dir    string // data directory, e.g. <data_dir>/clickhouse
	Binary string // clickhouse-server path; empty = look it up on PATH
	Port   int    // native port when this process launches the server; 0 = the last one used if it is free, else a free one
	Logger *slog.Logger
}

// How long OpenManaged waits for a server whose owner is still starting it,
// and how often it and an attached Supervise look.
const (
	attachWait  = 2 * time.Minute
	attachPoll  = 100 * time.Millisecond
	watchPeriod = 250 * time.Millisecond
)

// parentDeathSignal is the signal the server gets when the thread that
// launched it dies; tests turn it off to make a server that outlives its
// owner.
var parentDeathSignal = syscall.SIGTERM

// FindServerBinary returns the clickhouse-server to run, or ErrNoServerBinary.
func FindServerBinary(binary string) (string, error) {
	if binary != "" {
		if _, err := os.Stat(binary); err != nil {
			return "", fmt.Errorf("clickhouse.binary %q: %w", binary, err)
		}
		return binary, nil
	}
	for _, name := range []string{"clickhouse-server", "clickhouse"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/bin/clickhouse"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNoServerBinary
}

// StartManaged is OpenManaged, under the name its first callers use.
func StartManaged(ctx context.Context, opts ManagedOptions) (*Managed, error) {
	return OpenManaged(ctx, opts)
}

// OpenManaged returns the managed clickhouse-server of opts.Dir, started by
// this process or by another one, once it answers.
//
// When no process owns the directory, this one becomes the owner: it takes
// the lock, stops a server left by an owner that was killed (kill -9), and
// starts one bound to 127.0.0.1 (on opts.Port, else on the port last used if
// it is free, else on a free one) with a parent-death signal. Stop stops it.
//
// When another live process owns it (an `imbridge serve`, or a command that
// started it), this one attaches: it waits, up to two minutes or ctx, for
// the owner's server to answer and returns it with Owned() false. Stop then
// leaves the server running, and Supervise takes the server over if the
// owner goes away.
func OpenManaged(ctx context.Context, opts ManagedOptions) (*Managed, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{dir, filepath.Join(dir, "data"), filepath.Join(dir, "tmp"), filepath.Join(dir, "log")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("managed clickhouse: %w", err)
		}
	}
	life, endLife := context.WithCancel(context.Background())
	m := &Managed{dir: dir, binOpt: opts.Binary, logger: logger, life: life, endLife: endLife, lockFD: -1}
	// An attaching process does not need the binary; an owner does.
	bin, binErr := FindServerBinary(opts.Binary)
	m.bin = bin

	deadline := time.Now().Add(attachWait)
	for {
		fd, ok, err := tryLock(dir)
		if err != nil {
			endLife()
			return nil, err
		}
		if ok {
			if binErr == nil {
				err = m.startOwned(ctx, fd, opts.Port)
			} else {
				unlock(fd)
				err = binErr
			}
			if err != nil {
				endLife()
				return nil, err
			}
			return m, nil
		}
		srv, why := readServer(dir)
		if why == "" {
			if opts.Port != 0 && srv.port != opts.Port {
				logger.Warn("managed clickhouse already runs on another port than the one asked for; using it", "port", srv.port, "asked", opts.Port)
			}
			m.port, m.seenPid = srv.port, srv.pid
			logger.Info("using the managed clickhouse another imbridge runs", "addr", m.Addr(), "dir", dir, "pid", srv.pid, "owner_pid", srv.owner)
			return m, nil
		}
		if time.Now().After(deadline) {
			endLife()
			return nil, fmt.Errorf("managed clickhouse in %s belongs to another process (pid %d) but is not usable after %s: %s", dir, lockHolder(dir), attachWait, why)
		}
		select {
		case <-ctx.Done():
			endLife()
			return nil, ctx.Err()
		case <-time.After(attachPoll):
		}
	}
}

// startOwned is OpenManaged for the process that got the lock (fd): it
// clears what an earlier owner left and launches the server. On failure the
// lock is released.
func (m *Managed) startOwned(ctx context.Context, fd, wantPort int) error {
	lastPort := claim(m.dir, fd)
	if err := stopLeftover(ctx, m.dir, m.logger); err != nil {
		unlock(fd)
		return err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port := wantPort
		if port == 0 {
			// The port last used, when free, lets a process that was
			// attached to a killed owner's server find this one there.
			if attempt == 0 && lastPort > 0 && portFree(lastPort) {
				port = lastPort
			} else {
				var err error
				if port, err = freePort(); err != nil {
					unlock(fd)
					return fmt.Errorf("managed clickhouse: free port: %w", err)
				}
			}
		}
		proc, err := launch(ctx, m.bin, m.dir, port, m.logger)
		if err == nil {
			m.mu.Lock()
			m.port, m.proc, m.owned, m.lockFD = port, proc, true, fd
			m.mu.Unlock()
			if err := publishPort(m.dir, port); err != nil {
				m.logger.Warn("managed clickhouse: cannot record its port; other commands will not find it", "err", err)
			}
			return nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	unlock(fd)
	return lastErr
}

func launch(ctx context.Context, bin, dir string, port int, logger *slog.Logger) (*process, error) {
	if err := writeServerConfig(dir, port); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "log", "stderr.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, err
	}
	args := []string{"--config-file=" + filepath.Join(dir, "config.xml")}
	if filepath.Base(bin) == "clickhouse" {
		args = append([]string{"server"}, args...)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: parentDeathSignal}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("managed clickhouse: start %s: %w", bin, err)
	}
	p := &process{pid: cmd.Process.Pid, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	if err := writeFileAtomic(filepath.Join(dir, pidFileName), strconv.Itoa(p.pid)+"\n"); err != nil {
		logger.Warn("managed clickhouse: cannot record its pid", "err", err)
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			logger.Info("managed clickhouse started", "addr", addr, "dir", dir, "pid", p.pid)
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("managed clickhouse exited at start-up: %s", tail(logPath))
		case <-ctx.Done():
			p.stop(context.Background())
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop(context.Background())
			return nil, fmt.Errorf("managed clickhouse did not answer on %s within 60s: %s", addr, tail(logPath))
		}
	}
}

// Addr is the server's native-protocol address.
func (m *Managed) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port)) }

// Port is the server's native port.
func (m *Managed) Port() int { return m.port }

// DSN is a native-protocol DSN for database db on this server.
func (m *Managed) DSN(db string) string { return "clickhouse://" + m.Addr() + "/" + db }

// Owned reports whether this process owns the server: it launched it (or
// took it over), supervises it and stops it on Stop. False when attached to
// another process's server, and after Stop.
func (m *Managed) Owned() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.owned
}

// Pid is the running server's process id: the one this process launched, or,
// when attached, the one the owner recorded in the pid file. 0 while an owner
// that took over has not launched it yet.
func (m *Managed) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil {
		return m.proc.pid
	}
	if pid := readIntFile(filepath.Join(m.dir, pidFileName)); pid > 1 && isServerOf(pid, m.dir) {
		m.seenPid = pid
	}
	return m.seenPid
}

// Exited is closed when the running server process has ended. On an
// attached Managed the server's pid is polled, and Stop closes it too.
func (m *Managed) Exited() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil {
		return m.proc.exited
	}
	if m.stopped {
		done := make(chan struct{})
		close(done)
		return done
	}
	pid := m.seenPid
	if p := readIntFile(filepath.Join(m.dir, pidFileName)); p > 1 && isServerOf(p, m.dir) {
		pid, m.seenPid = p, p
	}
	if w := m.exitWatch; w != nil && w.pid == pid {
		return w.ch
	}
	w := &exitWatch{pid: pid, ch: make(chan struct{})}
	m.exitWatch = w
	go func() {
		defer close(w.ch)
		t := time.NewTicker(attachPoll)
		defer t.Stop()
		for isServerOf(w.pid, m.dir) {
			select {
			case <-m.life.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w.ch
}

// Supervise keeps a server running until ctx ends or Stop is called.
//
// On an owned Managed it restarts the server, on the same port and data,
// whenever it ends without Stop (crashed, killed, out of memory).
// Connections in the driver's pool reconnect by themselves.
//
// On an attached Managed it watches the owner: when the owner is gone (the
// lock is free: it stopped, or was killed), this process takes the lock,
// stops what is left of the old server, launches one on the same port and
// data, and from then on owns it as above. While the owner lives, it is the
// owner's business to restart its server.
func (m *Managed) Supervise(ctx context.Context) {
	if !m.Owned() && !m.watchOwner(ctx) {
		return
	}
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.life.Done():
			return
		case <-m.Exited():
		}
		if ctx.Err() != nil || m.life.Err() != nil {
			return
		}
		err := m.relaunch(ctx)
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		if ctx.Err() != nil || m.life.Err() != nil {
			return
		}
		m.logger.Error("starting managed clickhouse failed; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-m.life.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// watchOwner waits, on an attached Managed, until the owner is gone and this
// process has taken the lock (true), or until ctx ends or Stop (false).
func (m *Managed) watchOwner(ctx context.Context) bool {
	t := time.NewTicker(watchPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-m.life.Done():
			return false
		case <-t.C:
		}
		fd, ok, err := tryLock(m.dir)
		if err != nil {
			m.logger.Warn("managed clickhouse: cannot check its owner", "err", err)
			continue
		}
		if !ok {
			continue // the owner lives; restarting its server is its business
		}
		m.op.Lock()
		if ctx.Err() != nil || m.life.Err() != nil {
			m.op.Unlock()
			unlock(fd)
			return false
		}
		claim(m.dir, fd)
		m.logger.Warn("the process that ran the managed clickhouse is gone; taking it over", "dir", m.dir, "port", m.port)
		gone := make(chan struct{})
		close(gone)
		m.mu.Lock()
		m.owned, m.lockFD = true, fd
		m.proc = &process{exited: gone} // launched by Supervise's loop
		m.mu.Unlock()
		m.op.Unlock()
		return true
	}
}

// relaunch starts the server of an owned Managed again, on the same port,
// after it ended or after a take-over.
func (m *Managed) relaunch(ctx context.Context) error {
	m.op.Lock()
	defer m.op.Unlock()
	if err := m.life.Err(); err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(m.life, cancel)()

	m.mu.Lock()
	bin, first := m.bin, m.proc.cmd == nil
	m.mu.Unlock()
	if first {
		m.logger.Info("starting managed clickhouse", "dir", m.dir, "port", m.port)
	} else {
		m.logger.Error("managed clickhouse exited unexpectedly; restarting it", "dir", m.dir, "port", m.port)
	}
	if bin == "" {
		var err error
		if bin, err = FindServerBinary(m.binOpt); err != nil {
			return err
		}
		m.mu.Lock()
		m.bin = bin
		m.mu.Unlock()
	}
	// After a take-over, the old owner's server may still be shutting down.
	if err := stopLeftover(lctx, m.dir, m.logger); err != nil {
		return err
	}
	proc, err := launch(lctx, bin, m.dir, m.port, m.logger)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.proc = proc
	m.mu.Unlock()
	if err := publishPort(m.dir, m.port); err != nil {
		m.logger.Warn("managed clickhouse: cannot record its port; other commands will not find it", "err", err)
	}
	return nil
}

// Stop ends this process's use of the server. An owner withdraws the port
// (so no new process attaches), asks the server to shut down (SIGTERM),
// waits for it, killing it if it has not ended when ctx expires or after 30
// seconds, and releases the lock. An attached Managed never signals the
// server: it only stops watching it. Stop may be called more than once.
func (m *Managed) Stop(ctx context.Context) error {
	m.endLife()
	m.op.Lock()
	defer m.op.Unlock()
	m.mu.Lock()
	already := m.stopped
	owned, fd, p := m.owned, m.lockFD, m.proc
	m.stopped, m.owned, m.lockFD = true, false, -1
	m.mu.Unlock()
	if already {
		return nil
	}
	if !owned {
		m.logger.Info("done with the managed clickhouse another process runs; leaving it running", "addr", m.Addr(), "dir", m.dir)
		return nil
	}
	_ = os.Remove(filepath.Join(m.dir, portFileName))
	p.stop(ctx)
	// After a take-over that did not get to launch, the pid file still
	// names the old owner's server: keep it so the next owner stops it.
	if pidFile := filepath.Join(m.dir, pidFileName); p.cmd != nil && readIntFile(pidFile) == p.pid {
		_ = os.Remove(pidFile)
	}
	unlock(fd)
	m.logger.Info("managed clickhouse stopped", "dir", m.dir)
	return nil
}

func (p *process) stop(ctx context.Context) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-ctx.Done():
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.exited
	case <-timer.C:
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.exited
	}
}

func writeServerConfig(dir string, port int) error {
	cfg := fmt.Sprintf(`<?xml version="1.0"?>
<!-- Generated by imbridge for its managed ClickHouse; rewritten at every start. -->
<yandex>
    <logger>
        <level>warning</level>
        <log>%[1]s/log/clickhouse-server.log</log>
        <errorlog>%[1]s/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%[2]d</tcp_port>
    <path>%[1]s/data/</path>
    <tmp_path>%[1]s/tmp/</tmp_path>
    <user_files_path>%[1]s/user_files/</user_files_path>
    <format_schema_path>%[1]s/format_schemas/</format_schema_path>
    <users_config>%[1]s/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
`, dir, port)
	users := `<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default></default></quotas>
</yandex>
`
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(cfg), 0o640); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "users.xml"), []byte(users), 0o640)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	raw, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(raw))
	if len(s) > 600 {
		s = "…" + s[len(s)-600:]
	}
	if s == "" {
		return "(no output; see " + path + ")"
	}
	return strings.ReplaceAll(s, "\n", " | ")
}
