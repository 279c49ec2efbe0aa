package importer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
	"github.com/imbridge/imbridge/source/easemob"
	"github.com/imbridge/imbridge/source/rongcloud"
	"github.com/imbridge/imbridge/source/tencent"
	"github.com/imbridge/imbridge/source/yunxin"
)

// Formats of the records in an import file, one record per line.
const (
	// FormatLines: Yunxin migration lines (NDJSON), the native source.
	FormatLines = "lines"
	// FormatCallback: one provider callback body per line, exactly as the
	// provider posts it (RongCloud: the form body), decoded by the same
	// code as the live callback.
	FormatCallback = "callback"
	// FormatHistory: the provider's hourly history file (providers.md §7.4):
	// Easemob's one JSON message per line, Tencent's JSON wrapper with one
	// message per line and trailing commas (or plain NDJSON), RongCloud's
	// history log lines.
	FormatHistory = "history"
)

// DefaultFormat is the format of a source's files when --format is not
// given: the history file where the provider has one.
func DefaultFormat(src string) string {
	switch src {
	case message.SourceNative:
		return FormatLines
	case yunxin.Name:
		return FormatCallback
	}
	return FormatHistory
}

// Sources lists the sources import knows, with their formats.
func Sources() map[string][]string {
	return map[string][]string{
		message.SourceNative: {FormatLines},
		easemob.Name:         {FormatHistory, FormatCallback},
		tencent.Name:         {FormatHistory, FormatCallback},
		rongcloud.Name:       {FormatHistory, FormatCallback},
		yunxin.Name:          {FormatCallback},
	}
}

// CheckFormat says whether src files can be read in format.
func CheckFormat(src, format string) error {
	formats, ok := Sources()[src]
	if !ok {
		return fmt.Errorf("unknown source %q (want native, easemob, tencent, rongcloud or yunxin)", src)
	}
	for _, f := range formats {
		if f == format {
			return nil
		}
	}
	return fmt.Errorf("source %s has no %q format (it has: %s)", src, format, strings.Join(formats, ", "))
}

// TencentOptions say what Tencent history records do not carry themselves.
type TencentOptions struct {
	// ChatType is the file's ChatType (C2C or Group), as asked of
	// get_history. Empty: the file's header line when it has one, else per
	// record (a record with To_Account is C2C).
	ChatType string
	// GroupID is the group of a Group file whose records carry no GroupId
	// (the request named it). Empty: the header's GroupId.
	GroupID string
}

// recordDecoder decodes one line of a file. skip reports a line that is
// part of the file's structure rather than a record (Tencent's wrapper).
type recordDecoder func(line []byte) (b source.Batch, skip bool, err error)

// newDecoder returns the decoder of one file's records. first is the file's
// first non-blank line (Tencent's header, when the file has one). now is the
// receipt time of events that carry none.
func newDecoder(src, format string, tc TencentOptions, first []byte, now time.Time) (recordDecoder, error) {
	if err := CheckFormat(src, format); err != nil {
		return nil, err
	}
	batchOf := func(decode func([]byte) (source.Batch, error)) recordDecoder {
		return func(line []byte) (source.Batch, bool, error) {
			b, err := decode(line)
			return b, false, err
		}
	}
	switch src + "/" + format {
	case message.SourceNative + "/" + FormatLines:
		// A chunk's buffer is never written after it is cut (chunker.next),
		// so the messages' strings may share it.
		return batchOf(func(line []byte) (source.Batch, error) {
			m, err := message.DecodeLineShared(line)
			if err != nil {
				return source.Batch{}, err
			}
			return source.Batch{Messages: []message.Message{m}}, nil
		}), nil
	case easemob.Name + "/" + FormatCallback:
		return batchOf(easemob.Decode), nil
	case easemob.Name + "/" + FormatHistory:
		return batchOf(easemob.DecodeHistory), nil
	case tencent.Name + "/" + FormatCallback:
		return batchOf(func(line []byte) (source.Batch, error) { return tencent.Decode(line, url.Values{}, now) }), nil
	case tencent.Name + "/" + FormatHistory:
		return tencentHistory(tc, first)
	case rongcloud.Name + "/" + FormatCallback:
		return batchOf(rongcloud.Decode), nil
	case rongcloud.Name + "/" + FormatHistory:
		return batchOf(rongcloud.DecodeHistoryRecord), nil
	case yunxin.Name + "/" + FormatCallback:
		return batchOf(func(line []byte) (source.Batch, error) { return yunxin.Decode(line, now) }), nil
	}
	return nil, fmt.Errorf("source %s: format %s has no decoder", src, format)
}

// tencentHistory decodes Tencent's history file: one JSON document whose
// first line is a header ({"ChatType":…,"GroupId":…,"MsgList":[ — layout
// UNCONFIRMED), then one message per line with a trailing comma, then "]}";
// plain NDJSON records are read too.
func tencentHistory(tc TencentOptions, first []byte) (recordDecoder, error) {
	chatType, group := tc.ChatType, tc.GroupID
	if h, ok := tencentHeader(first); ok {
		if chatType == "" {
			chatType = h.ChatType
		}
		if group == "" {
			group = h.GroupID
		}
	}
	if chatType != "" && !strings.EqualFold(chatType, "C2C") && !strings.EqualFold(chatType, "Group") {
		return nil, fmt.Errorf("tencent ChatType %q: want C2C or Group", chatType)
	}
	return func(line []byte) (source.Batch, bool, error) {
		if isTencentStructure(line) {
			return source.Batch{}, true, nil
		}
		ct := chatType
		if ct == "" {
			ct = "Group"
			if bytes.Contains(line, []byte(`"To_Account"`)) {
				ct = "C2C"
			}
		}
		b, err := tencent.DecodeHistory(ct, group, line)
		return b, false, err
	}, nil
}

type tencentFileHeader struct {
	ChatType string `json:"ChatType"`
	GroupID  string `json:"GroupId"`
}

// tencentHeader reads a header line: an object that opens the message
// array, e.g. {"ChatType":"Group","GroupId":"@TGS#1","MsgList":[ .
func tencentHeader(line []byte) (tencentFileHeader, bool) {
	var h tencentFileHeader
	line = bytes.TrimSpace(bytes.TrimPrefix(line, []byte("\ufeff")))
	if len(line) < 2 || line[0] != '{' || line[len(line)-1] != '[' {
		return h, false
	}
	doc := append(append([]byte{}, line...), "]}"...)
	if json.Unmarshal(doc, &h) != nil {
		return h, false
	}
	return h, true
}

// isTencentStructure reports the wrapper's lines: the header and the
// closing brackets.
func isTencentStructure(line []byte) bool {
	switch string(line) {
	case "[", "]", "]}", "],", "}", "]},", "{":
		return true
	}
	_, ok := tencentHeader(line)
	return ok
}
