// Package store is imbridge's ClickHouse: the connection over the native
// protocol, the versioned schema, the managed local server, and the queries
// every other package needs. The SQL here is the subset that ClickHouse 18.16
// and current releases share: MergeTree with ORDER BY, no DateTime64, no
// LowCardinality, no JSON type, no query parameters (values are bound by the
// driver), and every INSERT names its columns.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ErrUnavailable wraps errors that mean the server could not be reached or
// did not answer; callers retry them.
var ErrUnavailable = errors.New("clickhouse unavailable")

// Store is an open, migrated ClickHouse database.
type Store struct {
	conn     driver.Conn
	database string
	logger   *slog.Logger
	opts     *clickhouse.Options
	mapMu    sync.Mutex   // serialises map load commits (see load.commit)
	blocks   *blockReader // nil when the DSN needs what it does not speak (TLS, several hosts, settings)
	fallback sync.Once    // logs the first time blocks failed and the driver served instead
}

var dbName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Open connects to the server named by dsn (clickhouse://host:port/db),
// creates the database when it is missing and applies the schema migrations.
// Returns an error wrapping ErrUnavailable when the server does not answer.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	s, err := New(dsn, logger)
	if err != nil {
		return nil, err
	}
	if err := s.Prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// New returns a store for dsn without contacting the server; call Prepare
// before using it. serve uses the two steps to start while ClickHouse is
// away.
func New(dsn string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("clickhouse dsn: %w", err)
	}
	db := opts.Auth.Database
	if db == "" {
		db = "imbridge"
	}
	if !dbName.MatchString(db) {
		return nil, fmt.Errorf("clickhouse dsn: database name %q must be letters, digits and _", db)
	}
	opts.DialTimeout = 5 * time.Second
	opts.ReadTimeout = 5 * time.Minute
	opts.MaxOpenConns = 16
	opts.MaxIdleConns = 8
	opts.ConnMaxLifetime = time.Hour
	opts.Compression = driverCompression(dsn, opts)
	// The driver encodes a whole INSERT block into one buffer and compresses
	// it into a second; both stay with the pooled connection at the largest
	// size they reached (10 MiB each by default). Compressing and sending
	// every 1 MiB of encoded columns keeps them near 1 MiB plus one column.
	if opts.MaxCompressionBuffer == 0 { // not in the DSN (max_compression_buffer)
		opts.MaxCompressionBuffer = 1 << 20
	}
	if opts.Settings == nil {
		opts.Settings = clickhouse.Settings{}
	}
	opts.Auth.Database = db
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse open: %w", err)
	}
	s := &Store{conn: conn, database: db, logger: logger, opts: opts}
	if opts.Protocol == clickhouse.Native && opts.TLS == nil && len(opts.Addr) == 1 && len(opts.Settings) == 0 {
		// The block reader speaks plain native TCP to one server and sends
		// no settings; a DSN that needs more is read through the driver.
		s.blocks = newBlockReader(opts.Addr[0], db, opts.Auth.Username, opts.Auth.Password, opts.DialTimeout, opts.ReadTimeout,
			opts.Compression != nil && opts.Compression.Method != clickhouse.CompressionNone, opts.MaxOpenConns)
	}
	return s, nil
}

// driverCompression is the DSN's choice when it makes one (compress=…),
// else LZ4 for servers on other machines and none on loopback (the managed
// server), where compressing every INSERT and every block read only costs
// both sides CPU.
func driverCompression(dsn string, opts *clickhouse.Options) *clickhouse.Compression {
	if u, err := url.Parse(dsn); err == nil && u.Query().Has("compress") {
		return opts.Compression
	}
	for _, a := range opts.Addr {
		if !loopback(a) {
			return &clickhouse.Compression{Method: clickhouse.CompressionLZ4}
		}
	}
	return nil
}

// Prepare creates the database when it is missing and applies the schema
// migrations. Returns an error wrapping ErrUnavailable when the server does
// not answer.
func (s *Store) Prepare(ctx context.Context) error {
	bootOpts := *s.opts
	bootOpts.Auth.Database = ""
	boot, err := clickhouse.Open(&bootOpts)
	if err != nil {
		return fmt.Errorf("clickhouse open: %w", err)
	}
	defer boot.Close()
	if err := boot.Ping(ctx); err != nil {
		return fmt.Errorf("%w: ping %s: %v", ErrUnavailable, strings.Join(s.opts.Addr, ","), err)
	}
	if err := boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+s.database); err != nil {
		return fmt.Errorf("create database %s: %w", s.database, err)
	}
	return s.Migrate(ctx)
}

// Database is the database this store uses.
func (s *Store) Database() string { return s.database }

// Conn exposes the driver connection for queries that belong to one package
// (tests, audits).
func (s *Store) Conn() driver.Conn { return s.conn }

// Ping reports whether the server answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Close closes the connection pool.
func (s *Store) Close() error { return s.conn.Close() }

// WithDatabase returns dsn with its database replaced by db.
func WithDatabase(dsn, db string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", err
	}
	u.Path = "/" + db
	return u.String(), nil
}

// insertRow writes one row through a batch: ClickHouse 18.16 does not accept
// an INSERT with inline VALUES over the native protocol from this driver.
func (s *Store) insertRow(ctx context.Context, insert string, values ...any) error {
	batch, err := s.conn.PrepareBatch(ctx, insert)
	if err != nil {
		return err
	}
	defer batch.Close() // a no-op after Send; ends the query if Send is never reached
	if err := batch.Append(values...); err != nil {
		return err
	}
	return batch.Send()
}

// firstRow scans the first row q returns into dest, with retryRead; ok is
// false when q returns no row.
func (s *Store) firstRow(ctx context.Context, q string, args []any, dest ...any) (ok bool, err error) {
	err = retryRead(ctx, func() error {
		rows, err := s.conn.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		ok = false
		if rows.Next() {
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			ok = true
		}
		return rows.Err()
	})
	return ok, err
}

// retryRead runs an idempotent read, again (up to three tries) when it fails
// on the connection rather than in the server: a pooled connection can be
// found closed, and a read is safe to repeat.
func retryRead(ctx context.Context, read func() error) error {
	var err error
	for try := 0; try < 3; try++ {
		if err = read(); err == nil || ctx.Err() != nil {
			return err
		}
		var exc *clickhouse.Exception
		if errors.As(err, &exc) {
			return err // the server answered: repeating changes nothing
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(try+1) * 50 * time.Millisecond):
		}
	}
	return err
}
