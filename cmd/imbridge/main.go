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
	code := exitCode(err)
	if code != 0 {
		fmt.Fprintln(os.Stderr, "imbridge:", err)
	}
	stop()
	os.Exit(code)
}

// exitCode is the exit status for run's error (exitStatuses).
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	return 1
}

// exitError carries a specific exit status other than 1 (exitStatuses).
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
  imbridge export  [--config FILE] [--out DIR] [--before TIME] [--after TIME] [--full]
  imbridge import  [--config FILE] --source NAME FILE...   ("-" reads stdin)
  imbridge schema  [--config FILE] [--apply]
  imbridge urlmap  load [--server URL] FILE    CSV old_url,new_url: old media URL → uploaded URL
  imbridge teammap load [--server URL] FILE    CSV source,group_id,tid: provider group → Yunxin tid
  imbridge urlmap  unmapped [--limit N]        media URLs still without a mapping (teammap: held groups)
  imbridge version

Examples:
  imbridge serve --config /etc/imbridge/imbridge.yaml
  imbridge export --before 2026-12-01T00:00:00+08:00
  imbridge import --source easemob 2026112309.gz 2026112310.gz
  imbridge teammap load groups.csv

Run "imbridge COMMAND --help" for a command's flags, examples and
configuration keys; README "Deployment" for systemd and restarts.

` + exitStatuses

// exitStatuses is every exit status of every command (README "Commands").
const exitStatuses = `Exit status:
  0  done
  1  failed: a bad input file, ClickHouse, disk, network, an error answered
     by serve; the message says which
  2  usage or configuration: fix the flag, argument or key the message names
  3  export: another export is writing to the same folder; run it again
     once that one has finished
  4  import: some lines were rejected (listed in the reject file); the
     others were imported
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
		return runMaps(ctx, cmd, rest, getenv, stdout, stderr)
	case "version", "--version", "-version":
		return runVersion(stdout)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError("unknown command %q", cmd)
}
