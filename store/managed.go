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

// ErrNoServerBinary is returned by StartManaged when no clickhouse-server can
// be found.
var ErrNoServerBinary = errors.New("no clickhouse-server binary found on PATH: install one (Debian: apt-get install -y clickhouse-server) or set clickhouse.dsn / IMBRIDGE_CLICKHOUSE_DSN to a running server")

// Managed is a private clickhouse-server owned by this process: its data lives
// under one directory, it listens on loopback only, and Stop ends it.
type Managed struct {
	dir    string
	port   int
	bin    string
	logger *slog.Logger

	mu      sync.Mutex
	proc    *process // the running server
	stopped bool     // Stop was called: Supervise must not restart
}

// process is one run of clickhouse-server.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// ManagedOptions configures StartManaged.
type ManagedOptions struct {
	Dir    string // data directory, e.g. <data_dir>/clickhouse
	Binary string // clickhouse-server path; empty = look it up on PATH
	Port   int    // native port; 0 = a free one
	Logger *slog.Logger
}

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

// StartManaged starts a clickhouse-server with its data under opts.Dir, bound
// to 127.0.0.1 on a free port, and waits until it answers. A server left
// behind by an earlier process that was killed is stopped first. The server
// is also told to exit if this process dies (Linux parent-death signal).
func StartManaged(ctx context.Context, opts ManagedOptions) (*Managed, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bin, err := FindServerBinary(opts.Binary)
	if err != nil {
		return nil, err
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
	stopLeftover(dir, logger)

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, fmt.Errorf("managed clickhouse: free port: %w", err)
			}
		}
		proc, err := launch(ctx, bin, dir, port, logger)
		if err == nil {
			return &Managed{dir: dir, port: port, bin: bin, logger: logger, proc: proc}, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("managed clickhouse: start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	_ = os.WriteFile(filepath.Join(dir, "server.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o640)

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			logger.Info("managed clickhouse started", "addr", addr, "dir", dir, "pid", cmd.Process.Pid)
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

// Pid is the running server's process id.
func (m *Managed) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc.cmd.Process.Pid
}

// Exited is closed when the running server process has ended.
func (m *Managed) Exited() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc.exited
}

// Supervise restarts the server, on the same port and data, whenever it ends
// without Stop having been called (crashed, killed, out of memory), until ctx
// ends. Connections in the driver's pool reconnect by themselves.
func (m *Managed) Supervise(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.Exited():
		}
		m.mu.Lock()
		stopped := m.stopped
		m.mu.Unlock()
		if stopped || ctx.Err() != nil {
			return
		}
		m.logger.Error("managed clickhouse exited unexpectedly; restarting it", "dir", m.dir, "port", m.port)
		proc, err := launch(ctx, m.bin, m.dir, m.port, m.logger)
		if err != nil {
			m.logger.Error("restarting managed clickhouse failed; retrying", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		m.mu.Lock()
		if m.stopped {
			m.mu.Unlock()
			proc.stop(context.Background())
			return
		}
		m.proc = proc
		m.mu.Unlock()
	}
}

// Stop asks the server to shut down (SIGTERM) and waits for it, killing it if
// it has not ended when ctx expires or after 30 seconds.
func (m *Managed) Stop(ctx context.Context) error {
	m.mu.Lock()
	m.stopped = true
	p := m.proc
	m.mu.Unlock()
	p.stop(ctx)
	_ = os.Remove(m.pidFile())
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
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	case <-timer.C:
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

func (m *Managed) pidFile() string { return filepath.Join(m.dir, "server.pid") }

// stopLeftover ends a server that an earlier imbridge started in dir and did
// not stop (kill -9), so the new one can take the data directory.
func stopLeftover(dir string, logger *slog.Logger) {
	raw, err := os.ReadFile(filepath.Join(dir, "server.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), filepath.Join(dir, "config.xml")) {
		return // gone, or the pid was reused by another program
	}
	logger.Warn("stopping a managed clickhouse left by an earlier run", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
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
