package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runForTest(args []string, env map[string]string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	if err != nil {
		errOut.WriteString("imbridge: " + err.Error() + "\n")
	}
	return exitCode(err), out.String(), errOut.String()
}

// Every command's --help shows examples of itself and the exit statuses,
// and exits 0.
func TestEveryCommandHelpShowsExamples(t *testing.T) {
	for _, cmd := range [][]string{
		{"serve"}, {"export"}, {"import"}, {"schema"},
		{"urlmap", "load"}, {"teammap", "load"}, {"urlmap", "unmapped"}, {"teammap", "unmapped"},
	} {
		name := strings.Join(cmd, " ")
		code, stdout, stderr := runForTest(append(cmd, "--help"), nil)
		help := stdout + stderr
		if code != 0 {
			t.Errorf("%s --help: exit status %d, want 0:\n%s", name, code, help)
		}
		if !strings.Contains(help, "Examples:\n  imbridge "+name) {
			t.Errorf("%s --help shows no example of %q:\n%s", name, "imbridge "+name, help)
		}
		if !strings.Contains(help, "Exit status:") {
			t.Errorf("%s --help does not list the exit statuses", name)
		}
	}
	code, stdout, _ := runForTest([]string{"--help"}, nil)
	if code != 0 || !strings.Contains(stdout, "Examples:\n  imbridge serve") || !strings.Contains(stdout, "\n  2  usage or configuration") {
		t.Errorf("imbridge --help: exit status %d, want 0, examples and exit statuses:\n%s", code, stdout)
	}
}

// A usage or configuration error exits 2 with one line saying what to fix.
// (Exit 3, export busy, needs ClickHouse: test/commands_test.go.)
func TestUsageAndConfigurationErrorsExit2(t *testing.T) {
	for _, test := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "no command given"},
		{[]string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{[]string{"serve", "--bogus"}, nil, "flag provided but not defined: -bogus"},
		{[]string{"serve", "now"}, nil, `serve: unexpected argument "now"`},
		{[]string{"serve"}, nil, "IMBRIDGE_PULL_TOKEN: must be set"},
		{[]string{"serve"}, map[string]string{"IMBRIDGE_PULL_TOKEN": "x", "IMBRIDGE_SPOOL_MAX_BYTES": "lots"}, `IMBRIDGE_SPOOL_MAX_BYTES: "lots" is not a size`},
		{[]string{"schema", "--config", "/nonexistent/imbridge.yaml"}, nil, "config file: open /nonexistent/imbridge.yaml"},
		{[]string{"schema", "--apply", "now"}, nil, `schema: unexpected argument "now"`},
		{[]string{"export", "--before", "soon"}, nil, `--before "soon" is not an RFC 3339 time`},
		{[]string{"import"}, nil, "--source"},
		{[]string{"urlmap", "forget"}, nil, "urlmap: the subcommands are"},
	} {
		code, _, stderr := runForTest(test.args, test.env)
		last := lastLine(stderr)
		if code != 2 || !strings.HasPrefix(last, "imbridge: ") || !strings.Contains(last, test.want) {
			t.Errorf("imbridge %q: exit status %d, last line %q; want 2 and a line containing %q", test.args, code, last, test.want)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
