package store

import (
	"context"
	"time"
)

// ImportCheckpoint is one row of the imports table: how far an import of
// one file got, and its counts over every run that imported it.
type ImportCheckpoint struct {
	SHA256, Source, Format string
	File                   string
	Size                   int64 // -1: read from a pipe
	RunID                  string
	State                  string // running, done, interrupted, failed
	Lines, Offset          uint64 // every line up to Lines (content bytes up to Offset) is durable
	Records, Messages      uint64
	Stored, Duplicates     uint64
	Recalls, Held, Ignored uint64
	Rejected               uint64
	Error                  string
	StartedAt              time.Time
	UpdatedMS              int64
	Host                   string
}

// Import states.
const (
	ImportRunning     = "running"
	ImportDone        = "done"
	ImportInterrupted = "interrupted"
	ImportFailed      = "failed"
)

const importColumns = `sha256, source, format, file, size, run_id, state, lines, byte_offset, records, messages, stored,
 duplicates, recalls, held, ignored, rejected, error, started_at, updated_ms, host`

// RecordImport writes a checkpoint.
func (s *Store) RecordImport(ctx context.Context, c ImportCheckpoint) (err error) {
	defer wrap(&err, "store.RecordImport(%s, %s)", c.File, c.State)
	return s.insertRow(ctx, "INSERT INTO imports ("+importColumns+")",
		c.SHA256, c.Source, c.Format, c.File, c.Size, c.RunID, c.State, c.Lines, c.Offset, c.Records, c.Messages, c.Stored,
		c.Duplicates, c.Recalls, c.Held, c.Ignored, c.Rejected, c.Error, c.StartedAt.UTC(), c.UpdatedMS, c.Host)
}

// LastImport is the latest checkpoint of a file read as source and format;
// ok is false when it was never imported.
func (s *Store) LastImport(ctx context.Context, sha256, source, format string) (c ImportCheckpoint, ok bool, err error) {
	defer wrap(&err, "store.LastImport(%s)", sha256)
	ok, err = s.firstRow(ctx, "SELECT "+importColumns+` FROM imports
 WHERE sha256 = ? AND source = ? AND format = ? ORDER BY updated_ms DESC, lines DESC LIMIT 1`, []any{sha256, source, format},
		&c.SHA256, &c.Source, &c.Format, &c.File, &c.Size, &c.RunID, &c.State, &c.Lines, &c.Offset,
		&c.Records, &c.Messages, &c.Stored, &c.Duplicates, &c.Recalls, &c.Held, &c.Ignored, &c.Rejected, &c.Error,
		&c.StartedAt, &c.UpdatedMS, &c.Host)
	return c, ok, err
}
