package yunxin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
)

// SuperTeamPrefix prefixes the group id of a super team (超大群, convType
// SUPER_TEAM): super teams have a tid space of their own, so "super:11620"
// and team "11620" are different entries of the team map.
const SuperTeamPrefix = "super:"

// Decode parses one 抄送 body (a JSON object; Yunxin documents every value
// as a string, numbers are accepted too) into canonical messages, recalls and
// ignored events. now is the receipt time, used for a recall without
// deleteTime. Decode needs no *http.Request, so `imbridge import` can feed it
// stored 抄送 bodies. The error is a 400 *source.Error naming the field; a
// batch is only returned without error, and then every message and recall in
// it passes Validate.
func Decode(body []byte, now time.Time) (source.Batch, error) {
	var b source.Batch
	f, err := parseObject(body)
	if err != nil {
		return source.Batch{}, source.BadRequest("body: %v", err)
	}
	eventType, err := f.required("eventType")
	if err != nil {
		return source.Batch{}, err
	}
	switch eventType {
	case "1":
		err = decodeConversation(&b, f)
	case "7", "8", "25": // p2p, team and super team recall (消息撤回抄送)
		err = decodeRecall(&b, f, now)
	default:
		b.Ignore(eventReason(eventType))
	}
	if err != nil {
		return source.Batch{}, err
	}
	for i := range b.Messages {
		if err := b.Messages[i].Validate(); err != nil {
			return source.Batch{}, source.BadRequest("%v", err)
		}
	}
	for i := range b.Recalls {
		if err := b.Recalls[i].Validate(); err != nil {
			return source.Batch{}, source.BadRequest("%v", err)
		}
	}
	return b, nil
}

// eventReason is the ignore reason of an event type imbridge does not
// store: "event_<n>" for n in 0–99 (login 2, logout 3, chat room 4, AV 5/6,
// chat room in/out 9, …), "event_other" beyond, so the label set is bounded.
func eventReason(t string) string {
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 || n > 99 || strconv.Itoa(n) != t {
		return "event_other"
	}
	return "event_" + t
}

// decodeConversation maps eventType 1 (会话类型消息抄送).
func decodeConversation(b *source.Batch, f fields) error {
	convType, err := f.required("convType")
	if err != nil {
		return err
	}
	msgType, err := f.required("msgType")
	if err != nil {
		return err
	}
	var scene message.Scene
	switch convType {
	case "PERSON":
		scene = message.P2P
	case "TEAM", "SUPER_TEAM":
		scene = message.Team
	case "CUSTOM_PERSON", "CUSTOM_TEAM":
		// System notifications (friend requests, team applications and
		// invitations, custom system notifications): not chat history.
		switch {
		case strings.HasPrefix(msgType, "FRIEND_"):
			b.Ignore("friend_event")
		case msgType == "CUSTOM_P2P_MSG" || msgType == "CUSTOM_TEAM_MSG" || msgType == "CUSTOM_SUPERTEAM_MSG":
			b.Ignore("custom_system_notification")
		default:
			b.Ignore("system_notification")
		}
		return nil
	default:
		b.Ignore("unknown_conv_type")
		return nil
	}
	var t message.Type
	switch msgType {
	case "TEXT":
		t = message.TypeText
	case "PICTURE":
		t = message.TypeImage
	case "AUDIO":
		t = message.TypeAudio
	case "VIDEO":
		t = message.TypeVideo
	case "LOCATION":
		t = message.TypeLocation
	case "FILE":
		t = message.TypeFile
	case "CUSTOM":
		t = message.TypeCustom
	case "NOTIFICATION":
		if scene != message.Team {
			b.Ignore("p2p_notification")
			return nil
		}
	case "TIPS":
		b.Ignore("tips")
		return nil
	case "NETCALL_AUDIO", "NETCALL_VEDIO", "NETCALL_VIDEO", "NRTC_NETCALL":
		b.Ignore("netcall")
		return nil
	case "DATATUNNEL_NEW":
		b.Ignore("datatunnel")
		return nil
	case "ROBOT":
		b.Ignore("robot")
		return nil
	default:
		b.Ignore("unknown_msg_type")
		return nil
	}

	m, err := header(f, scene, convType)
	if err != nil {
		return err
	}
	if msgType == "NOTIFICATION" {
		return decodeTeamNotification(b, f, m)
	}
	m.Type = t
	if m.Ext, err = f.ext("ext"); err != nil {
		return err
	}
	switch t {
	case message.TypeText:
		body, err := f.str("body")
		if err != nil {
			return err
		}
		if body == "" {
			b.Ignore("empty_text")
			return nil
		}
		m.Body = body
	case message.TypeCustom:
		if m.Attach, err = customAttach(f["attach"]); err != nil {
			return err
		}
	default:
		if m.Attach, err = mediaAttach(t, f["attach"]); err != nil {
			return err
		}
	}
	b.Messages = append(b.Messages, m)
	return nil
}

// header reads what every eventType 1 message has: ids, accounts, time and
// client type.
func header(f fields, scene message.Scene, convType string) (message.Message, error) {
	id, err := f.required("msgidServer")
	if err != nil {
		return message.Message{}, err
	}
	from, err := f.required("fromAccount")
	if err != nil {
		return message.Message{}, err
	}
	to, err := f.required("to")
	if err != nil {
		return message.Message{}, err
	}
	ts, err := f.requiredInt("msgTimestamp", "epoch milliseconds")
	if err != nil {
		return message.Message{}, err
	}
	ct, err := f.str("fromClientType")
	if err != nil {
		return message.Message{}, err
	}
	m := message.Message{
		Source: Name, SourceID: id, MsgID: message.MsgID(Name, id),
		Scene: scene, From: from, CreateTime: ts, ClientType: ClientType(ct),
	}
	switch {
	case scene == message.P2P:
		m.To = to
	case convType == "SUPER_TEAM":
		m.GroupID = SuperTeamPrefix + to
	default:
		m.GroupID = to
	}
	return m, nil
}

// ClientType maps Yunxin's fromClientType (AOS, IOS, PC, WINPHONE, WEB, REST,
// MAC, any case, or the documented number) to the line's enum; anything else
// (HARMONY 65, empty, unknown) is source.DefaultClientType.
func ClientType(s string) message.ClientType {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "AOS", "ANDROID":
		return message.Android
	case "IOS":
		return message.IOS
	case "PC", "WINDOWS":
		return message.PC
	case "WINPHONE":
		return message.WinPhone
	case "WEB":
		return message.Web
	case "REST", "SERVER":
		return message.REST
	case "MAC", "MACOS":
		return message.Mac
	}
	if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && message.ClientType(n).Valid() {
		return message.ClientType(n)
	}
	return source.DefaultClientType
}

// decodeRecall maps eventType 7 (p2p), 8 (team) and 25 (super team) recalls:
// msgId is the recalled message's msgidServer, from the account that
// recalled it, deleteTime the recall time (ms).
func decodeRecall(b *source.Batch, f fields, now time.Time) error {
	key, err := f.required("msgId")
	if err != nil {
		return err
	}
	op, err := f.str("from")
	if err != nil {
		return err
	}
	at := now.UnixMilli()
	if s, err := f.str("deleteTime"); err != nil {
		return err
	} else if s != "" {
		if at, err = f.requiredInt("deleteTime", "epoch milliseconds"); err != nil {
			return err
		}
	}
	b.Recalls = append(b.Recalls, message.Recall{Source: Name, Key: key, Operator: op, Time: at})
	return nil
}

// mediaKeys are the attach keys of each media type that the line carries;
// any other key Yunxin adds (sen, force_upload, expire, …) is dropped.
var mediaKeys = map[message.Type][]string{
	message.TypeImage:    {"name", "md5", "url", "ext", "w", "h", "size"},
	message.TypeAudio:    {"dur", "md5", "url", "ext", "size"},
	message.TypeVideo:    {"dur", "md5", "url", "w", "h", "ext", "size", "name"},
	message.TypeFile:     {"name", "md5", "url", "ext", "size"},
	message.TypeLocation: {"title", "lng", "lat"},
}

// mediaAttach reads a PICTURE/AUDIO/VIDEO/FILE/LOCATION attach (a JSON string
// holding the object, or the object): it is already Yunxin-shaped; numbers
// given as strings or integral floats are normalized, coordinates keep their
// decimal text.
func mediaAttach(t message.Type, raw json.RawMessage) (message.Attachment, error) {
	obj, err := attachObject(raw)
	if err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, source.BadRequest("attach: required for %s messages", typeName(t))
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(obj, &in); err != nil {
		return nil, source.BadRequest("attach: %v", cleanJSONError(err))
	}
	out := make(map[string]json.RawMessage, len(in))
	for _, k := range mediaKeys[t] {
		v, ok := in[k]
		if !ok || kind(v) == 'n' {
			continue
		}
		switch k {
		case "w", "h", "size", "dur":
			if v = normInt(v); v == nil {
				continue
			}
		case "lng", "lat":
			v = normCoordinate(v)
		default:
			if kind(v) != '"' && kind(v) != '{' && kind(v) != '[' && kind(v) != 't' && kind(v) != 'f' {
				v, _ = json.Marshal(strings.TrimSpace(string(v))) // a number where a string belongs
			}
		}
		out[k] = v
	}
	filtered, err := json.Marshal(out)
	if err != nil {
		return nil, source.BadRequest("attach: %v", err)
	}
	a, err := message.DecodeAttach(t, filtered)
	if err != nil {
		return nil, source.BadRequest("attach of a %s message: %v", typeName(t), err)
	}
	return a, nil
}

func typeName(t message.Type) string {
	switch t {
	case message.TypeImage:
		return "PICTURE"
	case message.TypeAudio:
		return "AUDIO"
	case message.TypeVideo:
		return "VIDEO"
	case message.TypeFile:
		return "FILE"
	case message.TypeLocation:
		return "LOCATION"
	}
	return "CUSTOM"
}

// normInt turns "480", 480.0 into 480; an empty string is absent (nil).
func normInt(v json.RawMessage) json.RawMessage {
	s := strings.TrimSpace(string(v))
	if kind(v) == '"' {
		var str string
		if json.Unmarshal(v, &str) != nil {
			return v
		}
		if s = strings.TrimSpace(str); s == "" {
			return nil
		}
	}
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		return json.RawMessage(s)
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) && math.Abs(f) < 1e18 {
		return json.RawMessage(strconv.FormatInt(int64(math.Round(f)), 10))
	}
	return v // refused by DecodeAttach with the field's name
}

// normCoordinate writes a number in exponent form as a plain decimal.
func normCoordinate(v json.RawMessage) json.RawMessage {
	s := strings.TrimSpace(string(v))
	if kind(v) != '"' && strings.ContainsAny(s, "eE") {
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return json.RawMessage(strconv.FormatFloat(f, 'f', -1, 64))
		}
	}
	return v
}

// customAttach keeps a CUSTOM attach: a JSON object (or a string holding one)
// stays an object, anything else is kept as a string; absent is "".
func customAttach(raw json.RawMessage) (message.Attachment, error) {
	switch kind(raw) {
	case 0, 'n':
		return &message.CustomData{}, nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, source.BadRequest("attach: %v", cleanJSONError(err))
		}
		return message.CustomFromString(s), nil
	case '{':
		obj, err := message.CanonicalJSON(nil, raw)
		if err != nil {
			return nil, source.BadRequest("attach: %v", err)
		}
		return &message.CustomData{Object: obj}, nil
	}
	text, err := message.CanonicalJSON(nil, raw)
	if err != nil {
		return nil, source.BadRequest("attach: %v", err)
	}
	return &message.CustomData{String: string(text)}, nil
}

// attachObject returns the JSON object an attach holds, given as the object
// or as a JSON string holding it; nil when absent, null or "".
func attachObject(raw json.RawMessage) ([]byte, error) {
	switch kind(raw) {
	case 0, 'n':
		return nil, nil
	case '{':
		return raw, nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, source.BadRequest("attach: %v", cleanJSONError(err))
		}
		if strings.TrimSpace(s) == "" {
			return nil, nil
		}
		if kind([]byte(s)) != '{' {
			return nil, source.BadRequest("attach: must be a JSON object or a string holding one, not %.40q", s)
		}
		return []byte(s), nil
	}
	return nil, source.BadRequest("attach: must be a JSON object or a string holding one")
}

// fields is a 抄送 body: its keys and raw values.
type fields map[string]json.RawMessage

// parseObject reads body as exactly one JSON object.
func parseObject(body []byte) (fields, error) {
	body = bytes.TrimPrefix(bytes.TrimSpace(body), []byte("\ufeff"))
	if len(body) == 0 {
		return nil, errors.New("empty: Yunxin 抄送 is one JSON object")
	}
	if body[0] != '{' {
		return nil, errors.New("must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var f fields
	if err := dec.Decode(&f); err != nil {
		return nil, cleanJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return f, nil
}

// str reads a scalar field as text: a string as is, a number or boolean as
// written; absent and null are "".
func (f fields) str(key string) (string, error) {
	v, ok := f[key]
	if !ok {
		return "", nil
	}
	switch kind(v) {
	case 'n':
		return "", nil
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", source.BadRequest("%s: %v", key, cleanJSONError(err))
		}
		return s, nil
	case '{', '[':
		return "", source.BadRequest("%s: must be a string, not a JSON %s", key, map[byte]string{'{': "object", '[': "array"}[kind(v)])
	}
	return strings.TrimSpace(string(v)), nil
}

// required is str that refuses an empty value.
func (f fields) required(key string) (string, error) {
	s, err := f.str(key)
	if err == nil && strings.TrimSpace(s) == "" {
		err = source.BadRequest("%s: required", key)
	}
	return strings.TrimSpace(s), err
}

// requiredInt reads a required integer given as a string or a number.
func (f fields) requiredInt(key, what string) (int64, error) {
	s, err := f.required(key)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, source.BadRequest("%s: %q is not an integer (%s)", key, s, what)
	}
	return n, nil
}

// ext reads the message's ext: Yunxin's ext is a string and is kept
// verbatim; an object or array is kept as its compact JSON text ("" for {}).
func (f fields) ext(key string) (string, error) {
	v := f[key]
	switch kind(v) {
	case '{', '[':
		b, err := message.CanonicalJSON(nil, v)
		if err != nil {
			return "", source.BadRequest("%s: %v", key, err)
		}
		if string(b) == "{}" {
			return "", nil
		}
		return string(b), nil
	}
	return f.str(key)
}

// kind is the first byte of a JSON value ('"', '{', '[', 'n', 't', 'f', or a
// digit or '-'); 0 when empty.
func kind(raw []byte) byte {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

// cleanJSONError drops encoding/json's "json: " prefix.
func cleanJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Errorf("%s: a JSON %s where another type belongs", te.Field, te.Value)
		}
		return fmt.Errorf("a JSON %s where an object belongs", te.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("truncated JSON")
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}
