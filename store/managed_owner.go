package store

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Files next to the managed server's data, besides its config:
//
//	owner.lock   flock'd (exclusive) by the owning process for as long as it
//	             owns the server; holds the owner's pid, for people.
//	server.pid   the server's pid, written when it is launched.
//	server.port  its native port, written once it answers and removed when
//	             the owner stops it or a new owner takes over.
//
// The pid and port files are replaced atomically (temporary file, rename).
// A process attaches only to a server that is alive, a child of the lock's
// holder, and answering on the recorded port; so the files of an owner that
// was killed are never taken for those of a live one.
const (
	ownerLockName = "owner.lock"
	pidFileName   = "server.pid"
	portFileName  = "server.port"
)

// tryLock takes the owner lock of dir without waiting. ok is false when
// another open file (another process, or another Managed of this one) holds
// it. The descriptor is close-on-exec so the server does not inherit the
// lock and keep it after its owner dies.
func tryLock(dir string) (fd int, ok bool, err error) {
	path := filepath.Join(dir, ownerLockName)
	fd, err = syscall.Open(path, syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o640)
	if err != nil {
		return -1, false, fmt.Errorf("managed clickhouse: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	for {
		err = syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			break
		}
	}
	if err == nil {
		return fd, true, nil
	}
	_ = syscall.Close(fd)
	if err == syscall.EWOULDBLOCK {
		return -1, false, nil
	}
	return -1, false, fmt.Errorf("managed clickhouse: %w", &os.PathError{Op: "flock", Path: path, Err: err})
}

// unlock releases the owner lock. LOCK_UN first: a child forked by os/exec
// shares the open file until it execs, and closing our descriptor alone
// would leave the lock held for that moment.
func unlock(fd int) {
	if fd < 0 {
		return
	}
	_ = syscall.Flock(fd, syscall.LOCK_UN)
	_ = syscall.Close(fd)
}

// claim is the first thing a new owner does with the lock (fd) held: it
// records its pid in the lock file and withdraws the previous owner's port,
// which it returns (0 if none) so the server can be started there again.
func claim(dir string, fd int) (lastPort int) {
	_ = syscall.Ftruncate(fd, 0)
	_, _ = syscall.Pwrite(fd, []byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	path := filepath.Join(dir, portFileName)
	lastPort = readIntFile(path)
	_ = os.Remove(path)
	return lastPort
}

// publishPort records the port of a server that answers.
func publishPort(dir string, port int) error {
	return writeFileAtomic(filepath.Join(dir, portFileName), strconv.Itoa(port)+"\n")
}

// runningServer is the owner's server, as an attaching process sees it.
type runningServer struct{ port, pid, owner int }

// readServer returns the server the current owner of dir runs, or why it
// cannot be used yet. The files are read twice around the checks, so a
// restart or a change of owner between the reads is not mistaken for a
// running server.
func readServer(dir string) (runningServer, string) {
	portPath, pidPath := filepath.Join(dir, portFileName), filepath.Join(dir, pidFileName)
	port := readIntFile(portPath)
	if port <= 0 {
		return runningServer{}, "its owner has not recorded a port yet (still starting it?)"
	}
	pid := readIntFile(pidPath)
	if pid <= 1 || !isServerOf(pid, dir) {
		return runningServer{}, "no server runs under the pid in " + pidFileName
	}
	owner := lockHolder(dir)
	if _, ppid, ok := procStat(pid); !ok || owner <= 0 || ppid != owner {
		return runningServer{}, fmt.Sprintf("server %d is not the lock holder's (pid %d): left by an earlier owner", pid, owner)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return runningServer{}, fmt.Sprintf("server %d does not answer on %s: %v", pid, addr, err)
	}
	c.Close()
	if readIntFile(portPath) != port || readIntFile(pidPath) != pid {
		return runningServer{}, "its owner is restarting it"
	}
	return runningServer{port: port, pid: pid, owner: owner}, ""
}

// lockHolder is the pid of the process holding dir's owner lock, from
// /proc/locks; when that does not show it, the pid the owner wrote in the
// lock file. 0 when unknown.
func lockHolder(dir string) int {
	path := filepath.Join(dir, ownerLockName)
	if fi, err := os.Stat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if pid := flockHolder(uint64(st.Dev), st.Ino); pid > 0 {
				return pid
			}
		}
	}
	return readIntFile(path)
}

// flockHolder finds, in /proc/locks, the holder of a flock on the file
// dev/ino. Lines look like "3: FLOCK  ADVISORY  WRITE 7206 fe:00:9980464 0 EOF";
// waiters ("3: -> FLOCK …") are skipped.
func flockHolder(dev, ino uint64) int {
	raw, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0
	}
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	for line := range strings.Lines(string(raw)) {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != "FLOCK" {
			continue
		}
		id := strings.Split(f[5], ":")
		if len(id) != 3 {
			continue
		}
		maj, err1 := strconv.ParseUint(id[0], 16, 32)
		mnr, err2 := strconv.ParseUint(id[1], 16, 32)
		i, err3 := strconv.ParseUint(id[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || i != ino || maj != major || mnr != minor {
			continue
		}
		if pid, err := strconv.Atoi(f[4]); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}

// isServerOf reports whether pid is a live (not zombie) clickhouse-server
// started with dir's config: a pid file whose pid was reused by another
// program, or by the server of another directory, does not match.
func isServerOf(pid int, dir string) bool {
	if pid <= 1 {
		return false
	}
	if state, _, ok := procStat(pid); !ok || state == 'Z' || state == 'X' {
		return false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	want := "--config-file=" + filepath.Join(dir, "config.xml")
	for _, arg := range strings.Split(string(raw), "\x00") {
		if arg == want {
			return true
		}
	}
	return false
}

// procStat reads a process's state letter and parent pid.
func procStat(pid int) (state byte, ppid int, ok bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}

// stopLeftover ends a server that an earlier owner of dir started and did
// not stop (it was killed), so the new one can take the data directory and
// the port. Only the lock holder calls it: no live owner's server is ever
// stopped.
func stopLeftover(ctx context.Context, dir string, logger *slog.Logger) error {
	pid := readIntFile(filepath.Join(dir, pidFileName))
	if !isServerOf(pid, dir) {
		return nil // gone, or the pid now belongs to another program
	}
	logger.Warn("stopping a managed clickhouse left by an earlier run", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if waitGone(ctx, pid, dir, 30*time.Second) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	logger.Warn("the managed clickhouse left by an earlier run did not stop; killing it", "pid", pid)
	_ = syscall.Kill(-pid, syscall.SIGKILL) // its process group (Setpgid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitGone(ctx, pid, dir, 10*time.Second) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("managed clickhouse: the server left by an earlier run (pid %d) does not stop", pid)
}

// waitGone waits until pid is no longer dir's server (exited; a zombie no
// one reaps counts as gone).
func waitGone(ctx context.Context, pid int, dir string, within time.Duration) bool {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for isServerOf(pid, dir) {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return !isServerOf(pid, dir)
		case <-tick.C:
		}
	}
	return true
}

func readIntFile(path string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0
	}
	return n
}

// writeFileAtomic replaces path with content so that a reader sees the old
// content or the new, never a part.
func writeFileAtomic(path, content string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o640)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// portFree reports whether a loopback port can be bound now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
