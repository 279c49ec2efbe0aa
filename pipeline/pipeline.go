// Package pipeline assembles imbridge's durable ingest path — the store
// (managed or DSN, schema applied with retry), the spool with its seq floor
// and de-duplication index, the loader and the map re-issue — so that serve
// and the commands that work without a running serve share one way of
// starting and stopping it.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imbridge/imbridge/config"
	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/loader"
	"github.com/imbridge/imbridge/mapping"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/spool"
	"github.com/imbridge/imbridge/store"
)

// Store is an open store: the managed server this process owns or attached
// to (nil with clickhouse.dsn) and the database.
type Store struct {
	*store.Store
	Managed *store.Managed
	stopSup func()
}

// Close closes the connection and, when this process owns the managed
// server, stops it. An attached server is left running.
func (s *Store) Close() {
	if s.stopSup != nil {
		s.stopSup()
	}
	_ = s.Store.Close()
	if s.Managed != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.Managed.Stop(ctx)
	}
}

// StartStore returns the configured store without applying the schema: with
// clickhouse.dsn that server; otherwise the managed server under
// <data_dir>/clickhouse — the one a running serve (or another command)
// owns, attached to, or a new one this process owns. With supervise (serve)
// the managed server is restarted if it dies and taken over if its owner
// goes away; a short command leaves that to serve.
func StartStore(ctx context.Context, cfg config.Config, logger *slog.Logger, supervise bool) (*Store, error) {
	dsn := cfg.ClickHouse.DSN
	var managed *store.Managed
	if dsn == "" {
		var err error
		managed, err = store.OpenManaged(ctx, store.ManagedOptions{
			Dir: filepath.Join(cfg.DataDir, "clickhouse"), Binary: cfg.ClickHouse.Binary, Logger: logger,
		})
		if err != nil {
			return nil, err
		}
		dsn = managed.DSN("imbridge")
	}
	st, err := store.New(dsn, logger)
	if err != nil {
		if managed != nil {
			_ = managed.Stop(context.Background())
		}
		return nil, err
	}
	s := &Store{Store: st, Managed: managed}
	if managed != nil && supervise {
		supCtx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			managed.Supervise(supCtx)
		}()
		s.stopSup = func() {
			stop()
			<-done
		}
	}
	return s, nil
}

// OpenStore is StartStore followed by applying the schema, retrying for up
// to within while the server does not answer yet.
func OpenStore(ctx context.Context, cfg config.Config, logger *slog.Logger, within time.Duration) (*Store, error) {
	s, err := StartStore(ctx, cfg, logger, false)
	if err != nil {
		return nil, err
	}
	if err := Prepare(ctx, s.Store, logger, within); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Prepare applies the schema, retrying while the server does not answer (it
// may still be starting) until within has passed.
func Prepare(ctx context.Context, st *store.Store, logger *slog.Logger, within time.Duration) error {
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

// Pipeline is the running ingest path.
type Pipeline struct {
	Store    *Store
	Spool    *spool.Spool
	Ingester *ingest.Ingester
	Loader   *loader.Loader
	Reissuer *mapping.Reissuer

	logger   *slog.Logger
	startErr atomic.Pointer[error]
	prepared chan struct{}
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closed   sync.Once
}

// Open starts the store and the spool and, once ClickHouse answers, the
// loader and the re-issue. ClickHouse normally answers at once; when it
// does not (a clickhouse.dsn server that is down) and the spool already knows
// its last seq, Open returns anyway and the rest of the start-up waits in the
// background: a callback that finds imbridge down is lost, one that finds
// ClickHouse down is not.
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Pipeline, error) {
	st, err := StartStore(ctx, cfg, logger, true)
	if err != nil {
		return nil, err
	}
	sp, err := spool.Open(spool.Options{
		Dir: filepath.Join(cfg.DataDir, "spool"), MaxBytes: cfg.Spool.MaxBytes,
		DedupWindow: cfg.Spool.DedupWindow, Logger: logger,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	// Load at once, without waiting for a fuller batch, once a quarter of
	// the spool is in use: a small spool under load must not fill up.
	urgentAt := cfg.Spool.MaxBytes / 4
	opts := loader.Options{Logger: logger, Retain: cfg.Spool.Retain, Urgent: func() bool { return sp.Stats().Unloaded >= urgentAt }}
	if st.Managed != nil {
		opts.Durable = syncfs(filepath.Join(cfg.DataDir, "clickhouse"))
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p := &Pipeline{
		Store: st, Spool: sp, Ingester: ingest.New(sp), logger: logger,
		prepared: make(chan struct{}), cancel: cancel,
	}
	p.Loader = loader.New(sp, st, mapping.NewSnapshots(st), opts)
	p.Reissuer = mapping.NewReissuer(st, p.Ingester, p.Loader.Rendered, logger, time.Second, int(min(cfg.Spool.MaxBytes/4, 8<<20)))

	lastAtStart := sp.LastSeq()
	within := 60 * time.Second
	if st.Managed == nil && lastAtStart > 0 {
		within = 0 // the spool takes callbacks meanwhile
	}
	err = Prepare(ctx, st.Store, logger, within)
	switch {
	case err == nil:
		if err := prepareSpool(ctx, logger, sp, st.Store, cfg.Spool.DedupWindow, lastAtStart); err != nil {
			cancel()
			_ = sp.Close()
			st.Close()
			return nil, err
		}
		close(p.prepared)
	case errors.Is(err, store.ErrUnavailable) && lastAtStart > 0:
		logger.Warn("clickhouse unavailable at start; accepting into the spool and loading once it answers", "err", err)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.prepareLater(runCtx, st.Store, sp, cfg.Spool.DedupWindow, lastAtStart)
		}()
	default:
		cancel()
		_ = sp.Close()
		st.Close()
		return nil, err
	}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		select {
		case <-p.prepared:
			p.Loader.Run(runCtx, 15*time.Second)
		case <-runCtx.Done():
		}
	}()
	go func() {
		defer p.wg.Done()
		select {
		case <-p.prepared:
			p.Reissuer.Run(runCtx)
		case <-runCtx.Done():
		}
	}()
	return p, nil
}

func (p *Pipeline) prepareLater(ctx context.Context, st *store.Store, sp *spool.Spool, window time.Duration, lastAtStart uint64) {
	backoff := time.Second
	for ctx.Err() == nil {
		err := Prepare(ctx, st, p.logger, 0)
		if err == nil {
			if err := prepareSpool(ctx, p.logger, sp, st, window, lastAtStart); err != nil {
				p.startErr.Store(&err)
				p.logger.Error("not loading: the spool and ClickHouse disagree; messages stay in the spool", "err", err)
				return
			}
			close(p.prepared)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// Ready is nil when ClickHouse answers and the spool takes messages; else
// every reason it is not, joined (errors.Join), for /readyz to list.
func (p *Pipeline) Ready(ctx context.Context) error {
	var reasons []error
	if e := p.startErr.Load(); e != nil {
		reasons = append(reasons, *e)
	}
	if err := p.Store.Ping(ctx); err != nil {
		reasons = append(reasons, fmt.Errorf("clickhouse does not answer: %w", err))
	}
	select {
	case <-p.prepared:
	default:
		reasons = append(reasons, errors.New("starting: the schema and the spool's seq floor are not prepared yet"))
	}
	if err := p.Spool.Healthy(); err != nil {
		reasons = append(reasons, err)
	}
	return errors.Join(reasons...)
}

// Close stops the re-issue and the loader (which loads what it can within
// 15 s; the rest stays spooled), closes the spool and the store.
func (p *Pipeline) Close() {
	p.closed.Do(func() {
		p.cancel()
		p.wg.Wait()
		_ = p.Spool.Close()
		p.Store.Close()
	})
}

// prepareSpool makes new seqs follow what ClickHouse holds and, when the
// spool's de-duplication index is new (a fresh data_dir), rebuilds it from
// the messages received within the window. lastAtStart is the spool's last
// seq when the process started: if ClickHouse holds a higher one, the two do
// not belong together.
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
	if window <= 0 || !sp.DedupIndexIsNew() {
		return nil
	}
	n := 0
	keys := make([]message.DedupKey, 0, 4096)
	var rememberErr error
	remember := func() {
		if rememberErr == nil && len(keys) > 0 {
			rememberErr = sp.Remember(keys...)
		}
		keys = keys[:0]
	}
	if max > 0 {
		err = st.RecentIdentities(ctx, time.Now().Add(-window), func(source string, id message.Identity) {
			n++
			keys = append(keys, id.DedupKey(source))
			if len(keys) == cap(keys) {
				remember()
			}
		})
		if err != nil {
			return err
		}
		remember()
		if rememberErr != nil {
			return fmt.Errorf("rebuilding the de-duplication index: %w", rememberErr)
		}
	}
	if err := sp.DedupIndexRebuilt(); err != nil {
		return err
	}
	if max > 0 {
		logger.Info("de-duplication index rebuilt from ClickHouse (new index)", "messages", n, "window", window,
			"took", time.Since(started).Round(time.Millisecond), "next_seq", sp.LastSeq()+1)
	}
	return nil
}

// syncfs makes everything written to the filesystem holding dir durable: the
// managed ClickHouse writes its parts without fsync. It gives up waiting when
// ctx ends (the sync itself goes on in the background).
func syncfs(dir string) func(context.Context) error {
	return func(ctx context.Context) error {
		done := make(chan error, 1)
		go func() {
			fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				done <- fmt.Errorf("syncfs %s: %w", dir, err)
				return
			}
			defer unix.Close(fd)
			if err := unix.Syncfs(fd); err != nil {
				done <- fmt.Errorf("syncfs %s: %w", dir, err)
				return
			}
			done <- nil
		}()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return fmt.Errorf("syncfs %s: %w", dir, ctx.Err())
		}
	}
}
