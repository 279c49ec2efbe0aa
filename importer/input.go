package importer

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync/atomic"
)

// file is one input being read: the decompressed stream of its lines and
// what has been read of the file itself (for progress).
type file struct {
	name   string
	size   int64 // bytes of the file as stored; -1 for stdin
	stream io.Reader
	raw    *atomic.Int64 // bytes of the file read so far
	plain  bool          // stream is the file itself: a resume can seek
	seeker io.Seeker     // the file, when plain
	hasher hashReader    // stdin: the hash of what was read
	close  func() error
}

type hashReader interface{ Sum() string }

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// countingReaderAt counts the bytes read through it (a zip's entries).
type countingReaderAt struct {
	r io.ReaderAt
	n *atomic.Int64
}

func (c countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// sha256Tee hashes what is read through it.
type sha256Tee struct {
	r io.Reader
	h hashState
}

type hashState interface {
	io.Writer
	Sum([]byte) []byte
}

func (t *sha256Tee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.h.Write(p[:n])
	return n, err
}

func (t *sha256Tee) Sum() string { return hex.EncodeToString(t.h.Sum(nil)) }

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zipMagic  = []byte("PK\x03\x04")
)

// openFile opens name ("-" = stdin) and recognises gzip and zip by their
// first bytes, whatever the name ends with. A zip's entries are read one
// after the other, in the archive's order, each ending a line.
func openFile(name string, stdin io.Reader) (*file, error) {
	f := &file{name: name, size: -1, raw: new(atomic.Int64)}
	var base io.Reader
	if name == "-" {
		if stdin == nil {
			stdin = os.Stdin
		}
		tee := &sha256Tee{r: stdin, h: sha256.New()}
		f.hasher = tee
		base = countingReader{tee, f.raw}
		f.close = func() error { return nil }
	} else {
		osf, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		st, err := osf.Stat()
		if err != nil {
			osf.Close()
			return nil, err
		}
		if st.IsDir() {
			osf.Close()
			return nil, fmt.Errorf("%s is a directory", name)
		}
		f.size = st.Size()
		f.close = osf.Close
		head := make([]byte, 4)
		n, _ := io.ReadFull(osf, head)
		head = head[:n]
		if bytes.HasPrefix(head, zipMagic) {
			zr, err := zip.NewReader(countingReaderAt{osf, f.raw}, f.size)
			if err != nil {
				osf.Close()
				return nil, fmt.Errorf("%s: zip: %w", name, err)
			}
			f.stream = &zipStream{entries: zr.File}
			return f, nil
		}
		if _, err := osf.Seek(0, io.SeekStart); err != nil {
			osf.Close()
			return nil, err
		}
		f.seeker = osf
		base = countingReader{osf, f.raw}
	}
	br := bufio.NewReaderSize(base, 64<<10)
	head, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("%s: gzip: %w", name, err)
		}
		f.stream = zr
	case bytes.HasPrefix(head, zipMagic):
		f.close()
		return nil, fmt.Errorf("%s: a zip archive cannot be read from a pipe: name the file", name)
	default:
		f.stream = br
		f.plain = f.seeker != nil
	}
	return f, nil
}

// skip moves the stream past the first offset bytes of its (decompressed)
// content: a seek for a plain file, reading for the rest.
func (f *file) skip(offset int64) error {
	if offset <= 0 {
		return nil
	}
	if f.plain {
		if _, err := f.seeker.Seek(offset, io.SeekStart); err != nil {
			return err
		}
		f.raw.Store(offset)
		f.stream = bufio.NewReaderSize(countingReader{f.seeker.(io.Reader), f.raw}, 64<<10)
		return nil
	}
	n, err := io.CopyN(io.Discard, f.stream, offset)
	if err != nil {
		return fmt.Errorf("skipping to byte %d of the content (at %d): %w", offset, n, err)
	}
	return nil
}

// zipStream reads a zip's entries one after the other; a newline follows
// each entry so that a last line without one does not run into the next
// entry.
type zipStream struct {
	entries []*zip.File
	cur     io.ReadCloser
	sep     bool
}

func (z *zipStream) Read(p []byte) (int, error) {
	for {
		if z.sep {
			if len(p) == 0 {
				return 0, nil
			}
			z.sep = false
			p[0] = '\n'
			return 1, nil
		}
		if z.cur == nil {
			for len(z.entries) > 0 && z.entries[0].FileInfo().IsDir() {
				z.entries = z.entries[1:]
			}
			if len(z.entries) == 0 {
				return 0, io.EOF
			}
			rc, err := z.entries[0].Open()
			if err != nil {
				return 0, fmt.Errorf("zip entry %s: %w", z.entries[0].Name, err)
			}
			z.cur = rc
		}
		n, err := z.cur.Read(p)
		if errors.Is(err, io.EOF) {
			z.cur.Close()
			z.cur = nil
			z.entries = z.entries[1:]
			z.sep = true
			err = nil
			if n == 0 {
				continue
			}
		}
		if err != nil {
			return n, fmt.Errorf("zip entry %s: %w", z.entries[0].Name, err)
		}
		return n, nil
	}
}

// fileSHA256 hashes a whole file (the key of its checkpoints).
func fileSHA256(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return "", fmt.Errorf("hashing %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// chunk is a run of whole lines of one file.
type chunk struct {
	data      []byte
	firstLine int64 // 1-based number of data's first line
	lines     int64 // lines in data
	end       int64 // offset in the content after data
	raw       int64 // bytes of the file read when the chunk was cut
	tooLong   []int64
	err       error // reading failed after the lines before this chunk
}

// chunker cuts a stream into chunks of about size bytes of whole lines. A
// line longer than maxLine is not kept: its number is reported in tooLong.
type chunker struct {
	f       *file
	size    int
	maxLine int
	buf     []byte // the partial line after the last chunk
	line    int64  // lines handed out so far (too long ones included)
	off     int64  // content offset of buf's start
	eof     bool
}

// next returns the next chunk; false when the stream is exhausted. A chunk
// with err set ends the stream.
func (c *chunker) next() (chunk, bool) {
	if c.eof && len(c.buf) == 0 {
		return chunk{}, false
	}
	data := make([]byte, len(c.buf), max(c.size, 2*len(c.buf)))
	copy(data, c.buf)
	c.buf = c.buf[:0]
	start := c.off // content offset of data[0]
	var tooLong []int64
	fail := func(err error) (chunk, bool) {
		c.eof = true
		return chunk{err: fmt.Errorf("line %d: %w", c.line+1, err), firstLine: c.line + 1, end: start, tooLong: tooLong}, true
	}
	for !c.eof {
		if len(data) >= c.size {
			if bytes.LastIndexByte(data, '\n') >= 0 {
				break
			}
			if len(data) >= c.maxLine {
				c.line++
				tooLong = append(tooLong, c.line)
				start += int64(len(data))
				data = data[:0]
				rest, skipped, err := c.discardLine()
				start += skipped
				data = append(data, rest...)
				if err != nil {
					return fail(err)
				}
				continue
			}
		}
		if cap(data)-len(data) < 4096 {
			data = slices.Grow(data, cap(data))
		}
		n, err := c.f.stream.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if errors.Is(err, io.EOF) {
			c.eof = true
		} else if err != nil {
			return fail(err)
		}
	}
	cut := len(data)
	if !c.eof {
		cut = bytes.LastIndexByte(data, '\n') + 1
	}
	c.buf = append(c.buf, data[cut:]...)
	data = data[:cut]
	lines := int64(bytes.Count(data, []byte{'\n'}))
	if c.eof && len(data) > 0 && data[len(data)-1] != '\n' {
		lines++
	}
	if len(data) == 0 && len(tooLong) == 0 {
		return chunk{}, false
	}
	ch := chunk{data: data, firstLine: c.line + 1, lines: lines, end: start + int64(cut), raw: c.f.raw.Load(), tooLong: tooLong}
	c.line += lines
	c.off = start + int64(cut)
	return ch, true
}

// discardLine reads past the end of the current line; it returns what was
// read after that line's newline and how many bytes the line's rest took.
func (c *chunker) discardLine() (rest []byte, skipped int64, err error) {
	tmp := make([]byte, 64<<10)
	for {
		n, err := c.f.stream.Read(tmp)
		if i := bytes.IndexByte(tmp[:n], '\n'); i >= 0 {
			if errors.Is(err, io.EOF) {
				c.eof = true
				err = nil
			}
			return tmp[i+1 : n], skipped + int64(i+1), err
		}
		skipped += int64(n)
		if errors.Is(err, io.EOF) {
			c.eof = true
			return nil, skipped, nil
		}
		if err != nil {
			return nil, skipped, err
		}
	}
}
