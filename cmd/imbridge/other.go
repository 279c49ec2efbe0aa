package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/imbridge/imbridge/pipeline"
	"github.com/imbridge/imbridge/store"
)

// errNotYet marks commands whose issue has not landed yet; they parse their
// flags and configuration so scripts can be written against them.
var errNotYet = errors.New("not yet implemented in this version")

func runSchema(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("schema", "schema [--config FILE] [--apply]", stderr)
	apply := fs.Bool("apply", false, "apply the migrations to the configured ClickHouse (managed or clickhouse.dsn) instead of printing them")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv, *cfgPath)
	if err != nil {
		return err
	}
	if !*apply {
		sql, err := store.SchemaSQL()
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, sql)
		return err
	}
	logger := newLogger(cfg.Config, stderr)
	// Beside a running serve this attaches to the managed ClickHouse it owns
	// (migrations are idempotent); alone it starts and then stops its own.
	st, err := pipeline.OpenStore(ctx, cfg.Config, logger, 60*time.Second)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintf(stdout, "schema applied to database %s\n", st.Database())
	return nil
}

func runImport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("import", "import [--config FILE] --source NAME FILE...", stderr)
	source := fs.String("source", "", "`name` of the provider whose history files these are (native, easemob, tencent, rongcloud, yunxin)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *source == "" {
		return usageError("import: --source is required")
	}
	if fs.NArg() == 0 {
		return usageError("import: name at least one FILE (or - for stdin)")
	}
	if _, err := loadConfig(getenv, *cfgPath); err != nil {
		return err
	}
	return fmt.Errorf("import: %w", errNotYet)
}

func runMapLoad(ctx context.Context, which string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet(which, which+" load [--config FILE] FILE", stderr)
	if len(args) == 0 || args[0] != "load" {
		fs.Usage()
		return usageError("%s: the only subcommand is load", which)
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("%s load: name one CSV file", which)
	}
	if _, err := loadConfig(getenv, *cfgPath); err != nil {
		return err
	}
	return fmt.Errorf("%s load: %w", which, errNotYet)
}
