package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"time"

	"github.com/imbridge/imbridge/config"
	"github.com/imbridge/imbridge/exporter"
	"github.com/imbridge/imbridge/handler"
	"github.com/imbridge/imbridge/listener"
	"github.com/imbridge/imbridge/metrics"
	"github.com/imbridge/imbridge/pipeline"
	"github.com/imbridge/imbridge/tcpack"
)

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("serve", "serve [--config FILE]", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("serve: unexpected argument %q: serve takes only flags (imbridge serve --help)", fs.Arg(0))
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
	// A soft limit: the collector works harder as the heap nears it, so a
	// burst (a backlog catch-up, a large pull) does not grow the process to
	// GOGC's doubling of the live heap. During a 10M bulk ingest the
	// collector then takes about 6 % of a core (README Performance). Below
	// it, 400 %: while the callbacks come one message at a time the live
	// heap is 12–25 MiB, and at GOGC's 100 % the collector ran 18 times a
	// second (README Performance, "the collector under callbacks").
	limitMemory(getenv, 100<<20, 400)

	// Bind first (or take the socket a holder passed down: README
	// Deployment), so a taken port fails before anything is started.
	ln, err := listener.Open(cfg.Listen, cfg.Name("listen"), logger)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer ln.Close()

	p, err := pipeline.Open(ctx, cfg.Config, logger)
	if err != nil {
		return err
	}
	defer p.Close()

	m, stopMetrics, err := startMetrics(cfg.Config, p, logger)
	if err != nil {
		return err
	}
	defer stopMetrics()
	var allow []netip.Prefix
	for _, a := range cfg.Pull.Allow {
		pfx, _ := config.ParsePrefix(a)
		allow = append(allow, pfx)
	}
	sources := enabledSources(cfg.Sources)
	st := p.Store.Store
	h := handler.NewServer(handler.Deps{
		Logger:          logger,
		Metrics:         m,
		Ingest:          p.Ingester,
		Lines:           st,
		Watermark:       p.Loader.Watermark,
		Ready:           p.Ready,
		Sources:         sources,
		Admin:           adminAPI(cfg.Config, p),
		Pull:            handler.PullConfig{Token: cfg.Pull.Token, Allow: allow, Cutoff: cfg.Migration.Cutoff},
		MaxBodyBytes:    cfg.Ingest.MaxBodyBytes,
		SeparateMetrics: cfg.Metrics.Listen != "",
	})
	srv := &http.Server{
		Handler:     h,
		ConnContext: tcpack.ConnContext, // pull follows its response on the connection

		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: a pull may stream millions of lines.
	}
	if cfg.Debug.PprofListen != "" {
		go servePprof(cfg.Debug.PprofListen, logger)
	}
	served := make(chan error, 1)
	go func() { served <- ln.Serve(srv) }()
	logger.Info("listening", ln.Describe()...)

	schedCtx, stopSchedule := context.WithCancel(ctx)
	defer stopSchedule()
	scheduled := make(chan struct{})
	go func() {
		defer close(scheduled)
		if cfg.Export.Schedule != "" {
			scheduleExports(schedCtx, cfg.Config, p, m, logger)
		}
	}()

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
	if err := ln.Shutdown(shutdownCtx, srv); err != nil {
		logger.Warn("http shutdown incomplete", "err", err)
	}
	stopSchedule() // a run going now fails, removes its files and is recorded as failed
	<-scheduled
	p.Close()
	logger.Info("stopped", "spooled_not_loaded", p.Loader.Lag())
	return nil
}

func registerGauges(m *metrics.Metrics, p *pipeline.Pipeline, cfg config.Config, logger *slog.Logger) {
	sp, ld := p.Spool, p.Loader
	m.Gauge("imbridge_spool_bytes", "Bytes of spooled records not yet released.", func() float64 { return float64(sp.Stats().Bytes) })
	m.Gauge("imbridge_spool_unloaded_bytes", "Bytes of spooled records not yet in ClickHouse: what counts against spool.max_bytes.", func() float64 { return float64(sp.Stats().Unloaded) })
	m.Gauge("imbridge_spool_max_bytes", "spool.max_bytes: ingest answers 503 when imbridge_spool_unloaded_bytes reaches it.", func() float64 { return float64(cfg.Spool.MaxBytes) })
	m.Gauge("imbridge_spool_oldest_unloaded_age_seconds", "How long the oldest message not yet in ClickHouse has been waiting; 0 when none waits.", func() float64 {
		if at, ok := ld.OldestUnloaded(); ok {
			return max(0, time.Since(at).Seconds())
		}
		return 0
	})
	m.Gauge("imbridge_spool_last_seq", "Seq of the last durable message.", func() float64 { return float64(sp.LastSeq()) })
	m.Counter("imbridge_spool_commits_total", "Fsync'd append batches (group commits).", func() float64 { return float64(sp.Stats().Commits) })
	m.Gauge("imbridge_spool_dedup_keys", "Messages remembered for de-duplication (an estimate).", func() float64 { return float64(sp.Stats().DedupKeys) })
	m.Counter("imbridge_spool_refused_total", "Messages refused because the spool was full.", func() float64 { return float64(sp.Stats().Refused) })
	m.Gauge("imbridge_loader_watermark", "Highest seq such that every seq up to it is in ClickHouse.", func() float64 { return float64(ld.Watermark()) })
	m.Gauge("imbridge_loader_lag", "Spooled messages not yet in ClickHouse.", func() float64 { return float64(ld.Lag()) })
	m.Counter("imbridge_loader_batches_total", "INSERT batches loaded into ClickHouse (messages and recalls).", func() float64 { return float64(ld.Stats().Inserts) })
	m.Counter("imbridge_loader_rows_total", "Rows inserted into messages.", func() float64 { return float64(ld.Stats().Rows) })
	m.Counter("imbridge_loader_held_total", "Rows inserted held: team messages of a group without a team mapping.", func() float64 { return float64(ld.Stats().Held) })
	m.Counter("imbridge_loader_recalls_total", "Rows inserted into recalls.", func() float64 { return float64(ld.Stats().Recalls) })
	m.Counter("imbridge_loader_errors_total", "Failed load attempts (each is retried).", func() float64 { return float64(ld.Stats().Failures) })
	m.Counter("imbridge_reissued_total", "Messages re-issued because a new mapping changed them.", func() float64 { return float64(p.Reissuer.Copies()) })
	if cfg.Metrics.AuditInterval > 0 {
		m.RegisterAudit(metrics.AuditOptions{Fetch: auditGauges(p, cfg), Interval: cfg.Metrics.AuditInterval, Logger: logger})
	}
}

// adminAPI is the admin API of this serve, nil when admin.token is not set.
func adminAPI(cfg config.Config, p *pipeline.Pipeline) *handler.Admin {
	if cfg.Admin.Token == "" {
		return nil
	}
	st := p.Store.Store
	return &handler.Admin{
		Token: cfg.Admin.Token,
		Status: func(ctx context.Context) any {
			out := map[string]any{
				"version": version, "pid": os.Getpid(), "listen": cfg.Listen, "data_dir": cfg.DataDir,
				"last_seq": p.Spool.LastSeq(), "watermark": p.Loader.Watermark(), "reissued_map_version": p.Reissuer.Done(),
			}
			if p.Store.Managed != nil {
				out["clickhouse"] = map[string]any{"managed": true, "addr": p.Store.Managed.Addr(), "owned": p.Store.Managed.Owned()}
			}
			if err := p.Ready(ctx); err != nil {
				out["not_ready"] = err.Error()
			}
			return out
		},
		PutTeam: st.PutTeamMappings,
		PutURL:  st.PutURLMappings,
		Import:  p.Ingester,
		// The map loaders' CSV files, streamed.
		LoadTeamCSV: serveMapLoad(st, "teammap"),
		LoadURLCSV:  serveMapLoad(st, "urlmap"),
	}
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

// scheduleExports runs the export.schedule cron job until ctx ends.
func scheduleExports(ctx context.Context, cfg config.Config, p *pipeline.Pipeline, m *metrics.Metrics, logger *slog.Logger) {
	ex := newExporter(cfg, p.Store)
	logger.Info("export schedule on", "schedule", cfg.Export.Schedule, "dir", cfg.ExportDir())
	err := exporter.Schedule(ctx, cfg.Export.Schedule, logger, func(ctx context.Context) {
		start := time.Now()
		man, err := ex.Run(ctx, exporter.Request{Trigger: "schedule", Before: cfg.Migration.Cutoff})
		m.ExportDuration.Observe(time.Since(start).Seconds())
		switch {
		case errors.Is(err, exporter.ErrBusy):
			m.ExportRuns.WithLabelValues("busy").Inc()
			logger.Warn("scheduled export skipped", "err", err)
		case err != nil:
			m.ExportRuns.WithLabelValues("failed").Inc()
			logger.Error("scheduled export failed", "err", err)
		default:
			m.ExportRuns.WithLabelValues("ok").Inc()
			m.ExportLines.WithLabelValues("p2p").Add(float64(man.P2P))
			m.ExportLines.WithLabelValues("team").Add(float64(man.Team))
		}
	})
	if err != nil {
		logger.Error("export schedule", "err", err)
	}
}
