package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/ClickHouse/ch-go/proto"
)

// nativeRevision is the native protocol revision the block reader speaks:
// ClickHouse 18.16's. A server negotiates down to the lower of its own and
// the client's revision, and every later server still serves clients of
// this one (their handshake code keeps every DBMS_MIN_REVISION_WITH_*
// branch back to 54032).
const nativeRevision = 54412

// blockReader runs one SELECT over a connection of its own and hands the
// result over block by block, decoded by ch-go's proto package into
// columns the caller owns and reuses, with no per-row scan, copy or boxing.
// It exists for the two queries that stream every stored line (export and
// pull): clickhouse-go decodes each block into freshly grown buffers,
// copies every string and scans each row through reflection, which was
// most of the export's CPU. ch-go's own client cannot be used: it sends a
// query's client info only from revision 54420 (its FeatureClientWriteInfo,
// the revision of progress's written rows) while servers expect it from
// 54032, so 18.16 misreads the query packet.
//
// It speaks plain TCP, LZ4-compressed when the driver's connection is
// (servers on other machines, see driverCompression), and knows only what
// a SELECT returns: data, progress, profile info, logs, totals and
// extremes (the last three dropped), exceptions and the end of the stream.
type blockReader struct {
	addr, database, user, password string
	dialTimeout, readTimeout       time.Duration
	compress                       bool
	slots                          chan struct{} // one per query running
	served                         atomic.Uint64 // queries read to their end
}

// newBlockReader is a reader for the server at addr (host:port) running
// at most conns queries at once.
func newBlockReader(addr, database, user, password string, dialTimeout, readTimeout time.Duration, compress bool, conns int) *blockReader {
	if user == "" {
		user = "default" // as the driver
	}
	return &blockReader{addr: addr, database: database, user: user, password: password,
		dialTimeout: dialTimeout, readTimeout: readTimeout, compress: compress, slots: make(chan struct{}, conns)}
}

// loopback reports whether addr's host is this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errReaderBusy is returned when every slot is taken: not a failure.
var errReaderBusy = errors.New("block reader: every slot is in use")

// serverError is an exception ClickHouse sent in answer to a query.
type serverError struct {
	Code    int32
	Name    string
	Message string
}

func (e *serverError) Error() string {
	return fmt.Sprintf("clickhouse [%d] %s: %s", e.Code, e.Name, e.Message)
}

// query runs sql and calls fn after each non-empty block was decoded into
// cols (fn reads the columns; they are overwritten by the next block). The
// columns' names and types must match the SELECT's. started reports
// whether the server accepted the query (a handshake or dial failure
// leaves it false); fn is only ever called once it has.
func (b *blockReader) query(ctx context.Context, sql string, cols proto.Results, fn func(rows int) error) (started bool, err error) {
	// At most as many queries at once as the driver's pool has
	// connections; past that the caller uses the driver. Never waited for:
	// slots are held while fn runs (a pull writing to a slow puller, an
	// export's next window handing over its batches), so a wait could last
	// as long as they do, or for ever when the holder waits on the waiter.
	select {
	case b.slots <- struct{}{}:
		defer func() { <-b.slots }()
	default:
		return false, errReaderBusy
	}
	d := net.Dialer{Timeout: b.dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", b.addr)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, fmt.Errorf("%w: dial %s: %v", ErrUnavailable, b.addr, err)
	}
	defer conn.Close()
	// Cancellation moves the deadline into the past, so a read or write in
	// progress fails at once. setDeadline checks ctx after it moved the
	// deadline forward: a cancellation that came in between is not undone.
	past := time.Unix(1, 0)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(past) })
	defer func() {
		if !stop() || ctx.Err() != nil {
			err = ctx.Err()
		}
	}()
	setDeadline := func(d time.Duration) {
		_ = conn.SetDeadline(time.Now().Add(d))
		if ctx.Err() != nil {
			_ = conn.SetDeadline(past)
		}
	}
	r := proto.NewReader(conn)

	setDeadline(b.dialTimeout) // the handshake: a server that accepts and says nothing is not waited on for long
	var buf proto.Buffer
	proto.ClientHello{Name: "imbridge", Major: 1, ProtocolVersion: nativeRevision,
		Database: b.database, User: b.user, Password: b.password}.Encode(&buf)
	if _, err := conn.Write(buf.Buf); err != nil {
		return false, fmt.Errorf("%w: hello: %v", ErrUnavailable, err)
	}
	code, err := r.UVarInt()
	if err != nil {
		return false, fmt.Errorf("%w: hello: %v", ErrUnavailable, err)
	}
	switch proto.ServerCode(code) {
	case proto.ServerCodeHello:
	case proto.ServerCodeException:
		return false, readException(r)
	default:
		return false, fmt.Errorf("hello: unexpected packet %d", code)
	}
	var hello proto.ServerHello
	if err := hello.DecodeAware(r, nativeRevision); err != nil {
		return false, fmt.Errorf("hello: %w", err)
	}
	rev := min(nativeRevision, hello.Revision)

	compression := proto.CompressionDisabled
	if b.compress {
		compression = proto.CompressionEnabled
	}
	buf.Reset()
	encodeQuery(&buf, rev, sql, conn.LocalAddr().String(), compression)
	proto.ClientCodeData.Encode(&buf) // the empty block that ends the query's (absent) external data
	buf.PutString("")
	start := len(buf.Buf)
	proto.Block{}.EncodeAware(&buf, rev)
	if b.compress { // a compressed query's blocks are compressed both ways
		cw := compress.NewWriter(compress.LevelZero, compress.LZ4)
		if err := cw.Compress(buf.Buf[start:]); err != nil {
			return false, fmt.Errorf("query: %w", err)
		}
		buf.Buf = append(buf.Buf[:start], cw.Data...)
	}
	if _, err := conn.Write(buf.Buf); err != nil {
		return false, fmt.Errorf("%w: query: %v", ErrUnavailable, err)
	}
	// readBlock decodes a block into target; blocks of data, totals and
	// extremes are compressed when the query is, the server's logs never.
	readBlock := func(target proto.Result, compressed bool) (rows int, err error) {
		if _, err := r.Str(); err != nil { // temporary table name
			return 0, fmt.Errorf("%w: block: %v", ErrUnavailable, err)
		}
		if compressed {
			r.EnableCompression()
			defer r.DisableCompression()
		}
		var block proto.Block
		if err := block.DecodeBlock(r, rev, target); err != nil {
			return 0, fmt.Errorf("block: %w", err)
		}
		return block.Rows, nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return started, err
		}
		setDeadline(b.readTimeout)
		code, err := r.UVarInt()
		if err != nil {
			return started, fmt.Errorf("%w: read: %v", ErrUnavailable, err)
		}
		switch proto.ServerCode(code) {
		case proto.ServerCodeData:
			started = true
			rows, err := readBlock(cols, b.compress)
			if err != nil {
				return started, err
			}
			if rows > 0 {
				if err := fn(rows); err != nil {
					return started, err
				}
			}
		case proto.ServerCodeLog, proto.ServerCodeTotals, proto.ServerCodeExtremes:
			// Logs come when the user's profile sets send_logs_level (from
			// revision 54406), before, between and after the data; totals
			// and extremes are not rows (the query asks for no extremes,
			// a profile may still). Read and dropped.
			var skip proto.Results
			if _, err := readBlock(skip.Auto(), b.compress && proto.ServerCode(code) != proto.ServerCodeLog); err != nil {
				return started, fmt.Errorf("packet %d: %w", code, err)
			}
		case proto.ServerCodeProgress:
			started = true
			var p proto.Progress
			if err := p.DecodeAware(r, rev); err != nil {
				return started, fmt.Errorf("progress: %w", err)
			}
		case proto.ServerCodeProfile:
			var p proto.Profile
			if err := p.DecodeAware(r, rev); err != nil {
				return started, fmt.Errorf("profile: %w", err)
			}
		case proto.ServerCodeException:
			return started, readException(r)
		case proto.ServerCodeEndOfStream:
			b.served.Add(1)
			return started, nil
		default:
			return started, fmt.Errorf("unexpected packet %d", code)
		}
	}
}

// encodeQuery writes a Query packet as servers expect it at rev: no
// settings (a SELECT carries its own in a SETTINGS clause), the complete
// stage. localAddr is the connection's own address.
func encodeQuery(buf *proto.Buffer, rev int, sql, localAddr string, compression proto.Compression) {
	proto.ClientCodeQuery.Encode(buf)
	buf.PutString("") // query id: the server makes one
	proto.ClientInfo{
		ProtocolVersion: rev,
		Major:           1,
		Interface:       proto.InterfaceTCP,
		Query:           proto.ClientQueryInitial,
		InitialAddress:  localAddr, // servers parse it as host:port (18.16 asserts on an empty one)
		ClientName:      "imbridge",
	}.EncodeAware(buf, rev)
	buf.PutString("") // end of settings
	proto.StageComplete.Encode(buf)
	compression.Encode(buf)
	buf.PutString(sql)
}

// readException reads an exception and the ones nested in it.
func readException(r *proto.Reader) error {
	var first *serverError
	for {
		code, err := r.Int32()
		if err != nil {
			return fmt.Errorf("%w: exception: %v", ErrUnavailable, err)
		}
		var s [3]string // name, message, stack
		for i := range s {
			if s[i], err = r.Str(); err != nil {
				return fmt.Errorf("%w: exception: %v", ErrUnavailable, err)
			}
		}
		if first == nil {
			first = &serverError{Code: code, Name: s[0], Message: s[1]}
		}
		nested, err := r.Bool()
		if err != nil {
			return fmt.Errorf("%w: exception: %v", ErrUnavailable, err)
		}
		if !nested {
			return first
		}
	}
}

// errStopBlocks, returned by a queryBlocks fn, ends the query early
// without an error (the stream's consumer stopped).
var errStopBlocks = errors.New("block reader: stopped by the caller")

// queryBlocks runs q (its ? bound to args, which must be integers) through
// the block reader with the line streams' settings. done is false when
// the reader cannot serve it, before the server started answering: the
// caller runs q through the driver instead.
func (s *Store) queryBlocks(ctx context.Context, q string, args []any, cols proto.Results, fn func(rows int) error) (done bool, err error) {
	if s.blocks == nil {
		return false, nil
	}
	sql, err := bindIntegers(q, args)
	if err != nil {
		return true, err
	}
	started, err := s.blocks.query(ctx, sql+lineSettingsClause(), cols, fn)
	switch {
	case errors.Is(err, errStopBlocks):
		return true, nil
	case err == nil || started || ctx.Err() != nil:
		return true, err
	}
	if errors.Is(err, errReaderBusy) {
		return false, nil
	}
	var se *serverError
	if errors.As(err, &se) && se.Code != 0 {
		return true, err // the server refused the query itself: the driver would get the same answer
	}
	s.fallback.Do(func() {
		s.logger.Warn("the native block reader failed before the query started; the driver serves instead", "err", err)
	})
	return false, nil
}

// bindIntegers replaces each ? in q with the next of args, each an integer.
func bindIntegers(q string, args []any) (string, error) {
	var b strings.Builder
	for _, a := range args {
		i := strings.IndexByte(q, '?')
		if i < 0 {
			return "", fmt.Errorf("bind: %d args for fewer placeholders", len(args))
		}
		b.WriteString(q[:i])
		switch v := a.(type) {
		case uint64:
			b.WriteString(strconv.FormatUint(v, 10))
		case int64:
			b.WriteString(strconv.FormatInt(v, 10))
		default:
			return "", fmt.Errorf("bind: %T is not an integer", a)
		}
		q = q[i+1:]
	}
	if strings.IndexByte(q, '?') >= 0 {
		return "", errors.New("bind: more placeholders than args")
	}
	b.WriteString(q)
	return b.String(), nil
}

// blockStrings are the strings of one decoded block.
type blockStrings struct {
	buf []byte
	pos []proto.Position
}

// detach takes the strings c decoded, which stay valid for as long as
// anyone holds them: c decodes the next block into a buffer of its own
// (ch-go reuses a column's buffer, and a line may be queued or kept past
// its block). Read them before the next block is decoded.
func detach(c *proto.ColStr) blockStrings {
	b := blockStrings{buf: c.Buf, pos: c.Pos}
	c.Buf = make([]byte, 0, cap(c.Buf))
	return b
}

// at is the i-th string, pointing into the block's buffer (no copy).
func (b blockStrings) at(i int) string {
	p := b.pos[i]
	return unsafe.String(unsafe.SliceData(b.buf[p.Start:]), p.End-p.Start)
}
