package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/imbridge/imbridge/config"
	"github.com/imbridge/imbridge/mapping"
	"github.com/imbridge/imbridge/pipeline"
	"github.com/imbridge/imbridge/store"
)

const mapsUsage = `Usage:
  imbridge urlmap load [--config FILE] [--server URL] FILE     CSV old_url,new_url
  imbridge teammap load [--config FILE] [--server URL] FILE    CSV source,group_id,tid
  imbridge urlmap unmapped [--config FILE] [--limit N]         media URLs still without a mapping
  imbridge teammap unmapped [--config FILE] [--limit N]        groups whose messages are held

FILE "-" reads stdin. A header line naming the columns is optional.
`

// runMaps is `imbridge urlmap …` and `imbridge teammap …`.
func runMaps(ctx context.Context, which string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "load":
		return runMapLoad(ctx, which, args[1:], getenv, stdout, stderr)
	case "unmapped":
		return runUnmapped(ctx, which, args[1:], getenv, stdout, stderr)
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdout, mapsUsage)
		return nil
	}
	fmt.Fprint(stderr, mapsUsage)
	return usageError("%s: the subcommands are load and unmapped", which)
}

// mapKind is what differs between the two maps' commands.
type mapKind struct {
	columns string
	route   string // the admin API's CSV route
	check   func(r io.Reader) error
	load    func(ctx context.Context, st *store.Store, r io.Reader) (store.LoadResult, error)
	effect  string // what a committed version changes
}

var mapKinds = map[string]mapKind{
	"urlmap": {
		columns: "old_url,new_url", route: "/v1/admin/maps/url/csv",
		check: func(r io.Reader) error {
			return mapping.ReadURLCSV(r, func(uint64, store.URLMapping) error { return nil })
		},
		load: func(ctx context.Context, st *store.Store, r io.Reader) (store.LoadResult, error) {
			return mapping.LoadURLCSV(ctx, st, r)
		},
		effect: "delivered messages whose media URL got a mapping are served again (same msgid, new URL)",
	},
	"teammap": {
		columns: "source,group_id,tid", route: "/v1/admin/maps/team/csv",
		check: func(r io.Reader) error {
			return mapping.ReadTeamCSV(r, func(uint64, store.TeamMapping) error { return nil })
		},
		load: func(ctx context.Context, st *store.Store, r io.Reader) (store.LoadResult, error) {
			return mapping.LoadTeamCSV(ctx, st, r)
		},
		effect: "held messages of the newly mapped groups are served, with their tid",
	},
}

// runMapLoad checks a map CSV whole, then loads it as one map version:
// through a running serve (it applies the version at once), else straight
// into ClickHouse (serve applies it when it next starts). The file is read
// as a stream, twice: nothing of a file with a bad line is sent anywhere.
func runMapLoad(ctx context.Context, which string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	kind := mapKinds[which]
	fs, cfgPath := newFlagSet(which+" load", which+" load [--config FILE] [--server URL] FILE   (CSV "+kind.columns+"; - reads stdin)", stderr)
	server := fs.String("server", "", "`URL` of the running serve (default: the listen address)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("%s load: name one CSV file (or - for stdin)", which)
	}
	cfg, err := loadConfig(getenv, *cfgPath)
	if err != nil {
		return err
	}
	name := fs.Arg(0)
	f, err := openMapFile(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := kind.check(f); err != nil {
		return fmt.Errorf("%s load %s: %w", which, name, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}

	c, err := findServe(ctx, cfg.Config, *server)
	if err == nil {
		var res store.LoadResult
		err := c.do(ctx, "POST", kind.route, f, &struct {
			Version *uint64 `json:"version"`
			Entries *uint64 `json:"entries"`
			Changed *uint64 `json:"changed"`
		}{&res.Version, &res.Entries, &res.Changed})
		var he *httpError
		if errors.As(err, &he) && (he.Status == 400 || he.Status == 409) {
			return fmt.Errorf("%s load %s: %s", which, name, he.Msg)
		}
		if err != nil {
			return fmt.Errorf("%s load %s: %w", which, name, err)
		}
		reportLoad(stdout, which, name, res, "through serve at "+c.base+"; serve applies it now: "+kind.effect)
		return nil
	}
	if !errors.Is(err, errServeUnreachable) {
		return err
	}
	unreachable := err
	res, err := loadDirect(ctx, cfg.Config, stderr, func(st *store.Store) (store.LoadResult, error) { return kind.load(ctx, st, f) })
	var bad *store.BadLinesError
	if errors.As(err, &bad) {
		return fmt.Errorf("%s load %s: %w", which, name, bad)
	}
	if err != nil {
		return fmt.Errorf("%s load %s: %w", which, name, err)
	}
	reportLoad(stdout, which, name, res, "directly in ClickHouse ("+unreachable.Error()+"); "+
		"serve applies it when it next starts: "+kind.effect)
	return nil
}

// serveMapLoad is serve's admin API loading a map CSV streamed to it.
func serveMapLoad(st *store.Store, which string) func(ctx context.Context, body io.Reader) (store.LoadResult, error) {
	load := mapKinds[which].load
	return func(ctx context.Context, body io.Reader) (store.LoadResult, error) { return load(ctx, st, body) }
}

// loadDirect loads with no serve running: on the configured ClickHouse, the
// managed one started (then stopped) for the purpose when it is not running.
func loadDirect(ctx context.Context, cfg config.Config, stderr io.Writer, load func(*store.Store) (store.LoadResult, error)) (store.LoadResult, error) {
	st, err := pipeline.OpenStore(ctx, cfg, newLogger(cfg, stderr), 60*time.Second)
	if err != nil {
		return store.LoadResult{}, err
	}
	defer st.Close()
	return load(st.Store)
}

func reportLoad(w io.Writer, which, name string, res store.LoadResult, how string) {
	if res.Changed == 0 {
		fmt.Fprintf(w, "%s load %s: %d entries, every one already mapped so: no new map version (the current one is %d)\n",
			which, name, res.Entries, res.Version)
		return
	}
	fmt.Fprintf(w, "%s load %s: %d entries, %d mappings new or changed: map version %d committed %s\n",
		which, name, res.Entries, res.Changed, res.Version, how)
}

// openMapFile opens name; "-" copies stdin into a temporary file (removed
// at once, kept open), so it can be checked and then loaded.
func openMapFile(name string) (*os.File, error) {
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, &exitError{code: 2, err: err}
		}
		return f, nil
	}
	f, err := os.CreateTemp("", "imbridge-map-*.csv")
	if err != nil {
		return nil, err
	}
	_ = os.Remove(f.Name())
	if _, err := io.Copy(f, os.Stdin); err != nil {
		f.Close()
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// runUnmapped lists what is left to map, tab-separated with a header, the
// most used first: media URLs of stored messages with no URL mapping, or
// groups whose messages are held for want of a team mapping.
func runUnmapped(ctx context.Context, which string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet(which+" unmapped", which+" unmapped [--config FILE] [--limit N]", stderr)
	limit := fs.Int("limit", 0, "list at most `n` rows (0: all)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("%s unmapped: unexpected argument %q", which, fs.Arg(0))
	}
	if *limit < 0 {
		return usageError("%s unmapped: --limit %d is negative", which, *limit)
	}
	cfg, err := loadConfig(getenv, *cfgPath)
	if err != nil {
		return err
	}
	st, err := pipeline.OpenStore(ctx, cfg.Config, newLogger(cfg.Config, stderr), 60*time.Second)
	if err != nil {
		return err
	}
	defer st.Close()
	w := bufio.NewWriter(stdout)
	if which == "urlmap" {
		fmt.Fprintln(w, "old_url\tmessages")
		err = st.UnmappedURLs(ctx, *limit, func(url string, n uint64) error {
			_, err := fmt.Fprintf(w, "%s\t%d\n", tsv(url), n)
			return err
		})
	} else {
		fmt.Fprintln(w, "source\tgroup_id\theld")
		err = st.UnmappedGroups(ctx, *limit, func(source, group string, n uint64) error {
			_, err := fmt.Fprintf(w, "%s\t%s\t%d\n", tsv(source), tsv(group), n)
			return err
		})
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
}

// tsv escapes a field as ClickHouse's TabSeparated format does.
var tsv = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`).Replace
