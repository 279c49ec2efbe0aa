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

// startStore starts the managed server when clickhouse.dsn is empty and
// returns a store for the configured server without contacting it (see
// prepareStore). The returned stop closes the store and stops a managed server.
func startStore(ctx context.Context, cfg config.Config, logger *slog.Logger) (*store.Store, *store.Managed, func(), error) {
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
	st, err := store.New(dsn, logger)
	if err != nil {
		stopManaged()
		return nil, nil, nil, err
	}
	return st, managed, func() {
		_ = st.Close()
		stopManaged()
	}, nil
}

// prepareStore applies the schema, retrying while the server does not answer
// (it may still be starting) until within has passed.
func prepareStore(ctx context.Context, st *store.Store, logger *slog.Logger, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		octx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := st.Prepare(octx)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil || !errors.Is(err, store.ErrUnavailable) {
			if err != nil {
				return fmt.Errorf("clickhouse: %w", err)
			}
			return nil
		}
		logger.Warn("clickhouse not reachable yet; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// openStore is startStore followed by prepareStore (for 60 s).
func openStore(ctx context.Context, cfg config.Config, logger *slog.Logger) (*store.Store, *store.Managed, func(), error) {
	st, managed, stop, err := startStore(ctx, cfg, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := prepareStore(ctx, st, logger, 60*time.Second); err != nil {
		stop()
		return nil, nil, nil, err
	}
	return st, managed, stop, nil
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
