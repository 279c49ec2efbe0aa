package importer

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzChunker: chunks hand out every byte of the stream once, in order, as
// whole lines, with consistent line numbers and offsets; a line longer than
// maxLine is reported instead.
func FuzzChunker(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), uint8(2))
	f.Add([]byte("\n\n\n"), uint8(1))
	f.Add(bytes.Repeat([]byte("x"), 300), uint8(3))
	f.Add([]byte("short\n"+string(bytes.Repeat([]byte("y"), 100))+"\nend\n"), uint8(8))
	f.Fuzz(func(t *testing.T, data []byte, size uint8) {
		chunkSize := int(size%64) + 1
		maxLine := 4 * chunkSize
		fl := &file{stream: bytes.NewReader(data), raw: new(atomic.Int64)}
		ch := &chunker{f: fl, size: chunkSize, maxLine: maxLine}
		var got []byte
		var line int64
		var tooLong int64
		for {
			c, ok := ch.next()
			if !ok {
				break
			}
			if c.err != nil {
				t.Fatal(c.err)
			}
			tooLong += int64(len(c.tooLong))
			if c.firstLine != line+int64(len(c.tooLong))+1 {
				t.Fatalf("chunk starts at line %d after %d lines and %d too long", c.firstLine, line, len(c.tooLong))
			}
			line = c.firstLine + c.lines - 1
			if int64(len(c.data)) > c.end {
				t.Fatalf("chunk of %d bytes ends at offset %d", len(c.data), c.end)
			}
			got = append(got, c.data...)
		}
		if c := ch.line; c != line {
			t.Fatalf("chunker counted %d lines, chunks %d", c, line)
		}
		if tooLong == 0 && !bytes.Equal(got, data) {
			t.Fatalf("chunks hold %q, the stream %q", got, data)
		}
		want := int64(bytes.Count(data, []byte{'\n'}))
		if len(data) > 0 && data[len(data)-1] != '\n' {
			want++
		}
		if line != want {
			t.Fatalf("%d lines handed out, the stream has %d", line, want)
		}
	})
}

// FuzzTencentHistory: a Tencent history file's lines — header, records,
// wrapper — never panic the decoder; what it accepts validates.
func FuzzTencentHistory(f *testing.F) {
	f.Add([]byte(`{"ChatType":"Group","GroupId":"@TGS#1","MsgList":[`), []byte(`{"From_Account":"a","MsgSeq":42,"MsgTimestamp":1700000000,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]},`))
	f.Add([]byte(`{"ChatType":"C2C","MsgList":[`), []byte(`{"From_Account":"a","To_Account":"b","MsgRandom":2,"MsgSeq":1,"MsgTimestamp":1700000000,"MsgKey":"1_2_1700000000","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]}`))
	f.Add([]byte(`]}`), []byte(`]}`))
	f.Add([]byte(`{"ChatType":"Nope","MsgList":[`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, first, line []byte) {
		dec, err := newDecoder("tencent", FormatHistory, TencentOptions{}, first, time.UnixMilli(1700000000000))
		if err != nil {
			return
		}
		b, skip, err := dec(line)
		if skip || err != nil {
			return
		}
		if err := validate(&b, "tencent"); err != nil {
			t.Fatalf("accepted %q (header %q) but it does not validate: %v", line, first, err)
		}
	})
}
