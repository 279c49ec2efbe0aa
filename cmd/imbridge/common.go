package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"

	"github.com/imbridge/imbridge/config"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// newFlagSet makes a subcommand's flag set whose --help lists its
// examples, flags, exit statuses and every configuration key.
func newFlagSet(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML configuration `file` (environment variables IMBRIDGE_* override it)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: imbridge %s\n", synopsis)
		if ex := examples[name]; ex != "" {
			fmt.Fprintf(stderr, "\nExamples:\n%s", ex)
		}
		fmt.Fprintf(stderr, "\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\n%s\nConfiguration keys (YAML key, environment variable, meaning):\n%s", exitStatuses, config.Keys())
	}
	return fs, cfgPath
}

// examples is what a command's --help shows under "Examples:", by flag set
// name (import carries its own in its synopsis).
var examples = map[string]string{
	"export": `  imbridge export                         # what was stored since the last run, before migration.cutoff
  imbridge export --full                  # the whole stored history again
  imbridge export --before 2026-12-01T00:00:00+08:00 --out /srv/yunxin-stock
`,
	"serve": `  imbridge serve --config /etc/imbridge/imbridge.yaml
  IMBRIDGE_PULL_TOKEN=s3cret IMBRIDGE_SOURCES_NATIVE_TOKEN=t0ken imbridge serve
      # defaults: 127.0.0.1:8080, ./data, a managed clickhouse-server from PATH
  systemctl restart imbridge.service
      # under systemd (deploy/): imbridge.socket stays open, callbacks wait meanwhile
`,
	"schema": `  imbridge schema > schema.sql     # the DDL, to read or to apply by hand
  imbridge schema --apply --config /etc/imbridge/imbridge.yaml
  IMBRIDGE_CLICKHOUSE_DSN=clickhouse://ch1.internal:9000/imbridge imbridge schema --apply
`,
	"urlmap load": `  imbridge urlmap load urls.csv    # lines old_url,new_url, through the running serve
  imbridge urlmap load --server http://10.0.0.5:8080 urls.csv
  imbridge urlmap unmapped | my-uploader | imbridge urlmap load -
`,
	"teammap load": `  imbridge teammap load groups.csv # lines source,group_id,tid, e.g. tencent,@TGS#2J4SZEAEL,900
  imbridge teammap load --server http://10.0.0.5:8080 groups.csv
`,
	"urlmap unmapped": `  imbridge urlmap unmapped --limit 1000 > to-upload.txt
`,
	"teammap unmapped": `  imbridge teammap unmapped       # groups whose messages are held until mapped
`,
}

// parseFlags parses args; a usage error exits with status 2.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: 2, err: err}
	}
	return nil
}

// loadConfig loads the configuration; a bad value is a one-line error with
// exit status 2.
func loadConfig(getenv func(string) string, path string) (config.Loaded, error) {
	cfg, err := config.Load(getenv, path)
	if err != nil {
		return cfg, &exitError{code: 2, err: err}
	}
	return cfg, nil
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runVersion(stdout io.Writer) error {
	fmt.Fprintf(stdout, "imbridge %s\n", version)
	if bi, ok := debug.ReadBuildInfo(); ok {
		fmt.Fprintf(stdout, "go: %s\n", bi.GoVersion)
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision", "vcs.time", "vcs.modified", "GOOS", "GOARCH":
				fmt.Fprintf(stdout, "%s: %s\n", s.Key, s.Value)
			}
		}
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/ClickHouse/clickhouse-go/v2", "github.com/gin-gonic/gin", "github.com/hashicorp/raft-wal", "github.com/robfig/cron/v3":
				fmt.Fprintf(stdout, "%s %s\n", d.Path, d.Version)
			}
		}
	}
	return nil
}

// limitMemory sets a soft limit of soft bytes for the Go runtime unless
// GOMEMLIMIT is set. (The C allocator's arenas are capped when the program
// is loaded: see mallocArenas.) With percent > 0 it also lets the heap grow
// to percent % of the live heap between collections (GOGC's default is
// 100) unless GOGC is set: the soft limit, not this, bounds the heap once
// the live heap is large; it only spares the collector cycles while the
// live heap is small. An operator who sets GOMEMLIMIT (even "off") chose
// the bound, so then the runtime's default percent stays too.
func limitMemory(getenv func(string) string, soft int64, percent int) {
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(soft)
	if percent > 0 && getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
}

// mallocArenas is how many malloc arenas the C allocator may keep (set in
// malloc_cgo.go's constructor, unless MALLOC_ARENA_MAX or GLIBC_TUNABLES'
// glibc.malloc.arena_max is set). The only
// C allocations are pebble's (the de-duplication index's block cache and
// memtables), made from whichever threads the Go scheduler runs; glibc's
// default of eight arenas per core kept about 25 MiB of freed cache blocks
// resident across six arenas during a 10M bulk ingest (README Performance).
const mallocArenas = 2
