package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/robfig/cron/v3"
)

// CronParser is the one cron dialect imbridge accepts: five fields
// (minute hour day month weekday) or descriptors such as @daily.
var CronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// MinSpoolBytes is the smallest spool.max_bytes accepted.
const MinSpoolBytes = 1 << 20

func (l Loaded) fail(path, format string, args ...any) error {
	return &Error{Key: l.Name(path), Msg: fmt.Sprintf(format, args...)}
}

// validate checks every key; the first problem is returned.
func (l Loaded) validate() error {
	c := l.Config
	if err := checkHostPort(c.Listen); err != nil {
		return l.fail("listen", "%q is not host:port (%v)", c.Listen, err)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		return l.fail("data_dir", "must not be empty")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return l.fail("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return l.fail("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if c.ClickHouse.DSN != "" {
		if err := CheckDSN(c.ClickHouse.DSN); err != nil {
			return l.fail("clickhouse.dsn", "%v", err)
		}
	}
	for _, a := range c.Pull.Allow {
		if _, err := ParsePrefix(a); err != nil {
			return l.fail("pull.allow", "%q is not a CIDR or IP address", a)
		}
	}
	if c.Export.Schedule != "" {
		if _, err := CronParser.Parse(c.Export.Schedule); err != nil {
			return l.fail("export.schedule", "%q is not a cron spec (%v); e.g. \"0 3 * * *\" or @daily", c.Export.Schedule, err)
		}
	}
	if c.Export.MaxFileBytes < 0 {
		return l.fail("export.max_file_bytes", "must not be negative")
	}
	if c.Spool.MaxBytes < MinSpoolBytes {
		return l.fail("spool.max_bytes", "%d is too small: the spool needs at least 1MiB", c.Spool.MaxBytes)
	}
	if c.Spool.DedupWindow < 0 {
		return l.fail("spool.dedup_window", "must not be negative")
	}
	if c.Spool.Retain < 0 {
		return l.fail("spool.retain", "must not be negative")
	}
	if c.Ingest.MaxBodyBytes < 1024 {
		return l.fail("ingest.max_body_bytes", "%d is too small: at least 1KiB", c.Ingest.MaxBodyBytes)
	}
	if c.Metrics.Listen != "" {
		if err := checkHostPort(c.Metrics.Listen); err != nil {
			return l.fail("metrics.listen", "%q is not host:port (%v)", c.Metrics.Listen, err)
		}
	}
	if c.Metrics.AuditInterval < 0 {
		return l.fail("metrics.audit_interval", "must not be negative")
	}
	if c.Debug.PprofListen != "" {
		if err := checkHostPort(c.Debug.PprofListen); err != nil {
			return l.fail("debug.pprof_listen", "%q is not host:port (%v)", c.Debug.PprofListen, err)
		}
	}
	t := c.Sources.Tencent
	if t.Token != "" && t.SDKAppID == "" {
		return l.fail("sources.tencent.sdkappid", "must be set when sources.tencent.token is set: callbacks are checked against it")
	}
	if t.SDKAppID != "" {
		if _, err := strconv.ParseUint(t.SDKAppID, 10, 64); err != nil {
			return l.fail("sources.tencent.sdkappid", "%q is not a number", t.SDKAppID)
		}
	}
	return nil
}

// RequireServe checks what only `serve` needs.
func (l Loaded) RequireServe() error {
	if l.Pull.Token == "" {
		return l.fail("pull.token", "must be set: it is the secret Yunxin presents to GET /v1/pull")
	}
	return nil
}

func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// CheckDSN verifies that dsn names a native-protocol ClickHouse server.
func CheckDSN(dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil {
		// url.Error repeats the whole DSN, password included: say only what is wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("not a URL: %v", err)
	}
	switch u.Scheme {
	case "clickhouse", "tcp":
	case "http", "https":
		return fmt.Errorf("%s:// is the HTTP protocol; imbridge speaks the native protocol: clickhouse://host:9000/db", u.Scheme)
	default:
		return fmt.Errorf("scheme %q is not clickhouse:// (e.g. clickhouse://127.0.0.1:9000/imbridge)", u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("no host (e.g. clickhouse://127.0.0.1:9000/imbridge)")
	}
	return nil
}

// ParsePrefix reads a CIDR, or a bare IP address as a single-address prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
