package exporter

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// File describes one finished export file in the manifest.
type File struct {
	Name   string            `json:"name"`
	Scene  string            `json:"scene"`
	Lines  uint64            `json:"lines"`
	Bytes  int64             `json:"bytes"` // on disk (compressed when gzip)
	SHA256 string            `json:"sha256"`
	Types  map[string]uint64 `json:"types"` // lines per Yunxin type ("0", "1", …, "101", …)
}

// sceneFiles writes one scene's lines ("p2p" or "team") into one file, or
// several when a size limit splits it. Files are written under temporary
// names and only get their final names (p2p.txt, or p2p-0001.txt … when
// split) in finish, after an fsync.
type sceneFiles struct {
	dir, scene string
	maxBytes   int64 // split past this many uncompressed bytes; 0 = never
	gzip       bool

	done []part
	cur  *part
}

// part is one file being written or written.
type part struct {
	tmp    string
	f      *os.File
	sum    hash.Hash
	disk   *countWriter
	gz     *gzip.Writer
	buf    *bufio.Writer
	raw    int64             // uncompressed bytes
	types  map[uint16]uint64 // lines per type; info.Types is filled from it on close
	info   File
	closed bool
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (s *sceneFiles) open() error {
	tmp := filepath.Join(s.dir, fmt.Sprintf(".%s-%04d.tmp", s.scene, len(s.done)+1))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("export file: %w", err)
	}
	p := &part{tmp: tmp, f: f, sum: sha256.New(), types: map[uint16]uint64{}, info: File{Scene: s.scene}}
	p.disk = &countWriter{w: io.MultiWriter(f, p.sum)}
	var w io.Writer = p.disk
	if s.gzip {
		p.gz = gzip.NewWriter(p.disk)
		w = p.gz
	}
	p.buf = bufio.NewWriterSize(w, 256<<10)
	s.cur = p
	return nil
}

// write appends one line (without its "\n").
func (s *sceneFiles) write(typ uint16, line string) error {
	n := int64(len(line)) + 1
	if s.cur != nil && s.maxBytes > 0 && s.cur.raw > 0 && s.cur.raw+n > s.maxBytes {
		if err := s.cur.close(); err != nil {
			return err
		}
		s.done = append(s.done, *s.cur)
		s.cur = nil
	}
	if s.cur == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	p := s.cur
	if _, err := p.buf.WriteString(line); err != nil {
		return fmt.Errorf("export file: %w", err)
	}
	if err := p.buf.WriteByte('\n'); err != nil {
		return fmt.Errorf("export file: %w", err)
	}
	p.raw += n
	p.info.Lines++
	p.types[typ]++
	return nil
}

// close flushes and fsyncs the part.
func (p *part) close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	err := p.buf.Flush()
	if err == nil && p.gz != nil {
		err = p.gz.Close()
	}
	if err == nil {
		err = p.f.Sync()
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("export file %s: %w", p.tmp, err)
	}
	p.info.Bytes = p.disk.n
	p.info.Types = make(map[string]uint64, len(p.types))
	for typ, n := range p.types {
		p.info.Types[strconv.Itoa(int(typ))] = n
	}
	p.info.SHA256 = hex.EncodeToString(p.sum.Sum(nil))
	return nil
}

// finish closes the last file and renames every file to its final name.
func (s *sceneFiles) finish() ([]File, error) {
	if s.cur != nil {
		if err := s.cur.close(); err != nil {
			return nil, err
		}
		s.done = append(s.done, *s.cur)
		s.cur = nil
	}
	ext := ".txt"
	if s.gzip {
		ext += ".gz"
	}
	out := make([]File, 0, len(s.done))
	for i := range s.done {
		p := &s.done[i]
		name := s.scene + ext
		if len(s.done) > 1 {
			name = fmt.Sprintf("%s-%04d%s", s.scene, i+1, ext)
		}
		if err := os.Rename(p.tmp, filepath.Join(s.dir, name)); err != nil {
			return nil, fmt.Errorf("export file: %w", err)
		}
		p.info.Name = name
		out = append(out, p.info)
	}
	return out, nil
}

// abort closes what is open; the caller removes the directory.
func (s *sceneFiles) abort() {
	if s.cur != nil && !s.cur.closed {
		s.cur.closed = true
		_ = s.cur.f.Close()
	}
}

// syncDir makes renames and creations in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
