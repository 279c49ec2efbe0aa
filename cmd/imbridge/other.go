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

func runSchema(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("schema", "schema [--config FILE] [--apply]", stderr)
	apply := fs.Bool("apply", false, "apply the migrations to the configured ClickHouse (managed or clickhouse.dsn) instead of printing them")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("schema: unexpected argument %q: schema takes only flags (imbridge schema --help)", fs.Arg(0))
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

// errNotYet marks commands whose issue has not landed yet; they parse their
// flags and configuration so scripts can be written against them.
var errNotYet = errors.New("not yet implemented in this version")
