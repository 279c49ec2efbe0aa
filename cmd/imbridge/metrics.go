package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/imbridge/imbridge/config"
	"github.com/imbridge/imbridge/metrics"
	"github.com/imbridge/imbridge/pipeline"
	"github.com/imbridge/imbridge/store"
)

// startMetrics builds serve's collectors and, with metrics.listen, serves
// /metrics on a listener of its own (then the main listener does not). The
// returned stop closes that listener.
func startMetrics(cfg config.Config, p *pipeline.Pipeline, logger *slog.Logger) (*metrics.Metrics, func(), error) {
	m := metrics.New()
	registerGauges(m, p, cfg, logger)
	if cfg.Metrics.Listen == "" {
		return m, func() {}, nil
	}
	ln, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return nil, nil, &exitError{code: 2, err: fmt.Errorf("metrics.listen: %w", err)}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics listener stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	logger.Info("metrics listening", "addr", ln.Addr().String())
	return m, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// auditGauges reads the gauges only ClickHouse knows (held messages,
// unmapped URLs, where each puller stands) as the pull would see them now.
func auditGauges(p *pipeline.Pipeline, cfg config.Config) func(context.Context) (metrics.AuditSnapshot, error) {
	return func(ctx context.Context) (metrics.AuditSnapshot, error) {
		f := store.LineFilter{UpTo: p.Loader.Watermark()}
		if !cfg.Migration.Cutoff.IsZero() {
			f.MinCreateTime = cfg.Migration.Cutoff.UnixMilli()
		}
		g, err := p.Store.Store.Gauges(ctx, f, "yunxin", 4*metrics.MaxPullers)
		if err != nil {
			return metrics.AuditSnapshot{}, err
		}
		snap := metrics.AuditSnapshot{Held: g.Held, UnmappedURLs: g.UnmappedURLs}
		for _, pp := range g.Pullers {
			snap.Pullers = append(snap.Pullers, metrics.PullerState{Name: pp.Name, Cursor: pp.Cursor, OldestUndelivered: pp.OldestWaiting})
		}
		snap.Pullers = pullerFirst(snap.Pullers, "yunxin")
		return snap, nil
	}
}

// pullerFirst moves the puller named name to the front. The audit gauges
// give puller labels to the first metrics.MaxPullers names they meet, and
// the store lists pullers alphabetically (the default one last when past
// its limit): after a restart, a scrape before the first pull would
// otherwise fold the default puller into "other" for good.
func pullerFirst(ps []metrics.PullerState, name string) []metrics.PullerState {
	for i, p := range ps {
		if p.Name == name {
			copy(ps[1:i+1], ps[:i])
			ps[0] = p
			break
		}
	}
	return ps
}
