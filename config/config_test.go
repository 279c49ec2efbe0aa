package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "imbridge.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	l, err := Load(env(nil), "")
	if err != nil {
		t.Fatal(err)
	}
	if l.Listen != "127.0.0.1:8080" || l.DataDir != "./data" || l.ClickHouse.DSN != "" {
		t.Errorf("defaults = %+v", l.Config)
	}
	if got, want := l.ExportDir(), filepath.Join("data", "exports"); got != want {
		t.Errorf("ExportDir() = %q, want %q", got, want)
	}
	if l.Spool.DedupWindow < 24*time.Hour {
		t.Errorf("dedup window %v is shorter than 24h", l.Spool.DedupWindow)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, `
listen: 127.0.0.1:9999
data_dir: /var/lib/imbridge
pull:
  token: from-file
  allow: [10.0.0.0/8, 192.168.1.7]
export:
  max_file_bytes: 64MiB
  gzip: true
sources:
  native:
    token: native-file
`)
	l, err := Load(env(map[string]string{
		"IMBRIDGE_LISTEN":               "0.0.0.0:8081",
		"IMBRIDGE_SOURCES_NATIVE_TOKEN": "native-env",
		"IMBRIDGE_MIGRATION_CUTOFF":     "2026-01-02T03:04:05+08:00",
		"IMBRIDGE_SPOOL_DEDUP_WINDOW":   "48h",
	}), file)
	if err != nil {
		t.Fatal(err)
	}
	for _, test := range []struct {
		name      string
		got, want any
	}{
		{"env beats file", l.Listen, "0.0.0.0:8081"},
		{"file beats default", l.DataDir, "/var/lib/imbridge"},
		{"nested file key", l.Pull.Token, "from-file"},
		{"nested env key", l.Sources.Native.Token, "native-env"},
		{"list from file", strings.Join(l.Pull.Allow, ","), "10.0.0.0/8,192.168.1.7"},
		{"size with unit", l.Export.MaxFileBytes, int64(64 << 20)},
		{"bool", l.Export.Gzip, true},
		{"time", l.Migration.Cutoff.UTC().Format(time.RFC3339), "2026-01-01T19:04:05Z"},
		{"duration", l.Spool.DedupWindow, 48 * time.Hour},
	} {
		if test.got != test.want {
			t.Errorf("%s: got %v, want %v", test.name, test.got, test.want)
		}
	}
}

func TestEnvNames(t *testing.T) {
	for path, want := range map[string]string{
		"listen":                       "IMBRIDGE_LISTEN",
		"data_dir":                     "IMBRIDGE_DATA_DIR",
		"clickhouse.dsn":               "IMBRIDGE_CLICKHOUSE_DSN",
		"pull.token":                   "IMBRIDGE_PULL_TOKEN",
		"migration.cutoff":             "IMBRIDGE_MIGRATION_CUTOFF",
		"export.schedule":              "IMBRIDGE_EXPORT_SCHEDULE",
		"export.max_file_bytes":        "IMBRIDGE_EXPORT_MAX_FILE_BYTES",
		"sources.rongcloud.app_secret": "IMBRIDGE_SOURCES_RONGCLOUD_APP_SECRET",
	} {
		if got := EnvName(path); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", path, got, want)
		}
	}
	// Every documented key exists as a field.
	c := Default()
	have := map[string]bool{}
	for _, f := range fields(&c) {
		have[f.path] = true
	}
	for _, k := range []string{"listen", "data_dir", "clickhouse.dsn", "pull.token", "migration.cutoff",
		"export.schedule", "export.dir", "pull.allow", "spool.max_bytes", "export.max_file_bytes", "export.gzip",
		"sources.native.token", "sources.easemob.secret", "sources.tencent.token", "sources.tencent.sdkappid",
		"sources.rongcloud.app_secret", "sources.yunxin.app_secret"} {
		if !have[k] {
			t.Errorf("key %s is missing", k)
		}
	}
}

func TestValidationErrors(t *testing.T) {
	for _, test := range []struct {
		name string
		env  map[string]string
		file string
		want string
	}{
		{"listen", map[string]string{"IMBRIDGE_LISTEN": "bogus"}, "", `IMBRIDGE_LISTEN: "bogus" is not host:port`},
		{"listen port", map[string]string{"IMBRIDGE_LISTEN": "127.0.0.1:99999"}, "", `IMBRIDGE_LISTEN: "127.0.0.1:99999" is not host:port`},
		{"listen from file", nil, "listen: nope\n", `listen (imbridge.yaml): "nope" is not host:port`},
		{"data_dir", map[string]string{"IMBRIDGE_DATA_DIR": " "}, "", `IMBRIDGE_DATA_DIR: must not be empty`},
		{"log level", map[string]string{"IMBRIDGE_LOG_LEVEL": "loud"}, "", `IMBRIDGE_LOG_LEVEL: "loud" is not one of`},
		{"log format", map[string]string{"IMBRIDGE_LOG_FORMAT": "xml"}, "", `IMBRIDGE_LOG_FORMAT: "xml" is not one of`},
		{"dsn http", map[string]string{"IMBRIDGE_CLICKHOUSE_DSN": "http://127.0.0.1:8123"}, "", `IMBRIDGE_CLICKHOUSE_DSN: http:// is the HTTP protocol`},
		{"dsn scheme", map[string]string{"IMBRIDGE_CLICKHOUSE_DSN": "mysql://x"}, "", `IMBRIDGE_CLICKHOUSE_DSN: scheme "mysql"`},
		{"dsn host", map[string]string{"IMBRIDGE_CLICKHOUSE_DSN": "clickhouse:///db"}, "", `IMBRIDGE_CLICKHOUSE_DSN: no host`},
		{"allow", map[string]string{"IMBRIDGE_PULL_ALLOW": "10.0.0.0/8,not-an-ip"}, "", `IMBRIDGE_PULL_ALLOW: "not-an-ip" is not a CIDR`},
		{"cutoff", map[string]string{"IMBRIDGE_MIGRATION_CUTOFF": "yesterday"}, "", `IMBRIDGE_MIGRATION_CUTOFF: "yesterday" is not an RFC 3339 time`},
		{"schedule", map[string]string{"IMBRIDGE_EXPORT_SCHEDULE": "every day"}, "", `IMBRIDGE_EXPORT_SCHEDULE: "every day" is not a cron spec`},
		{"max file bytes", map[string]string{"IMBRIDGE_EXPORT_MAX_FILE_BYTES": "lots"}, "", `IMBRIDGE_EXPORT_MAX_FILE_BYTES: "lots" is not a size`},
		{"gzip", map[string]string{"IMBRIDGE_EXPORT_GZIP": "perhaps"}, "", `IMBRIDGE_EXPORT_GZIP: "perhaps" is not a boolean`},
		{"spool size", map[string]string{"IMBRIDGE_SPOOL_MAX_BYTES": "1000"}, "", `IMBRIDGE_SPOOL_MAX_BYTES: 1000 is too small`},
		{"dedup window", map[string]string{"IMBRIDGE_SPOOL_DEDUP_WINDOW": "a day"}, "", `IMBRIDGE_SPOOL_DEDUP_WINDOW: "a day" is not a duration`},
		{"body size", map[string]string{"IMBRIDGE_INGEST_MAX_BODY_BYTES": "10"}, "", `IMBRIDGE_INGEST_MAX_BODY_BYTES: 10 is too small`},
		{"tencent app id", map[string]string{"IMBRIDGE_SOURCES_TENCENT_TOKEN": "t"}, "", `IMBRIDGE_SOURCES_TENCENT_SDKAPPID: must be set`},
		{"tencent app id number", map[string]string{"IMBRIDGE_SOURCES_TENCENT_TOKEN": "t", "IMBRIDGE_SOURCES_TENCENT_SDKAPPID": "abc"}, "", `IMBRIDGE_SOURCES_TENCENT_SDKAPPID: "abc" is not a number`},
		{"unknown file key", nil, "lisen: 1.2.3.4:5\n", `lisen (imbridge.yaml): unknown key`},
		{"mapping where value expected", nil, "listen:\n  a: b\n", `listen.a (imbridge.yaml): unknown key`},
	} {
		t.Run(test.name, func(t *testing.T) {
			path := ""
			if test.file != "" {
				path = writeFile(t, test.file)
			}
			_, err := Load(env(test.env), path)
			if err == nil {
				t.Fatalf("Load succeeded, want error %q", test.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			if !strings.HasPrefix(err.Error(), test.want) {
				t.Errorf("error = %q, want prefix %q", err, test.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans several lines", err)
			}
		})
	}
}

func TestRequireServe(t *testing.T) {
	l, err := Load(env(nil), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.RequireServe(); err == nil || !strings.HasPrefix(err.Error(), "IMBRIDGE_PULL_TOKEN: must be set") {
		t.Errorf("RequireServe() = %v", err)
	}
}

func TestDumpMasksSecrets(t *testing.T) {
	l, err := Load(env(map[string]string{
		"IMBRIDGE_PULL_TOKEN":     "s3cret",
		"IMBRIDGE_CLICKHOUSE_DSN": "clickhouse://u:pw@127.0.0.1:9000/db",
	}), "")
	if err != nil {
		t.Fatal(err)
	}
	d := l.Dump()
	for i := 0; i < len(d); i += 2 {
		if s, ok := d[i+1].(string); ok && (strings.Contains(s, "s3cret") || strings.Contains(s, "pw@")) {
			t.Errorf("Dump shows secret %v=%v", d[i], s)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1024": 1024, "1KiB": 1024, "2 MiB": 2 << 20, "1GB": 1e9, "3GiB": 3 << 30} {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5GiB", "GiB", "99999999999TiB"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) succeeded", in)
		}
	}
}
