package message

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// decodeLineReference is the first DecodeLine, built on encoding/json. The
// scanner-based decoder must never accept a line this one refuses, nor decode
// one differently (FuzzDecoderAgreesWithReference).
func decodeLineReference(raw []byte) (Message, error) {
	var m Message
	if !utf8.Valid(raw) {
		return m, fieldErr("line", "is not valid UTF-8")
	}
	var wl struct {
		Data json.RawMessage `json:"data"`
		Type json.RawMessage `json:"type"`
	}
	if err := strictUnmarshal(raw, &wl); err != nil {
		return m, fieldErr("line", "%v", err)
	}
	if wl.Data == nil || jsonKind(wl.Data) != '{' {
		return m, fieldErr("data", "required: an object holding the message")
	}
	if wl.Type == nil {
		return m, fieldErr("type", "required")
	}
	t, ok := parseInt(wl.Type)
	if !ok {
		return m, fieldErr("type", "%s is not an integer", wl.Type)
	}
	m.Type = Type(t)
	var d wireData
	if err := strictUnmarshal(wl.Data, &d); err != nil {
		return m, fieldErr("data", "%v", err)
	}
	if err := m.fromWire(&d); err != nil {
		return m, err
	}
	m.Source = SourceNative
	m.SourceID = strconv.FormatInt(m.MsgID, 10)
	return m, m.Validate()
}
