package store

import "github.com/ClickHouse/clickhouse-go/v2"

// DriverCompresses reports whether s's driver connections compress (a
// Compression with a method other than none). For the second review.
func DriverCompresses(s *Store) bool {
	return s.opts.Compression != nil && s.opts.Compression.Method != clickhouse.CompressionNone
}
