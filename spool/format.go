package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hashicorp/raft"

	"github.com/imbridge/imbridge/message"
)

// On-disk format, version 2.
//
//	<dir>/FORMAT             "imbridge spool format 2\n", written when the spool is created
//	<dir>/LOCK               flock'd by the process that has the spool open
//	<dir>/wal-meta.db, *.wal raft-wal: segments of CRC-checked frames
//	<dir>/dedup/             pebble de-duplication index (see dedup.go)
//
// Each record is one raft-wal log entry (its BinaryCodec) whose Index is the
// record's seq:
//
//	Data:       flags (1 byte) | de-duplication key (16 bytes) | row
//	Extensions: offset (8 bytes, big-endian)
//
// offset is the number of bytes of every record spooled before this one, a
// record's size being len(Data)+len(Extensions). The bytes a spool holds are
// therefore end(last) − offset(first), read from two headers whatever the
// number of records. Version 1 (no FORMAT file) stored key | row only.
const (
	formatVersion = 2
	formatFile    = "FORMAT"
	formatPrefix  = "imbridge spool format "

	// flagReissue marks a re-issued copy of a stored message: never
	// de-duplicated nor remembered.
	flagReissue byte = 1 << 0
	knownFlags       = flagReissue

	dataHeader = 1 + len(message.DedupKey{}) // flags | key, before the row
	offsetLen  = 8                           // the Extensions field
	// RecordOverhead is what a record occupies in the spool besides its row:
	// Stats.Bytes is the sum of RecordOverhead+len(row) over spooled records.
	RecordOverhead = dataHeader + offsetLen
)

// ErrOldFormat is returned by Open for a spool directory written by an
// earlier imbridge that still holds records.
var ErrOldFormat = errors.New("spool written by an earlier imbridge")

// Record is one message to spool: its de-duplication key and its encoded
// row, laid out as the log stores it. Make one with NewRecord or NewReissue.
type Record struct {
	Key   message.DedupKey
	entry []byte // flags | Key | row
}

// NewRecord builds a record in one allocation: fill appends the row to the
// slice it is given (about sizeHint bytes are reserved for it).
func NewRecord(key message.DedupKey, sizeHint int, fill func(dst []byte) []byte) Record {
	return newRecord(0, key, sizeHint, fill)
}

// NewReissue builds a record that is never de-duplicated nor remembered: a
// re-issued copy of a message already stored (same identity, so the same
// key, under a new seq). It is always accepted when there is room, and it
// neither makes a later record with its key a duplicate nor extends how long
// the key is remembered.
func NewReissue(key message.DedupKey, sizeHint int, fill func(dst []byte) []byte) Record {
	return newRecord(flagReissue, key, sizeHint, fill)
}

func newRecord(flags byte, key message.DedupKey, sizeHint int, fill func(dst []byte) []byte) Record {
	b := make([]byte, dataHeader, dataHeader+sizeHint)
	b[0] = flags
	copy(b[1:], key[:])
	return Record{Key: key, entry: fill(b)}
}

// Data is the record's row.
func (r Record) Data() []byte { return r.entry[dataHeader:] }

// Reissue reports whether the record was made with NewReissue.
func (r Record) Reissue() bool { return r.entry[0]&flagReissue != 0 }

// size is what the record occupies in the spool.
func (r Record) size() int64 { return int64(len(r.entry) + offsetLen) }

// Entry is a spooled record with its seq.
type Entry struct {
	Seq     uint64
	Key     message.DedupKey
	Data    []byte
	Reissue bool // made with NewReissue
}

// header is what the spool needs from a stored record besides its row.
type header struct {
	off  uint64 // bytes spooled before the record
	size int64  // bytes the record occupies
}

func (h header) end() uint64 { return h.off + uint64(h.size) }

// decodeLog checks a log entry read back from raft-wal and splits it into the
// record and its header. l.Data is not shared (the codec copies it), so the
// entry keeps it.
func decodeLog(l *raft.Log) (Entry, header, error) {
	if len(l.Extensions) != offsetLen || len(l.Data) < dataHeader {
		return Entry{}, header{}, fmt.Errorf("seq %d: not a format %d record (%d-byte header, %d bytes)", l.Index, formatVersion, len(l.Extensions), len(l.Data))
	}
	flags := l.Data[0]
	if flags&^knownFlags != 0 {
		return Entry{}, header{}, fmt.Errorf("seq %d: unknown record flags %#x", l.Index, flags)
	}
	e := Entry{Seq: l.Index, Data: l.Data[dataHeader:], Reissue: flags&flagReissue != 0}
	copy(e.Key[:], l.Data[1:dataHeader])
	h := header{off: binary.BigEndian.Uint64(l.Extensions), size: int64(len(l.Data) + offsetLen)}
	return e, h, nil
}

// readFormat reports whether dir has a FORMAT file, and fails unless it
// names this version.
func readFormat(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, formatFile))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("spool: %w", err)
	}
	v, ok := bytes.CutPrefix(bytes.TrimSpace(b), []byte(formatPrefix))
	n, err := strconv.Atoi(string(v))
	if !ok || err != nil {
		return false, fmt.Errorf("spool: %s: unrecognised content %q", filepath.Join(dir, formatFile), b)
	}
	if n != formatVersion {
		return false, fmt.Errorf("spool: %s is format %d; this imbridge reads format %d only (was it written by a newer version?)", dir, n, formatVersion)
	}
	return true, nil
}

// writeFormat writes the FORMAT file durably (temporary file, fsync, rename,
// fsync of the directory).
func writeFormat(dir string) error {
	tmp := filepath.Join(dir, formatFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	_, err = fmt.Fprintf(f, "%s%d\n", formatPrefix, formatVersion)
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, formatFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("spool: write %s: %w", formatFile, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func oldFormatError(dir string, first, last uint64) error {
	return fmt.Errorf("%w: %s has no %s file and holds seqs %d–%d, which this version cannot read. "+
		"Drain it with the previous version: start it with ClickHouse up until imbridge_loader_lag is 0, stop it, "+
		"then move %s aside and start this version (new seqs continue after the highest seq in ClickHouse)",
		ErrOldFormat, dir, formatFile, first, last, dir)
}
