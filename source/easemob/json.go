package easemob

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
)

// obj is one JSON object of a body, its values kept raw so that each field is
// read with the type its documentation gives and an error names it.
type obj struct {
	fields map[string]json.RawMessage
	path   string // where the object is in the body: "" (top), "payload", "payload.bodies[0]"…
}

// parseBody reads a callback body or history record: valid UTF-8, one JSON
// object, nothing after it.
func parseBody(body []byte) (obj, error) {
	if !utf8.Valid(body) {
		return obj{}, source.BadRequest("body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return obj{}, source.BadRequest("body is not a JSON object: %s", jsonErr(err))
	}
	if _, err := dec.Token(); err == nil || !errors.Is(err, io.EOF) {
		return obj{}, source.BadRequest("body: trailing data after the JSON object")
	}
	return parseObj(raw, "")
}

func parseObj(raw json.RawMessage, path string) (obj, error) {
	if kind(raw) != '{' {
		return obj{}, source.BadRequest("%s: must be a JSON object", name(path, "body"))
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return obj{}, source.BadRequest("%s: %s", name(path, "body"), jsonErr(err))
	}
	return obj{fields: fields, path: path}, nil
}

// name joins path and key as a field name in the body ("payload.type").
func name(path, key string) string {
	switch {
	case path == "":
		return key
	case key == "":
		return path
	}
	return path + "." + key
}

func (o obj) field(key string) string { return name(o.path, key) }

func (o obj) has(key string) bool {
	v, ok := o.fields[key]
	return ok && kind(v) != 'n'
}

// raw returns a present, non-null value.
func (o obj) raw(key string) (json.RawMessage, bool) {
	v, ok := o.fields[key]
	if !ok || kind(v) == 'n' {
		return nil, false
	}
	return v, true
}

// str reads a string field ("" when absent or null). what describes the field
// in the error ("" for a plain string).
func (o obj) str(key, what string) (string, error) {
	v, ok := o.raw(key)
	if !ok {
		return "", nil
	}
	if kind(v) != '"' {
		if what == "" {
			what = "a string"
		}
		return "", source.BadRequest("%s: must be %s, not %s", o.field(key), what, abbrev(v))
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", source.BadRequest("%s: %s", o.field(key), jsonErr(err))
	}
	return s, nil
}

// id reads an id documented as a String that may also come as a JSON
// integer (kept as its text).
func (o obj) id(key string) (string, error) {
	v, ok := o.raw(key)
	if !ok {
		return "", nil
	}
	if kind(v) == '"' {
		return o.str(key, "")
	}
	if s := string(v); isDigits(s) {
		return s, nil
	}
	return "", source.BadRequest("%s: must be a string (an id), not %s", o.field(key), abbrev(v))
}

// object reads a nested object; ok is false when absent or null.
func (o obj) object(key string) (obj, bool, error) {
	v, ok := o.raw(key)
	if !ok {
		return obj{path: o.field(key)}, false, nil
	}
	sub, err := parseObj(v, o.field(key))
	return sub, err == nil, err
}

// array reads a JSON array (nil when absent or null).
func (o obj) array(key string) ([]json.RawMessage, error) {
	v, ok := o.raw(key)
	if !ok {
		return nil, nil
	}
	if kind(v) != '[' {
		return nil, source.BadRequest("%s: must be a JSON array, not %s", o.field(key), abbrev(v))
	}
	var a []json.RawMessage
	if err := json.Unmarshal(v, &a); err != nil {
		return nil, source.BadRequest("%s: %s", o.field(key), jsonErr(err))
	}
	return a, nil
}

// strings reads a list of user ids: a JSON array of strings, or one string.
func (o obj) strings(key string) ([]string, error) {
	v, ok := o.raw(key)
	if !ok {
		return nil, nil
	}
	if kind(v) == '"' {
		s, err := o.str(key, "")
		return []string{s}, err
	}
	var out []string
	if kind(v) != '[' || json.Unmarshal(v, &out) != nil {
		return nil, source.BadRequest("%s: must be a JSON array of user ids, not %s", o.field(key), abbrev(v))
	}
	return out, nil
}

// integer reads a non-negative integer given as a JSON number or a string of
// digits; ok is false when absent or null.
func (o obj) integer(key string) (int64, bool, error) {
	v, ok := o.raw(key)
	if !ok {
		return 0, false, nil
	}
	s := string(v)
	if kind(v) == '"' {
		if err := json.Unmarshal(v, &s); err != nil {
			return 0, false, source.BadRequest("%s: %s", o.field(key), jsonErr(err))
		}
		if s == "" {
			return 0, false, nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || !isDigits(s) {
		return 0, false, source.BadRequest("%s: must be a whole number, not %s", o.field(key), abbrev(v))
	}
	return n, true, nil
}

// decimal reads a number given as a JSON number or a string holding one and
// returns its text (no floating-point round trip); ok is false when absent,
// null or "".
func (o obj) decimal(key string) (string, bool, error) {
	v, ok := o.raw(key)
	if !ok {
		return "", false, nil
	}
	s := string(v)
	switch kind(v) {
	case '"':
		if err := json.Unmarshal(v, &s); err != nil {
			return "", false, source.BadRequest("%s: %s", o.field(key), jsonErr(err))
		}
		s = strings.TrimSpace(s)
		if s == "" {
			return "", false, nil
		}
	case '-', '0':
	default:
		return "", false, source.BadRequest("%s: must be a number, not %s", o.field(key), abbrev(v))
	}
	if _, err := strconv.ParseFloat(s, 64); err != nil {
		return "", false, source.BadRequest("%s: %s is not a number", o.field(key), abbrev(v))
	}
	return s, true, nil
}

// boolean reads a JSON boolean or the strings "true"/"false" (Easemob's group
// info writes its booleans as strings).
func (o obj) boolean(key string) (bool, bool, error) {
	v, ok := o.raw(key)
	if !ok {
		return false, false, nil
	}
	switch strings.Trim(string(v), `"`) {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, false, source.BadRequest("%s: must be true or false, not %s", o.field(key), abbrev(v))
}

// timestamp reads the top-level timestamp (epoch ms): its value, its exact
// text (what the signature covers) and whether it is present.
func (o obj) timestamp() (int64, string, bool, error) {
	v, ok := o.raw("timestamp")
	if !ok {
		return 0, "", false, nil
	}
	text := string(v)
	if kind(v) == '"' {
		if err := json.Unmarshal(v, &text); err != nil {
			return 0, "", false, source.BadRequest("timestamp: %s", jsonErr(err))
		}
	}
	ms, err := strconv.ParseInt(text, 10, 64)
	if err != nil || !isDigits(text) {
		return 0, "", false, source.BadRequest("timestamp: must be epoch milliseconds (a whole number), not %s", abbrev(v))
	}
	return ms, text, true, nil
}

// requiredTimestamp is timestamp for events that make lines.
func (o obj) requiredTimestamp() (int64, error) {
	ts, _, ok, err := o.timestamp()
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, source.BadRequest("timestamp: required (epoch milliseconds)")
	}
	return ts, nil
}

// ext is Yunxin's ext of a payload.ext: "" when absent, null or {}; a string
// as it is; any other JSON value as its compact JSON text.
func (o obj) ext(key string) (string, error) {
	v, ok := o.raw(key)
	if !ok {
		return "", nil
	}
	if kind(v) == '"' {
		return o.str(key, "")
	}
	b, err := message.CanonicalJSON(nil, v)
	if err != nil {
		return "", source.BadRequest("%s: %v", o.field(key), err)
	}
	if string(b) == "{}" {
		return "", nil
	}
	return string(b), nil
}

// kind is the first byte of a JSON value: '{', '[', '"', 'n', 't', 'f', '-'
// or '0' for numbers.
func kind(v []byte) byte {
	v = bytes.TrimLeft(v, " \t\r\n")
	if len(v) == 0 {
		return 0
	}
	if c := v[0]; c >= '0' && c <= '9' {
		return '0'
	}
	return v[0]
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// abbrev quotes a value for an error message, cut to a readable length.
func abbrev(v []byte) string {
	const max = 40
	if len(v) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		return string(v[:cut]) + "…"
	}
	return string(v)
}

func jsonErr(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "must not be a JSON " + te.Value
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
