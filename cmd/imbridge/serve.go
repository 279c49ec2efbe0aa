package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/imbridge/imbridge/config"
	"github.com/imbridge/imbridge/handler"
	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/loader"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/metrics"
	"github.com/imbridge/imbridge/spool"
	"github.com/imbridge/imbridge/store"
)

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("serve", "serve [--config FILE]", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv, *cfgPath)
	if err != nil {
		return err
	}
	if err := cfg.RequireServe(); err != nil {
		return &exitError{code: 2, err: err}
	}
	logger := newLogger(cfg.Config, stderr)
	logger.Info("imbridge starting", append([]any{"version", version}, cfg.Dump()...)...)
	if getenv("GOGC") == "" {
		// Ingest allocates per message and keeps little: trading some heap
		// for less collection is measurable on a 2-core machine. GOGC still
		// overrides this.
		debug.SetGCPercent(200)
	}

	// Bind first, so a taken port fails before anything is started.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("%s: %w", cfg.Name("listen"), err)}
	}
	defer ln.Close()

	st, managed, closeStore, err := startStore(ctx, cfg.Config, logger)
	if err != nil {
		return err
	}
	defer closeStore()
	if managed != nil {
		superviseCtx, stopSupervising := context.WithCancel(context.Background())
		supervised := make(chan struct{})
		go func() {
			defer close(supervised)
			managed.Supervise(superviseCtx)
		}()
		defer func() {
			stopSupervising()
			<-supervised
		}()
	}

	sp, err := spool.Open(spool.Options{
		Dir: filepath.Join(cfg.DataDir, "spool"), MaxBytes: cfg.Spool.MaxBytes,
		DedupWindow: cfg.Spool.DedupWindow, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer sp.Close()

	// ClickHouse normally answers now. When it does not (a DSN server that is
	// down) and the spool already knows its last seq, ingest starts anyway and
	// the rest of the start-up waits in the background: a callback that finds
	// imbridge down is lost, one that finds ClickHouse down is not.
	ld := loader.New(sp, st, loader.Options{Logger: logger})
	loadCtx, stopLoading := context.WithCancel(context.Background())
	defer stopLoading()
	prepared := make(chan struct{})
	var startErr atomic.Pointer[error]
	// Wait for a server that may still be starting, unless the spool could
	// take callbacks meanwhile: then one try, and the rest in the background.
	within := 60 * time.Second
	if managed == nil && sp.LastSeq() > 0 {
		within = 0
	}
	err = prepareStore(ctx, st, logger, within)
	switch {
	case err == nil:
		if err := prepareSpool(ctx, logger, sp, st, cfg.Spool.DedupWindow, sp.LastSeq()); err != nil {
			return err
		}
		close(prepared)
	case errors.Is(err, store.ErrUnavailable) && sp.LastSeq() > 0:
		logger.Warn("clickhouse unavailable at start; accepting into the spool and loading once it answers", "err", err)
		lastAtStart := sp.LastSeq()
		go func() {
			backoff := time.Second
			for loadCtx.Err() == nil {
				err := prepareStore(loadCtx, st, logger, 0)
				if err == nil {
					err = prepareSpool(loadCtx, logger, sp, st, cfg.Spool.DedupWindow, lastAtStart)
					if err != nil {
						startErr.Store(&err)
						logger.Error("not loading: the spool and ClickHouse disagree; messages stay in the spool", "err", err)
						return
					}
					close(prepared)
					return
				}
				select {
				case <-loadCtx.Done():
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, 10*time.Second)
			}
		}()
	default:
		return err
	}
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		select {
		case <-prepared:
			ld.Run(loadCtx, 15*time.Second)
		case <-loadCtx.Done():
		}
	}()
	defer func() {
		stopLoading()
		<-loaded
	}()

	m := metrics.New()
	registerGauges(m, sp, ld)
	var allow []netip.Prefix
	for _, a := range cfg.Pull.Allow {
		p, _ := config.ParsePrefix(a)
		allow = append(allow, p)
	}
	h := handler.NewServer(handler.Deps{
		Logger:    logger,
		Metrics:   m,
		Ingest:    ingest.New(sp),
		Lines:     st,
		Watermark: ld.Watermark,
		Ready: func(ctx context.Context) error {
			if e := startErr.Load(); e != nil {
				return *e
			}
			if err := st.Ping(ctx); err != nil {
				return err
			}
			return sp.Healthy()
		},
		Secrets:      handler.Secrets{NativeToken: cfg.Sources.Native.Token},
		Pull:         handler.PullConfig{Token: cfg.Pull.Token, Allow: allow, Cutoff: cfg.Migration.Cutoff},
		MaxBodyBytes: cfg.Ingest.MaxBodyBytes,
	})
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: a pull may stream millions of lines.
	}
	if cfg.Debug.PprofListen != "" {
		go servePprof(cfg.Debug.PprofListen, logger)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String())

	select {
	case <-ctx.Done():
		logger.Info("shutting down: no new requests; answering those in flight")
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("http shutdown incomplete", "err", err)
	}
	stopLoading()
	<-loaded
	logger.Info("stopped", "spooled_not_loaded", ld.Lag())
	return nil
}

// prepareSpool makes new seqs follow what ClickHouse holds and remembers the
// messages received within the de-duplication window, so the window survives
// restarts. lastAtStart is the spool's last seq when the process started: if
// ClickHouse holds a higher one, the two do not belong together.
func prepareSpool(ctx context.Context, logger *slog.Logger, sp *spool.Spool, st *store.Store, window time.Duration, lastAtStart uint64) error {
	started := time.Now()
	max, err := st.MaxSeq(ctx)
	if err != nil {
		return err
	}
	if lastAtStart > 0 && max > lastAtStart {
		return fmt.Errorf("the spool ended at seq %d but ClickHouse holds seq %d: this data_dir belongs to another database", lastAtStart, max)
	}
	if err := sp.SetFloor(max); err != nil {
		return err
	}
	if window <= 0 {
		return nil
	}
	n := 0
	err = st.RecentIdentities(ctx, time.Now().Add(-window), func(id store.Identity) {
		n++
		scene := message.P2P
		if id.Scene == message.Team.String() {
			scene = message.Team
		}
		sp.Remember(message.Identity{Scene: scene, MsgID: id.MsgID, From: id.From, To: id.To, TID: id.TID,
			CreateTime: id.CreateTime}.DedupKey(id.Source))
	})
	if err != nil {
		return err
	}
	logger.Info("de-duplication window restored", "messages", n, "window", window,
		"took", time.Since(started).Round(time.Millisecond), "next_seq", sp.LastSeq()+1)
	return nil
}

func registerGauges(m *metrics.Metrics, sp *spool.Spool, ld *loader.Loader) {
	m.Gauge("imbridge_spool_bytes", "Bytes of spooled records not yet released.", func() float64 { return float64(sp.Stats().Bytes) })
	m.Gauge("imbridge_spool_last_seq", "Seq of the last durable message.", func() float64 { return float64(sp.LastSeq()) })
	m.Counter("imbridge_spool_commits_total", "Fsync'd append batches (group commits).", func() float64 { return float64(sp.Stats().Commits) })
	m.Gauge("imbridge_spool_dedup_keys", "Messages remembered for de-duplication (one to two windows).", func() float64 { return float64(sp.Stats().DedupKeys) })
	m.Counter("imbridge_spool_refused_total", "Messages refused because the spool was full.", func() float64 { return float64(sp.Stats().Refused) })
	m.Gauge("imbridge_loader_watermark", "Highest seq such that every seq up to it is in ClickHouse.", func() float64 { return float64(ld.Watermark()) })
	m.Gauge("imbridge_loader_lag", "Spooled messages not yet in ClickHouse.", func() float64 { return float64(ld.Lag()) })
	m.Counter("imbridge_loader_rows_total", "Rows inserted into messages.", func() float64 { return float64(ld.Stats().Rows) })
	m.Counter("imbridge_loader_failures_total", "Failed load attempts (retried).", func() float64 { return float64(ld.Stats().Failures) })
}

func servePprof(addr string, logger *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	logger.Info("pprof listening", "addr", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		logger.Error("pprof server", "err", err)
	}
}
