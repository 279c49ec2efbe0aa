package store

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/ClickHouse/ch-go/proto"
)

// SetParentDeathSignal sets the signal a server launched from now on gets
// when its owner dies; 0 makes it outlive its owner, as a server whose
// parent-death signal was lost would. For tests.
func SetParentDeathSignal(sig syscall.Signal) { parentDeathSignal = sig }

// WithoutBlockReader makes s read every stream through the driver, as for a
// DSN the block reader does not serve. For tests of both paths.
func WithoutBlockReader(s *Store) { s.blocks = nil }

// QueryBlocks runs sql through s's block reader. For tests.
func QueryBlocks(ctx context.Context, s *Store, sql string, cols proto.Results, fn func(rows int) error) (started bool, err error) {
	return s.blocks.query(ctx, sql, cols, fn)
}

// BlockReaderAt is a block reader for addr, compressing or not. For tests.
func BlockReaderAt(addr string, compress bool) func(ctx context.Context, sql string, cols proto.Results, fn func(rows int) error) (bool, error) {
	return newBlockReader(addr, "default", "", "", time.Second, time.Minute, compress, 4).query
}

// CompressBlocks makes s's block reader ask for compressed blocks, as it
// does from a server on another machine. For tests.
func CompressBlocks(s *Store) { s.blocks.compress = true }

// Loopback is loopback, for tests.
var Loopback = loopback

// IsServerError reports whether err is an exception ClickHouse sent, and
// its code.
func IsServerError(err error) (int32, bool) {
	var se *serverError
	if errors.As(err, &se) {
		return se.Code, true
	}
	return 0, false
}

// PointBlockReaderAt makes s's block reader dial addr (a server that does
// not speak the protocol, say). For tests of the fallback to the driver.
func PointBlockReaderAt(s *Store, addr string) { s.blocks.addr = addr }

// StreamBlocks runs q as the streams do: its args bound, blocks of at most
// LineBlockRows rows; done is false when the driver should serve instead.
// For tests.
func StreamBlocks(ctx context.Context, s *Store, q string, args []any, cols proto.Results, fn func(rows int) error) (done bool, err error) {
	return s.queryBlocks(ctx, q, args, cols, fn)
}

// LineBlockRows is lineBlockRows, for tests.
const LineBlockRows = lineBlockRows

// HasBlockReader reports whether s streams through the block reader. For
// tests.
func HasBlockReader(s *Store) bool { return s.blocks != nil }

// BlockReaderServed is how many queries s's block reader read to their
// end. For tests that must know the reader, not the driver, served.
func BlockReaderServed(s *Store) uint64 { return s.blocks.served.Load() }
