// Command imbridge carries an IM app's message history from its old provider
// to NetEase Yunxin: it ingests provider callbacks durably, serves Yunxin's
// incremental pull, and writes stock-history exports.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return
	}
	fmt.Fprintln(os.Stderr, "imbridge:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(1)
}

// exitError carries a specific exit status: 2 for usage and configuration
// errors.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

const usage = `imbridge carries an IM app's message history to NetEase Yunxin.

Usage:
  imbridge serve   [--config FILE]   callbacks, pull, health, metrics, cron exports
  imbridge export  [--config FILE] [--out DIR] [--before TIME] [--after TIME]
  imbridge import  [--config FILE] --source NAME FILE...   ("-" reads stdin)
  imbridge schema  [--config FILE] [--apply]
  imbridge urlmap load FILE | imbridge teammap load FILE
  imbridge version

Run "imbridge COMMAND --help" for a command's flags and configuration keys.
`

// run is the whole program; main only wires it to the process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "export":
		return runExport(ctx, rest, getenv, stdout, stderr)
	case "import":
		return runImport(ctx, rest, getenv, stdout, stderr)
	case "schema":
		return runSchema(ctx, rest, getenv, stdout, stderr)
	case "urlmap", "teammap":
		return runMapLoad(ctx, cmd, rest, getenv, stdout, stderr)
	case "version", "--version", "-version":
		return runVersion(stdout)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError("unknown command %q", cmd)
}
