package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one numbered schema file.
type Migration struct {
	Version    uint32
	Name       string
	Statements []string
}

// Migrations returns the embedded schema migrations in order.
func Migrations() ([]Migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Migration
	for _, n := range names {
		base := strings.TrimPrefix(n, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.ParseUint(num, 10, 32)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number and _", base)
		}
		raw, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: uint32(v), Name: base, Statements: splitStatements(string(raw))})
	}
	return out, nil
}

// SchemaSQL is the whole DDL as `imbridge schema` prints it.
func SchemaSQL() (string, error) {
	ms, err := Migrations()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(migrationsTableDDL + ";\n\n")
	for _, m := range ms {
		fmt.Fprintf(&b, "-- %s\n", m.Name)
		for _, st := range m.Statements {
			b.WriteString(st + ";\n\n")
		}
	}
	return b.String(), nil
}

const migrationsTableDDL = `CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime
)
ENGINE = MergeTree()
ORDER BY version`

// splitStatements cuts a file at semicolons that end a line and drops
// comment-only lines.
func splitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line + "\n")
		if strings.HasSuffix(trimmed, ";") {
			st := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			if st != "" {
				out = append(out, st)
			}
			cur.Reset()
		}
	}
	if st := strings.TrimSpace(cur.String()); st != "" {
		out = append(out, st)
	}
	return out
}

// Migrate applies the migrations not yet recorded in schema_migrations.
// Statements are idempotent (IF NOT EXISTS; an ADD COLUMN whose column
// exists counts as done, since 18.16 has no ADD COLUMN IF NOT EXISTS), so two
// processes migrating at once, or a crash between a statement and its
// record, do no harm.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.conn.Exec(ctx, migrationsTableDDL); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied := map[uint32]bool{}
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("migrate: read applied: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("migrate: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	ms, err := Migrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		for _, st := range m.Statements {
			if err := s.conn.Exec(ctx, st); err != nil && !alreadyApplied(st, err) {
				return fmt.Errorf("migrate %s: %w", m.Name, err)
			}
		}
		if err := s.insertRow(ctx, "INSERT INTO schema_migrations (version, name, applied_at)",
			m.Version, m.Name, time.Now().UTC()); err != nil {
			return fmt.Errorf("migrate %s: record: %w", m.Name, err)
		}
		s.logger.Info("schema migration applied", "migration", m.Name, "database", s.database)
	}
	return nil
}

// alreadyApplied reports whether err says an ALTER … ADD COLUMN found its
// column already there (a migration interrupted before it was recorded, or
// another process applying it at the same time).
func alreadyApplied(stmt string, err error) bool {
	var exc *clickhouse.Exception
	if !errors.As(err, &exc) || !strings.Contains(strings.ToUpper(stmt), "ADD COLUMN") {
		return false
	}
	return strings.Contains(exc.Message, "already exists")
}
