package message

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SourceNative is the source name of lines posted by the app's own backend.
const SourceNative = "native"

type wireData struct {
	From       *string         `json:"from"`
	To         *string         `json:"to"`
	Accid      *string         `json:"accid"`
	Accid2     *string         `json:"accid2"`
	TID        json.RawMessage `json:"tid"`
	MsgID      json.RawMessage `json:"msgid"`
	CreateTime json.RawMessage `json:"createTime"`
	ClientType json.RawMessage `json:"clientType"`
	Body       *string         `json:"body"`
	Attach     json.RawMessage `json:"attach"`
	Ext        json.RawMessage `json:"ext"`
	TInfo      json.RawMessage `json:"tinfo"`
}

type wireAttach struct {
	Name  *string         `json:"name"`
	MD5   *string         `json:"md5"`
	URL   *string         `json:"url"`
	Ext   *string         `json:"ext"`
	W     json.RawMessage `json:"w"`
	H     json.RawMessage `json:"h"`
	Size  json.RawMessage `json:"size"`
	Dur   json.RawMessage `json:"dur"`
	Title *string         `json:"title"`
	Lng   json.RawMessage `json:"lng"`
	Lat   json.RawMessage `json:"lat"`
}

func strictUnmarshal(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return cleanJSONError(err)
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// cleanJSONError turns encoding/json messages into ones an operator can act
// on ("unknown field \"x\"", "x must be a string").
func cleanJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Errorf("%s: must be a %s, not a JSON %s", te.Field, goTypeName(te.Type.String()), te.Value)
		}
		return fmt.Errorf("must be a JSON object, not a JSON %s", te.Value)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

func goTypeName(t string) string {
	if strings.Contains(t, "string") {
		return "string"
	}
	return "JSON value of the documented type"
}

// DecodeLine parses one Yunxin line as the document writes it, accepting what
// its examples accept: createTime, clientType, msgid and tid as numbers or
// strings of digits, attach as a JSON string or an object, ext as a string or
// an object. The message is normalized and validated; the error is a
// *FieldError (or a JSON syntax error) and no partial message is returned.
func DecodeLine(raw []byte) (Message, error) {
	return decodeLine(raw, false)
}

// DecodeLineShared is DecodeLine for a caller that never changes raw
// afterwards (the importer's chunks: each is read once into a buffer of its
// own). The message's strings may point into raw instead of being copies,
// and keep all of raw alive while any of them is: the caller copies what it
// keeps for long. A string allocation per field was 7 % of a 2M-line import.
func DecodeLineShared(raw []byte) (Message, error) {
	return decodeLine(raw, true)
}

func decodeLine(raw []byte, shared bool) (Message, error) {
	m, err := decodeLineInto(raw, shared)
	if err != nil {
		return Message{}, err
	}
	return m, nil
}

func decodeLineInto(raw []byte, shared bool) (Message, error) {
	var m Message
	if !utf8.Valid(raw) {
		return m, fieldErr("line", "is not valid UTF-8")
	}
	sc := scanner{b: raw, shared: shared}
	var data, typ json.RawMessage
	var d wireData
	err := sc.object(func(key string) error {
		switch key {
		case "data":
			if sc.peek() != '{' {
				v, err := sc.raw()
				if err != nil {
					return err
				}
				if jsonKind(v) != 'n' {
					data = v // not an object: refused below
				}
				return nil
			}
			start := sc.i
			err := sc.object(func(k string) error { return d.field(&sc, k) })
			if err != nil {
				return &FieldError{Field: "data", Msg: err.Error()}
			}
			data = raw[start:sc.i]
			return nil
		case "type":
			v, err := sc.raw()
			typ = v
			return err
		}
		return fmt.Errorf("unknown field %q", key)
	})
	if err == nil && sc.peek() != 0 {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return m, fe
		}
		return m, fieldErr("line", "%v", err)
	}
	if data == nil || jsonKind(data) != '{' {
		return m, fieldErr("data", "required: an object holding the message")
	}
	if typ == nil || jsonKind(typ) == 'n' {
		return m, fieldErr("type", "required")
	}
	t, ok := parseInt(typ)
	if !ok {
		return m, fieldErr("type", "%s is not an integer", typ)
	}
	m.Type = Type(t)
	if err := m.fromWire(&d); err != nil {
		return m, err
	}
	m.Source = SourceNative
	m.SourceID = strconv.FormatInt(m.MsgID, 10)
	return m, m.Validate()
}

// field reads the value of data's key k.
func (d *wireData) field(sc *scanner, k string) error {
	str := func(dst **string) error {
		switch sc.peek() {
		case '"':
			v, err := sc.str()
			*dst = &v
			return err
		case 'n':
			_, err := sc.raw()
			return err
		}
		return fmt.Errorf("%s: must be a string", k)
	}
	raw := func(dst *json.RawMessage) error {
		v, err := sc.raw()
		*dst = v
		return err
	}
	switch k {
	case "from":
		return str(&d.From)
	case "to":
		return str(&d.To)
	case "accid":
		return str(&d.Accid)
	case "accid2":
		return str(&d.Accid2)
	case "body":
		return str(&d.Body)
	case "tid":
		return raw(&d.TID)
	case "msgid":
		return raw(&d.MsgID)
	case "createTime":
		return raw(&d.CreateTime)
	case "clientType":
		return raw(&d.ClientType)
	case "attach":
		return raw(&d.Attach)
	case "ext":
		return raw(&d.Ext)
	case "tinfo":
		return raw(&d.TInfo)
	}
	return fmt.Errorf("unknown field %q", k)
}

func (m *Message) fromWire(d *wireData) error {
	switch {
	case d.Accid != nil || d.TID != nil:
		m.Scene = Team
		if d.From != nil {
			return fieldErr("data.from", "not allowed in team messages (use accid)")
		}
		if d.Accid == nil {
			return fieldErr("data.accid", "required for team messages")
		}
		m.From = *d.Accid
		if d.TID == nil {
			return fieldErr("data.tid", "required for team messages")
		}
		tid, ok := parseInt(d.TID)
		if !ok {
			return fieldErr("data.tid", "%s is not an integer team id", d.TID)
		}
		m.TID = tid
		if d.To != nil {
			m.To = *d.To // refused by Validate with a clear message
		}
	default:
		m.Scene = P2P
		if d.From == nil {
			return fieldErr("data.from", "required (p2p messages have from and to; team messages accid and tid)")
		}
		if d.To == nil {
			return fieldErr("data.to", "required for p2p messages")
		}
		m.From, m.To = *d.From, *d.To
	}
	var err error
	if m.MsgID, err = requiredInt("data.msgid", d.MsgID, "", "an integer that fits in 63 bits"); err != nil {
		return err
	}
	if m.CreateTime, err = requiredInt("data.createTime", d.CreateTime, " (epoch milliseconds)", "an integer (epoch milliseconds)"); err != nil {
		return err
	}
	c, err := requiredInt("data.clientType", d.ClientType, " (1 AOS, 2 iOS, 4 PC, 8 WINPHONE, 16 WEB, 32 REST, 64 MAC)", "an integer")
	if err != nil {
		return err
	}
	m.ClientType = ClientType(c)
	if d.Body != nil {
		m.Body = *d.Body
	}
	if d.Accid2 != nil {
		m.Accid2 = *d.Accid2
	}
	if d.Ext != nil {
		ext, err := decodeExt(d.Ext)
		if err != nil {
			return err
		}
		m.Ext = ext
	}
	if d.TInfo != nil {
		if m.Type != TypeTeamUpdate || m.Scene != Team {
			return fieldErr("data.tinfo", "only type 107 (team) carries tinfo")
		}
		if err := m.TInfo.decode(d.TInfo, m.TID); err != nil {
			return err
		}
	}
	if d.Attach != nil && jsonKind(d.Attach) != 'n' {
		a, err := DecodeAttach(m.Type, d.Attach)
		if err != nil {
			return err
		}
		m.Attach = a
	}
	return nil
}

// requiredInt reads a required integer field given as a number or a string
// of digits.
func requiredInt(field string, raw json.RawMessage, hint, what string) (int64, error) {
	if raw == nil {
		return 0, fieldErr(field, "required%s", hint)
	}
	v, ok := parseInt(raw)
	if !ok {
		return 0, fieldErr(field, "%s is not %s", raw, what)
	}
	return v, nil
}

// decodeExt accepts a string, or any other JSON value, which is kept as its
// canonical JSON text.
func decodeExt(raw json.RawMessage) (string, error) {
	switch jsonKind(raw) {
	case '"':
		var s string
		if err := unquoteJSON(raw, &s); err != nil {
			return "", fieldErr("data.ext", "%v", cleanJSONError(err))
		}
		return s, nil
	case 'n':
		return "", nil
	}
	b, err := CanonicalJSON(nil, raw)
	if err != nil {
		return "", fieldErr("data.ext", "%v", err)
	}
	return string(b), nil
}

// DecodeAttach parses the attach of a line of type t, given as a JSON string
// holding the object or as the object itself.
func DecodeAttach(t Type, raw json.RawMessage) (Attachment, error) {
	if t == TypeCustom {
		return decodeCustom(raw)
	}
	switch t {
	case TypeImage, TypeAudio, TypeVideo, TypeLocation, TypeFile:
	default:
		return nil, fieldErr("data.attach", "not allowed for type %d", t)
	}
	obj := []byte(raw)
	if jsonKind(raw) == '"' {
		var s string
		if err := unquoteJSON(raw, &s); err != nil {
			return nil, fieldErr("data.attach", "%v", cleanJSONError(err))
		}
		obj = []byte(s)
	}
	if jsonKind(obj) != '{' {
		return nil, fieldErr("data.attach", "must be a JSON object or a string holding one")
	}
	var w wireAttach
	if err := strictUnmarshal(obj, &w); err != nil {
		return nil, fieldErr("data.attach", "%v", err)
	}
	return w.attachment(t)
}

func (w *wireAttach) attachment(t Type) (Attachment, error) {
	allowed := map[Type]string{
		TypeImage:    "name md5 url ext w h size",
		TypeAudio:    "dur md5 url ext size",
		TypeVideo:    "dur md5 url w h ext size name",
		TypeFile:     "name md5 url ext size",
		TypeLocation: "title lng lat",
	}[t]
	present := map[string]bool{
		"name": w.Name != nil, "md5": w.MD5 != nil, "url": w.URL != nil, "ext": w.Ext != nil,
		"w": w.W != nil, "h": w.H != nil, "size": w.Size != nil, "dur": w.Dur != nil,
		"title": w.Title != nil, "lng": w.Lng != nil, "lat": w.Lat != nil,
	}
	for _, k := range []string{"name", "md5", "url", "ext", "w", "h", "size", "dur", "title", "lng", "lat"} {
		if present[k] && !strings.Contains(" "+allowed+" ", " "+k+" ") {
			return nil, fieldErr("data.attach."+k, "not a field of type %d (allowed: %s)", t, allowed)
		}
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	var err error
	num := func(key string, raw json.RawMessage) int64 {
		if raw == nil || err != nil || jsonKind(raw) == 'n' {
			return 0
		}
		v, ok := parseInt(raw)
		if !ok {
			err = fieldErr("data.attach."+key, "%s is not an integer", raw)
		}
		return v
	}
	var a Attachment
	switch t {
	case TypeImage:
		a = &Image{Name: str(w.Name), MD5: str(w.MD5), URL: str(w.URL), Ext: str(w.Ext),
			W: num("w", w.W), H: num("h", w.H), Size: num("size", w.Size)}
	case TypeAudio:
		a = &Audio{MD5: str(w.MD5), URL: str(w.URL), Ext: str(w.Ext), Dur: num("dur", w.Dur), Size: num("size", w.Size)}
	case TypeVideo:
		a = &Video{Name: str(w.Name), MD5: str(w.MD5), URL: str(w.URL), Ext: str(w.Ext),
			Dur: num("dur", w.Dur), W: num("w", w.W), H: num("h", w.H), Size: num("size", w.Size)}
	case TypeFile:
		a = &File{Name: str(w.Name), MD5: str(w.MD5), URL: str(w.URL), Ext: str(w.Ext), Size: num("size", w.Size)}
	case TypeLocation:
		lng, e1 := coordinate("lng", w.Lng)
		lat, e2 := coordinate("lat", w.Lat)
		if e1 != nil {
			return nil, e1
		}
		if e2 != nil {
			return nil, e2
		}
		a = &Location{Title: str(w.Title), Lng: lng, Lat: lat}
	}
	if err != nil {
		return nil, err
	}
	return a, nil
}

// coordinate accepts a number or a string holding a decimal and keeps its
// text, so no precision is lost through floating point.
func coordinate(key string, raw json.RawMessage) (string, error) {
	if raw == nil {
		return "", fieldErr("data.attach."+key, "required for type 4 (location)")
	}
	s := strings.TrimSpace(string(raw))
	if jsonKind(raw) == '"' {
		if err := unquoteJSON(raw, &s); err != nil {
			return "", fieldErr("data.attach."+key, "%v", cleanJSONError(err))
		}
		s = strings.TrimSpace(s)
	}
	if _, ok := parseDecimal(s); !ok {
		return "", fieldErr("data.attach."+key, "%s is not a decimal number", raw)
	}
	return s, nil
}

// decodeCustom keeps a JSON object payload as an object (also when it comes
// wrapped in a JSON string) and anything else as a string.
func decodeCustom(raw json.RawMessage) (Attachment, error) {
	switch jsonKind(raw) {
	case '{':
		obj, err := CanonicalJSON(nil, raw)
		if err != nil {
			return nil, fieldErr("data.attach", "%v", err)
		}
		return &CustomData{Object: obj}, nil
	case '"':
		var s string
		if err := unquoteJSON(raw, &s); err != nil {
			return nil, fieldErr("data.attach", "%v", cleanJSONError(err))
		}
		return CustomFromString(s), nil
	}
	text, err := CanonicalJSON(nil, raw)
	if err != nil {
		return nil, fieldErr("data.attach", "%v", err)
	}
	return &CustomData{String: string(text)}, nil
}

// CustomFromString makes a custom attach of a payload given as text: a JSON
// object stays an object, anything else is a string.
func CustomFromString(s string) *CustomData {
	if jsonKind([]byte(s)) == '{' {
		if obj, err := CanonicalJSON(nil, []byte(s)); err == nil {
			return &CustomData{Object: obj}
		}
	}
	return &CustomData{String: s}
}

func (t *TInfo) decode(raw json.RawMessage, tid int64) error {
	return t.decodeKeys(raw, tid, true)
}

// decodeKeys reads tinfo keys 14–24; with withTid, "tid" is required and
// must equal tid (a line's tinfo), without it "tid" is refused (the stored
// column, whose tid comes from the team map).
func (t *TInfo) decodeKeys(raw json.RawMessage, tid int64, withTid bool) error {
	if jsonKind(raw) != '{' {
		return fieldErr("data.tinfo", "must be an object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return fieldErr("data.tinfo", "%v", cleanJSONError(err))
	}
	tidRaw, ok := fields["tid"]
	switch {
	case withTid && !ok:
		return fieldErr("data.tinfo.tid", "required and equal to data.tid")
	case !withTid && ok:
		return fieldErr("data.tinfo.tid", "not part of a stored tinfo")
	}
	if v, ok := parseInt(tidRaw); withTid && (!ok || v != tid) {
		return fieldErr("data.tinfo.tid", "%s differs from data.tid %d", tidRaw, tid)
	}
	for k, v := range fields {
		if k == "tid" {
			continue
		}
		key, err := strconv.Atoi(k)
		if err != nil || key < 14 || key > 24 || strconv.Itoa(key) != k {
			return fieldErr("data.tinfo", "key %q is not documented (keys are \"14\"–\"24\" and \"tid\")", k)
		}
		if tinfoIsInt(key) {
			n, ok := parseInt(v)
			if !ok {
				return fieldErr("data.tinfo."+k, "%s is not an integer", v)
			}
			t.SetInt(key, n)
			continue
		}
		if jsonKind(v) != '"' {
			return fieldErr("data.tinfo."+k, "%s is not a string", v)
		}
		var s string
		if err := unquoteJSON(v, &s); err != nil {
			return fieldErr("data.tinfo."+k, "%v", cleanJSONError(err))
		}
		t.SetString(key, s)
	}
	return nil
}
