// Package config loads imbridge's configuration: defaults, then a YAML file,
// then IMBRIDGE_* environment variables (the environment wins), then
// validation. Every key has exactly one environment name: IMBRIDGE_ followed by
// the key's path in upper case joined by "_" (data_dir → IMBRIDGE_DATA_DIR,
// sources.native.token → IMBRIDGE_SOURCES_NATIVE_TOKEN).
package config

import (
	"time"
)

// Config is the effective configuration of one imbridge process. Fields tagged
// secret:"true" are never printed by Dump.
type Config struct {
	Listen     string     `yaml:"listen" help:"HTTP address (host:port)"`
	DataDir    string     `yaml:"data_dir" help:"spool, managed ClickHouse and exports live here"`
	Log        Log        `yaml:"log"`
	ClickHouse ClickHouse `yaml:"clickhouse"`
	Pull       Pull       `yaml:"pull"`
	Migration  Migration  `yaml:"migration"`
	Export     Export     `yaml:"export"`
	Spool      Spool      `yaml:"spool"`
	Ingest     Ingest     `yaml:"ingest"`
	Sources    Sources    `yaml:"sources"`
	Admin      Admin      `yaml:"admin"`
	Metrics    Metrics    `yaml:"metrics"`
	Debug      Debug      `yaml:"debug"`
}

// Metrics configures GET /metrics.
type Metrics struct {
	Listen        string        `yaml:"listen" help:"serve /metrics on this host:port instead of the main listener (so it need not face the providers); empty = on listen"`
	AuditInterval time.Duration `yaml:"audit_interval" help:"how often, at most, /metrics recomputes the gauges that need a ClickHouse query (held messages, unmapped URLs, puller positions); 0 = never"`
}

// Admin configures the admin API through which commands reach a running
// serve (imports, map loads).
type Admin struct {
	Token string `yaml:"token" secret:"true" help:"bearer token of the admin API (/v1/admin/…) that commands use to reach a running serve; empty = admin API disabled"`
}

// Debug holds diagnostics that are off by default.
type Debug struct {
	PprofListen string `yaml:"pprof_listen" help:"serve net/http/pprof on this loopback host:port; empty = off"`
}

// Log configures the process logger.
type Log struct {
	Level  string `yaml:"level" help:"debug, info, warn or error"`
	Format string `yaml:"format" help:"text or json"`
}

// ClickHouse says where the store is. An empty DSN means a managed local
// clickhouse-server under <data_dir>/clickhouse.
type ClickHouse struct {
	DSN    string `yaml:"dsn" secret:"true" help:"clickhouse://host:9000/db (native protocol); empty = managed local server"`
	Binary string `yaml:"binary" help:"clickhouse-server binary for the managed server; empty = look it up on PATH"`
}

// Pull configures GET /v1/pull.
type Pull struct {
	Token string   `yaml:"token" secret:"true" help:"secret the puller presents"`
	Allow []string `yaml:"allow" help:"CIDRs allowed to pull (comma-separated in the environment); empty = any"`
}

// Migration holds the agreed migration moment.
type Migration struct {
	Cutoff time.Time `yaml:"cutoff" help:"RFC 3339: export takes messages created before it, pull those at or after it"`
}

// Export configures stock exports.
type Export struct {
	Schedule     string `yaml:"schedule" help:"cron spec for stock exports; empty = none"`
	Dir          string `yaml:"dir" help:"where export runs are written; empty = <data_dir>/exports"`
	MaxFileBytes int64  `yaml:"max_file_bytes" help:"split export files past this size; 0 = no split"`
	Gzip         bool   `yaml:"gzip" help:"gzip export files"`
}

// Spool configures the durable write-ahead spool between ingest and ClickHouse.
type Spool struct {
	MaxBytes    int64         `yaml:"max_bytes" help:"disk the spool may use before ingest answers 503"`
	DedupWindow time.Duration `yaml:"dedup_window" help:"a source message delivered again within this window (by callback or import) is stored once; on disk, so days are fine"`
	Retain      time.Duration `yaml:"retain" help:"with clickhouse.dsn, how long loaded messages stay in the spool (ClickHouse does not fsync its parts; the managed server is synced instead)"`
}

// Ingest configures the callback endpoints.
type Ingest struct {
	MaxBodyBytes int64 `yaml:"max_body_bytes" help:"largest accepted callback body (after decompression)"`
}

// Sources holds one block per provider. A source whose secret is empty is
// disabled and its route answers 404.
type Sources struct {
	Native    Native    `yaml:"native"`
	Easemob   Easemob   `yaml:"easemob"`
	Tencent   Tencent   `yaml:"tencent"`
	RongCloud RongCloud `yaml:"rongcloud"`
	Yunxin    Yunxin    `yaml:"yunxin"`
}

// Native is the app's own backend posting Yunxin lines.
type Native struct {
	Token string `yaml:"token" secret:"true" help:"bearer token for /v1/callbacks/native"`
}

// Easemob is the Easemob / Agora Chat callback rule.
type Easemob struct {
	Secret  string        `yaml:"secret" secret:"true" help:"callback rule secret"`
	MaxSkew time.Duration `yaml:"max_skew" help:"refuse callbacks whose signed timestamp is further than this from now; 0 = no check"`
}

// Tencent is the Tencent IM callback.
type Tencent struct {
	Token    string        `yaml:"token" secret:"true" help:"callback authentication token"`
	SDKAppID string        `yaml:"sdkappid" help:"the app's SdkAppid; callbacks for other apps are refused"`
	MaxSkew  time.Duration `yaml:"max_skew" help:"refuse callbacks whose RequestTime is further than this from now; 0 = no check"`
}

// RongCloud is the RongCloud message routing.
type RongCloud struct {
	AppSecret string        `yaml:"app_secret" secret:"true" help:"app secret"`
	MaxSkew   time.Duration `yaml:"max_skew" help:"refuse callbacks whose signTimestamp is further than this from now; 0 = no check"`
}

// Yunxin is the Yunxin 抄送 (message copy).
type Yunxin struct {
	AppSecret string        `yaml:"app_secret" secret:"true" help:"app secret (CheckSum)"`
	MaxSkew   time.Duration `yaml:"max_skew" help:"refuse 抄送 whose CurTime is further than this from now; 0 = no check"`
}

// Default returns the configuration before any file or environment is read.
func Default() Config {
	return Config{
		Listen:  "127.0.0.1:8080",
		DataDir: "./data",
		Log:     Log{Level: "info", Format: "text"},
		Spool: Spool{
			MaxBytes:    4 << 30,
			DedupWindow: 8 * 24 * time.Hour, // Tencent keeps history files 7 days: an import of the oldest still meets its callbacks
			Retain:      2 * time.Minute,
		},
		Ingest:  Ingest{MaxBodyBytes: 32 << 20},
		Metrics: Metrics{AuditInterval: 5 * time.Minute},
		Sources: Sources{
			Easemob:   Easemob{MaxSkew: 10 * time.Minute},
			Tencent:   Tencent{MaxSkew: 5 * time.Minute},
			RongCloud: RongCloud{MaxSkew: 5 * time.Minute},
			Yunxin:    Yunxin{MaxSkew: 5 * time.Minute},
		},
	}
}

// ExportDir is export.dir, or <data_dir>/exports when it is empty.
func (c Config) ExportDir() string {
	if c.Export.Dir != "" {
		return c.Export.Dir
	}
	return joinPath(c.DataDir, "exports")
}
