package test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store/storetest"
)

// heldServe is serve behind a listening socket that something else holds
// and passes to each serve it starts (LISTEN_FDS), so connections wait in
// the socket's queue while serve restarts.
type heldServe struct {
	base    string
	restart func() // returns once the new serve is started and accepting
	log     func() string
}

// holdInTest holds the socket in the test process, as systemd's
// imbridge.socket would, and restarts serve as systemctl restart does:
// SIGTERM, wait for the exit, start again on the same socket and data_dir.
func holdInTest(t *testing.T, dataDir, dsn string, extra ...string) heldServe {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); ln.Close() })
	s := newServer(t, dataDir, dsn, append(extra, "IMBRIDGE_LISTEN="+ln.Addr().String())...)
	s.base, s.socket = "http://"+ln.Addr().String(), f
	s.start()
	return heldServe{base: s.base, log: s.log, restart: func() {
		if code := s.terminate(); code != 0 {
			t.Fatalf("exit status %d after SIGTERM:\n%s", code, lastLines(s.log(), 20))
		}
		s.start() // returns once /readyz answers through the held socket
	}}
}

// holdWithScript runs serve under deploy/imbridge-hold, the README's way
// without systemd, and restarts it with SIGHUP.
func holdWithScript(t *testing.T, dataDir, dsn string, extra ...string) heldServe {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 is needed to run deploy/imbridge-hold")
	}
	s := newServer(t, dataDir, dsn, extra...)
	addr := strings.TrimPrefix(s.base, "http://")
	logPath := filepath.Join(dataDir, "hold.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command("../deploy/imbridge-hold", addr, binary, "serve")
	cmd.Env, cmd.Stdout, cmd.Stderr = s.env, logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // serve too, for the clean-up
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	readLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(90 * time.Second):
			t.Errorf("imbridge-hold did not stop within 90s of SIGTERM")
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("imbridge-hold log:\n%s", lastLines(readLog(), 40))
		}
	})
	waitFor(t, 90*time.Second, "serve under imbridge-hold", func() bool { return s.status("/readyz") == 200 })
	return heldServe{base: s.base, log: readLog, restart: func() {
		n := strings.Count(readLog(), "msg=listening")
		_ = cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, 90*time.Second, "serve restarted by imbridge-hold", func() bool {
			return strings.Count(readLog(), "msg=listening") > n
		})
	}}
}

// noExitSleep spares each serve the race detector's 1 s sleep at exit, so
// the restart figures are those of a release build.
const noExitSleep = "GORACE=atexit_sleep_ms=0"

// serve restarted five times under 16-client callback load, each time on a
// socket held across the restart and on the same data_dir, refuses
// nothing, leaves no request without an answer and loses no acknowledged
// message. With the managed ClickHouse (the default) each restart also stops
// serve's clickhouse-server and the next serve starts it again, so the gap
// includes ClickHouse's start; requests that arrive meanwhile wait in the
// socket's queue.
func TestRestartsThroughAHeldSocketRefuseAndLoseNothing(t *testing.T) {
	for _, test := range []struct {
		name     string
		external bool // clickhouse.dsn instead of the managed server
		hold     func(t *testing.T, dataDir, dsn string, extra ...string) heldServe
	}{
		{"managed ClickHouse, socket held as by systemd", false, holdInTest},
		{"clickhouse.dsn, socket held as by systemd", true, holdInTest},
		{"managed ClickHouse, deploy/imbridge-hold", false, holdWithScript},
	} {
		t.Run(test.name, func(t *testing.T) {
			dsn := ""
			if test.external {
				dsn = storetest.NewDSN(t)
			}
			restartUnderLoad(t, test.hold(t, t.TempDir(), dsn, noExitSleep))
		})
	}
}

func restartUnderLoad(t *testing.T, s heldServe) {
	const restarts = 5
	acks, refused := newAckSet(), &sync.Map{}
	var next atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	wg := load(ctx, s.base, 16, func() int64 { return next.Add(1) }, acks, refused)
	var longest time.Duration
	for i := 0; i < restarts; i++ {
		n := len(acks.snapshot())
		waitFor(t, time.Minute, "messages acknowledged under load", func() bool { return len(acks.snapshot()) > n+300 })
		began := time.Now()
		s.restart()
		longest = max(longest, time.Since(began))
	}
	n := len(acks.snapshot())
	waitFor(t, time.Minute, "messages acknowledged by the last serve", func() bool { return len(acks.snapshot()) > n+300 })
	cancel()
	wg.Wait()

	acked := acks.snapshot()
	failed, firstErr := acks.failures()
	nRefused := 0
	refused.Range(func(any, any) bool { nRefused++; return true })
	t.Logf("%d restarts: %d requests sent, %d acknowledged, %d refused, %d without an answer; longest restart %v, slowest acknowledged request %v",
		restarts, len(acked)+nRefused+failed, len(acked), nRefused, failed, longest.Round(time.Millisecond), acks.slowestAck().Round(time.Millisecond))
	expectNoneRefused(t, refused)
	if failed > 0 {
		t.Errorf("%d requests got no answer across the restarts; the first: %v", failed, firstErr)
	}
	// pullAllFrom fails the test if an acknowledged message never comes.
	seen := pullAllFrom(t, s.base, acked, 2*time.Minute)
	twice := 0
	for id := range acked {
		if seen[id] > 1 {
			twice++
		}
	}
	t.Logf("all %d acknowledged messages pulled, %d of them more than once", len(acked), twice)
	if t.Failed() {
		t.Logf("log:\n%s", lastLines(s.log(), 30))
	}
}
