package deploy

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/imbridge/imbridge/config"
	"github.com/imbridge/imbridge/listener"
)

// unit is a systemd unit file's directives, "Section.Key" → values in order.
type unit map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, section := unit{}, ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "", strings.HasPrefix(line, "#"), strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a directive: %q", path, n, line)
			}
			u[section+"."+k] = append(u[section+"."+k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// one is the single value of a directive.
func (u unit) one(t *testing.T, key string) string {
	t.Helper()
	if len(u[key]) != 1 {
		t.Fatalf("%s: %d values %q, want one", key, len(u[key]), u[key])
	}
	return u[key][0]
}

// The units pass systemd-analyze verify: no error and no warning about them
// (an unknown key or a bad value is only a warning, with exit status 0).
// ExecStart must name an executable, so a copy points it at this test
// binary.
func TestUnitsPassSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd); the units were not verified")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{"imbridge.service", "imbridge.socket"} {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(raw), "/usr/local/bin/imbridge", self)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(analyze, "verify", "--man=no", "imbridge.service", "imbridge.socket")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var about []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, "imbridge.") {
			about = append(about, line)
		} else if line != "" {
			t.Logf("systemd-analyze (not about imbridge's units): %s", line)
		}
	}
	if err != nil || len(about) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, strings.Join(about, "\n"))
	}
}

// serve's own shutdown budget: HTTP requests in flight (cmd/imbridge
// serve.go), the keep-alive drain before it, the loader's flush and the
// managed ClickHouse's stop (pipeline).
const serveStopBudget = 30*time.Second + listener.DrainIdle + 15*time.Second + 30*time.Second

// The directives serve relies on, and the agreement between the units, the
// example configuration and serve.
func TestUnitsAgreeWithServeAndTheExampleConfiguration(t *testing.T) {
	svc, sock := readUnit(t, "imbridge.service"), readUnit(t, "imbridge.socket")
	for _, want := range []struct{ key, value, why string }{
		{"Service.Type", "notify", "serve sends READY=1 once it accepts"},
		{"Service.KillMode", "mixed", "SIGTERM to serve alone: it stops its managed ClickHouse itself, after flushing"},
		{"Service.KillSignal", "SIGTERM", "serve's graceful stop"},
		{"Service.Restart", "on-failure", "a crash is restarted on the held socket"},
		{"Service.RestartPreventExitStatus", "2", "exit 2 is a configuration error"},
		{"Service.StateDirectory", "imbridge", "data_dir /var/lib/imbridge"},
		{"Unit.Requires", "imbridge.socket", "the socket outlives serve's restarts"},
		{"Socket.Accept", "no", "one listening socket handed to serve"},
		{"Socket.FileDescriptorName", listener.Name, "the name serve looks for"},
	} {
		if got := svc[want.key]; strings.HasPrefix(want.key, "Socket.") {
			got = sock[want.key]
			if len(got) != 1 || got[0] != want.value {
				t.Errorf("imbridge.socket %s=%q, want %q: %s", want.key, got, want.value, want.why)
			}
		} else if len(got) != 1 || got[0] != want.value {
			t.Errorf("imbridge.service %s=%q, want %q: %s", want.key, got, want.value, want.why)
		}
	}
	stop, err := time.ParseDuration(svc.one(t, "Service.TimeoutStopSec"))
	if err != nil {
		t.Fatal(err)
	}
	if stop < serveStopBudget {
		t.Errorf("TimeoutStopSec=%v is shorter than serve's own shutdown budget %v: systemd would SIGKILL a clean stop", stop, serveStopBudget)
	}

	exec := strings.Fields(svc.one(t, "Service.ExecStart"))
	if len(exec) != 4 || exec[1] != "serve" || exec[2] != "--config" {
		t.Fatalf("ExecStart=%q, want BINARY serve --config FILE", exec)
	}
	cfg, err := config.Load(func(string) string { return "" }, "imbridge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(exec[3]) != "imbridge.yaml" {
		t.Errorf("ExecStart reads %s, not the example imbridge.yaml", exec[3])
	}
	if want := "/var/lib/" + svc.one(t, "Service.StateDirectory"); cfg.DataDir != want || svc.one(t, "Service.WorkingDirectory") != want {
		t.Errorf("data_dir %s, WorkingDirectory %s, want both %s (StateDirectory)", cfg.DataDir, svc.one(t, "Service.WorkingDirectory"), want)
	}
	listen := sock.one(t, "Socket.ListenStream")
	if _, _, err := net.SplitHostPort(listen); err != nil || listen != cfg.Listen {
		t.Errorf("ListenStream=%s, listen %s: they must be the same host:port (commands find serve at listen)", listen, cfg.Listen)
	}
}

// The example configuration loads, and names every key with a comment, so
// it cannot fall behind config.Config.
func TestExampleConfigurationHasEveryKeyCommented(t *testing.T) {
	secrets := map[string]string{"IMBRIDGE_PULL_TOKEN": "from-the-env-file"}
	cfg, err := config.Load(func(k string) string { return secrets[k] }, "imbridge.yaml")
	if err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	if err := cfg.RequireServe(); err != nil {
		t.Fatalf("the example with the env file's pull token: %v", err)
	}
	// Its values are the defaults, but for these.
	notDefault := map[string]bool{"data_dir": true, "log.format": true}
	defaults, err := config.Load(func(string) string { return "" }, "")
	if err != nil {
		t.Fatal(err)
	}
	got, want := cfg.Dump(), defaults.Dump()
	for i := 0; i+1 < len(got); i += 2 {
		key := got[i].(string)
		if !notDefault[key] && key != "pull.token" && fmt.Sprint(got[i+1]) != fmt.Sprint(want[i+1]) {
			t.Errorf("imbridge.yaml sets %s to %v, the default is %v: change it (or say why not)", key, got[i+1], want[i+1])
		}
	}
	raw, err := os.ReadFile("imbridge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	commented := map[string]bool{} // key path → has a comment of its own
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + path
			}
			if v.Kind == yaml.MappingNode {
				walk(v, path)
				continue
			}
			commented[path] = k.HeadComment != "" || k.LineComment != "" || v.LineComment != ""
		}
	}
	walk(doc.Content[0], "")
	keys := 0
	for _, line := range strings.Split(config.Keys(), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		keys++
		key := fields[0]
		has, ok := commented[key]
		switch {
		case !ok:
			t.Errorf("%s is missing from imbridge.yaml: add it with its default and a comment", key)
		case !has:
			t.Errorf("%s has no comment in imbridge.yaml", key)
		}
		delete(commented, key)
	}
	for key := range commented {
		t.Errorf("imbridge.yaml sets %s, which is not a configuration key", key) // Load refuses it too
	}
	if keys < 20 {
		t.Fatalf("config.Keys() listed %d keys; its format changed?", keys)
	}
}
