package listener

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// fdHelperEnv makes the test binary call Open, then start a child (as serve
// starts the managed clickhouse-server) that reports what its fd 3 is.
const fdHelperEnv = "LISTENER_REGRESS_FD_HELPER"

func init() {
	if os.Getenv(fdHelperEnv) != "" {
		os.Exit(fdHelper())
	}
}

func fdHelper() int {
	ln, err := Open("127.0.0.1:0", "listen", slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer ln.Close()
	out, err := exec.Command("readlink", "/proc/self/fd/3").CombinedOutput()
	fmt.Printf("inherited=%v child-fd3=%q err=%v\n", ln.Inherited(), strings.TrimSpace(string(out)), err)
	return 0
}

// Whatever LISTEN_PID says, the socket passed down as fd 3 must not reach
// the processes serve starts (the managed clickhouse-server): a child
// holding it keeps the port, and connections queue on a socket nobody
// accepts. Before the fix, a LISTEN_PID naming another process (or none)
// made Open ignore the socket but leave fd 3 inheritable.
func TestRegressInheritedSocketNeverReachesChildren(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, test := range []struct {
		name      string
		script    string // run by sh with the test binary as $0
		inherited bool
	}{
		{"LISTEN_PID is this process", `LISTEN_PID=$$ exec "$0"`, true},
		{"LISTEN_PID names another process", `LISTEN_PID=1 exec "$0"`, false},
		{"LISTEN_PID missing", `unset LISTEN_PID; exec "$0"`, false},
	} {
		t.Run(test.name, func(t *testing.T) {
			cmd := exec.Command("/bin/sh", "-c", test.script, os.Args[0])
			cmd.Env = append(os.Environ(), fdHelperEnv+"=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=http")
			cmd.ExtraFiles = []*os.File{f}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("helper: %v\n%s", err, out)
			}
			got := string(out)
			if !strings.Contains(got, fmt.Sprintf("inherited=%v", test.inherited)) {
				t.Errorf("helper said %q, want inherited=%v", got, test.inherited)
			}
			if strings.Contains(got, "socket:") {
				t.Errorf("the child of serve got the listening socket as its fd 3: %s", got)
			}
		})
	}
}
