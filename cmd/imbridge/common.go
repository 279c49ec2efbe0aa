package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/imbridge/imbridge/config"
	"github.com/imbridge/imbridge/store"
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

// openStore connects to clickhouse.dsn, or starts the managed server under
// <data_dir>/clickhouse when the DSN is empty, and applies the schema. The
// returned stop closes the store and stops a managed server.
func openStore(ctx context.Context, cfg config.Config, logger *slog.Logger) (*store.Store, *store.Managed, func(), error) {
	dsn := cfg.ClickHouse.DSN
	var managed *store.Managed
	if dsn == "" {
		var err error
		managed, err = store.StartManaged(ctx, store.ManagedOptions{
			Dir: filepath.Join(cfg.DataDir, "clickhouse"), Binary: cfg.ClickHouse.Binary, Logger: logger,
		})
		if err != nil {
			return nil, nil, nil, err
		}
		dsn = managed.DSN("imbridge")
	}
	stopManaged := func() {
		if managed != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = managed.Stop(sctx)
		}
	}
	// The server may still be starting or briefly away: retry for a while.
	var st *store.Store
	var err error
	deadline := time.Now().Add(60 * time.Second)
	for {
		octx, cancel := context.WithTimeout(ctx, 15*time.Second)
		st, err = store.Open(octx, dsn, logger)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil || !errors.Is(err, store.ErrUnavailable) {
			break
		}
		logger.Warn("clickhouse not reachable yet; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		stopManaged()
		return nil, nil, nil, fmt.Errorf("clickhouse: %w", err)
	}
	return st, managed, func() {
		_ = st.Close()
		stopManaged()
	}, nil
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
