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

// newFlagSet makes a subcommand's flag set whose --help lists its flags and
// every configuration key.
func newFlagSet(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML configuration `file` (environment variables IMBRIDGE_* override it)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: imbridge %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nConfiguration keys (YAML key, environment variable, meaning):\n%s", config.Keys())
	}
	return fs, cfgPath
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
