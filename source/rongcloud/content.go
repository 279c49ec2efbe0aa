package rongcloud

import (
	"encoding/json"
	"math"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
)

// fields is a decoded JSON object (a message's content, a history record)
// read field by field, with errors that name the field. Unknown fields are
// allowed: RongCloud adds some (user, mentionedInfo, burnDuration…).
type fields struct {
	kind string // "content of RC:TxtMsg", for errors
	m    map[string]json.RawMessage
}

func (f fields) bad(key, format string, args ...any) error {
	return source.BadRequest(f.kind+": "+key+": "+format, args...)
}

// str is a string field; missing or null is "".
func (f fields) str(key string) (string, error) {
	raw, ok := f.m[key]
	if !ok || kindOf(raw) == 'n' {
		return "", nil
	}
	if kindOf(raw) != '"' {
		return "", f.bad(key, "must be a string, not %s", clip(string(raw)))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", f.bad(key, "%s", jsonErr(err))
	}
	return s, nil
}

// text is a string field, or a number's literal text.
func (f fields) text(key string) (string, error) {
	raw := f.m[key]
	switch kindOf(raw) {
	case '"':
		return f.str(key)
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return strings.TrimSpace(string(raw)), nil
	case 0, 'n':
		return "", nil
	}
	return "", f.bad(key, "must be a string or a number, not %s", clip(string(raw)))
}

// number reads a number given as a JSON number or a string holding one
// (RongCloud's SDKs send sizes as strings); missing, null or "" is absent.
func (f fields) number(key string) (float64, bool, error) {
	s, err := f.text(key)
	if err != nil || strings.TrimSpace(s) == "" {
		return 0, false, err
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false, f.bad(key, "%q is not a number", clip(s))
	}
	return v, true, nil
}

// count is a non-negative integer (a size or a dimension); absent is 0.
func (f fields) count(key string) (int64, error) {
	v, ok, err := f.number(key)
	if err != nil || !ok {
		return 0, err
	}
	if v < 0 || v != math.Trunc(v) || v > 1<<53 {
		return 0, f.bad(key, "%v is not a non-negative integer", v)
	}
	return int64(v), nil
}

// seconds is a duration in seconds, returned in milliseconds; absent is 0.
func (f fields) seconds(key string) (int64, error) {
	v, ok, err := f.number(key)
	if err != nil || !ok {
		return 0, err
	}
	if v < 0 || v > 1e7 {
		return 0, f.bad(key, "%v is not a duration in seconds", v)
	}
	return int64(math.Round(v * 1000)), nil
}

// decimal is a coordinate as the decimal text Yunxin's location attach
// writes: the number's own literal when it is a plain decimal, else its
// shortest plain form. Absent is "".
func (f fields) decimal(key string, limit float64) (string, error) {
	v, ok, err := f.number(key)
	if err != nil || !ok {
		return "", err
	}
	if v < -limit || v > limit {
		return "", f.bad(key, "%v is out of range ±%v", v, limit)
	}
	s, _ := f.text(key)
	if s = strings.TrimSpace(s); plainDecimal(s) {
		return s, nil
	}
	return strconv.FormatFloat(v, 'f', -1, 64), nil
}

func plainDecimal(s string) bool {
	t := strings.TrimPrefix(s, "-")
	if t == "" || t[0] == '.' || strings.HasSuffix(t, ".") || strings.Count(t, ".") > 1 {
		return false
	}
	for i := 0; i < len(t); i++ {
		if (t[i] < '0' || t[i] > '9') && t[i] != '.' {
			return false
		}
	}
	return true
}

// ext is the content's "extra" as the line's ext: a string as is, an empty
// object or null as "", any other JSON value as its compact text.
func (f fields) ext() (string, error) {
	raw, ok := f.m["extra"]
	if !ok {
		return "", nil
	}
	switch kindOf(raw) {
	case 'n':
		return "", nil
	case '"':
		return f.str("extra")
	}
	b, err := message.CanonicalJSON(nil, raw)
	if err != nil {
		return "", f.bad("extra", "%v", err)
	}
	if string(b) == "{}" {
		return "", nil
	}
	return string(b), nil
}

// data is RC:GrpNtf's "data": an object, or (as RongCloud's SDKs declare it)
// a string holding one. Anything else reads as an empty object.
func (f fields) data() (fields, error) {
	d := fields{kind: f.kind + ": data"}
	raw := f.m["data"]
	if kindOf(raw) == '"' {
		s, err := f.str("data")
		if err != nil {
			return d, err
		}
		raw = json.RawMessage(s)
	}
	if kindOf(raw) == '{' {
		if err := json.Unmarshal(raw, &d.m); err != nil {
			return d, f.bad("data", "%s", jsonErr(err))
		}
	}
	return d, nil
}

// indexedID is a member id with its position in the provider's list.
type indexedID struct {
	index int
	id    string
}

// ids reads a list of member ids (an array of strings or numbers, or a
// string holding a list), skipping blanks and repeats; each keeps its
// position in the provider's array.
func (f fields) ids(key string) ([]indexedID, error) {
	raw, ok := f.m[key]
	if !ok || kindOf(raw) == 'n' {
		return nil, nil
	}
	var items []string
	switch kindOf(raw) {
	case '[':
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			return nil, f.bad(key, "%s", jsonErr(err))
		}
		for _, r := range arr {
			items = append(items, idText(r))
		}
	case '"':
		s, err := f.str(key)
		if err != nil {
			return nil, err
		}
		items = parseIDList(s)
	default:
		return nil, f.bad(key, "must be a list of user ids, not %s", clip(string(raw)))
	}
	var out []indexedID
	seen := map[string]bool{}
	for i, id := range items {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, indexedID{i, id})
	}
	return out, nil
}

// extOf is the file extension of the first of names (file names or URLs)
// that has a plausible one, lower case without the dot.
func extOf(names ...string) string {
	for _, n := range names {
		p := n
		if u, err := url.Parse(n); err == nil && u.Scheme != "" {
			p = u.Path
		}
		if e := cleanExt(path.Ext(p)); e != "" {
			return e
		}
	}
	return ""
}

// cleanExt normalizes an extension ("PDF", ".pdf" → "pdf"); "" when it is
// not 1–10 letters and digits.
func cleanExt(e string) string {
	e = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(e), "."))
	if e == "" || len(e) > 10 {
		return ""
	}
	for i := 0; i < len(e); i++ {
		if (e[i] < 'a' || e[i] > 'z') && (e[i] < '0' || e[i] > '9') {
			return ""
		}
	}
	return e
}
